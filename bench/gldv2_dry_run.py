"""A Google Landmarks v2 dry run at the seed's scale, from a fake mirror served over loopback HTTP.

    uv run python bench/gldv2_dry_run.py                       # 300,000 rows, a 20,000-photo index (about 25 min)
    uv run python bench/gldv2_dry_run.py --rows 30000 --landmarks 1000 --slice 2000   # a quick look

1. A mirror in GLDv2's layout (landmarks.data.gldv2): train.csv of --rows photos of --landmarks landmarks
   (long-tailed counts, as GLDv2's are) plus a tail of rarer landmarks that the subset must leave out,
   the category CSV, and tar shards with MD5 files. Its photos are the dev photos, shrunk to --side px
   and reused; each photo id gets one of them.
2. `landmarks data gldv2 --base-url http://127.0.0.1:PORT --classes N` downloads it (MD5-verified), chooses
   the N most frequent landmarks, extracts their photos and writes the gallery and held-out queries.
3. `landmarks index build` indexes a slice of that gallery: whole landmarks, in id order, up to --slice
   photos (hard links to the gallery's files, with its own train.csv).

Each step runs as the CLI a person would run, in its own process: its wall time, its peak resident memory
and the disk it leaves are printed, then the index build's rate extrapolated to the whole gallery. The
real download (500 shards of about 1 GB from CVDF's bucket) is not exercised here.
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import io
import os
import random
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from common import DEV_DATA, REPO, WORK, scaled_to  # also puts the repository on sys.path

from landmarks.data.gldv2 import md5_file, shard_file
from landmarks.evaluation.protocol import dev_protocol

TAIL_LANDMARKS = 2_000  # landmarks of one or two photos each, below the N most frequent


def landmark_counts(rows: int, landmarks: int, rng: random.Random) -> dict[int, int]:
    """Photos per landmark id: --landmarks of them long-tailed (at least 3 photos each), then a tail of
    TAIL_LANDMARKS with 1 or 2, together `rows`."""
    tail = {landmarks + n: 1 + n % 2 for n in range(TAIL_LANDMARKS)}
    budget = rows - sum(tail.values())
    weights = [rng.lognormvariate(0, 1) for _ in range(landmarks)]
    scale = (budget - 3 * landmarks) / sum(weights)
    counts = {n: 3 + int(w * scale) for n, w in enumerate(weights)}
    short = budget - sum(counts.values())  # what int() rounded away
    for n in range(short):
        counts[n % landmarks] += 1
    ids = list(range(landmarks + TAIL_LANDMARKS))
    rng.shuffle(ids)  # landmark ids do not follow frequency, as in GLDv2
    return {ids[n]: count for n, count in {**counts, **tail}.items()}


def write_mirror(mirror: Path, rows: int, landmarks: int, shards: int, side: int) -> dict:
    """The mirror's files; returns what it holds."""
    rng = random.Random(0)
    photos = []
    for path, _ in dev_protocol(DEV_DATA).gallery:
        buffer = io.BytesIO()
        scaled_to(path, side).save(buffer, "JPEG", quality=85)
        photos.append(buffer.getvalue())
    counts = landmark_counts(rows, landmarks, rng)
    entries = [(f"{rng.getrandbits(64):016x}", landmark) for landmark, count in counts.items() for _ in range(count)]
    rng.shuffle(entries)
    (mirror / "metadata").mkdir(parents=True, exist_ok=True)
    with (mirror / "metadata" / "train.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "url", "landmark_id"])
        writer.writerows(
            (image_id, f"https://example.invalid/{image_id}.jpg", landmark) for image_id, landmark in entries
        )
    with (mirror / "metadata" / "train_label_to_category.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["landmark_id", "category"])
        writer.writerows(
            (landmark, f"http://commons.wikimedia.org/wiki/Category:Fake_landmark_{landmark}")
            for landmark in sorted(counts)
        )
    (mirror / "train").mkdir(exist_ok=True)
    (mirror / "md5sum" / "train").mkdir(parents=True, exist_ok=True)
    per_shard = -(-len(entries) // shards)
    for shard in range(shards):
        tar_path = mirror / shard_file(shard)
        with tarfile.open(tar_path, "w") as archive:
            for image_id, _ in entries[shard * per_shard : (shard + 1) * per_shard]:
                body = photos[int(image_id, 16) % len(photos)]
                member = tarfile.TarInfo(f"{image_id[0]}/{image_id[1]}/{image_id[2]}/{image_id}.jpg")
                member.size = len(body)
                archive.addfile(member, io.BytesIO(body))
        digest = hashlib.md5(tar_path.read_bytes()).hexdigest()
        (mirror / md5_file(shard)).write_text(f"{digest}  {tar_path.name}\n")
    return {"rows": len(entries), "landmarks": len(counts), "photos": len(photos)}


def serve(directory: Path) -> tuple[ThreadingHTTPServer, str]:
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def run_step(name: str, args: list[str]) -> tuple[float, float]:
    """Run a CLI step in its own process: (wall seconds, peak resident GB)."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "cli", *args], cwd=REPO)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - started
    if process.returncode:
        raise SystemExit(f"{name} failed with exit status {process.returncode}")
    return elapsed, usage.ru_maxrss / 2**20


def disk(path: Path) -> float:
    """GB on disk under PATH (hard links counted once)."""
    seen, total = set(), 0
    for root, _, files in os.walk(path):
        for name in files:
            stat = os.lstat(os.path.join(root, name))
            if (stat.st_dev, stat.st_ino) not in seen:
                seen.add((stat.st_dev, stat.st_ino))
                total += stat.st_blocks * 512
    return total / 2**30


def make_slice(gallery: Path, out: Path, photos: int) -> int:
    """A gallery of whole landmarks of GALLERY, in landmark id order, up to PHOTOS photos (hard links)."""
    with (gallery / "train.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    by_landmark: dict[str, list[str]] = {}
    for row in rows:
        by_landmark.setdefault(row["landmark_id"], []).append(row["id"])
    chosen: list[tuple[str, str]] = []
    for landmark in sorted(by_landmark, key=int):
        if len(chosen) + len(by_landmark[landmark]) > photos:
            break
        chosen.extend((image_id, landmark) for image_id in by_landmark[landmark])
    shutil.rmtree(out, ignore_errors=True)
    for image_id, _ in chosen:
        relative = Path(image_id[0], image_id[1], image_id[2], f"{image_id}.jpg")
        (out / relative).parent.mkdir(parents=True, exist_ok=True)
        os.link(gallery / relative, out / relative)
    with (out / "train.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "landmark_id"])
        writer.writerows(chosen)
    shutil.copy(gallery / "train_label_to_category.csv", out / "train_label_to_category.csv")
    return len(chosen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=300_000, help="photos in the fake train.csv")
    parser.add_argument("--landmarks", type=int, default=10_000, help="landmarks the subset keeps (--classes)")
    parser.add_argument("--shards", type=int, default=50, help="tar shards of the mirror")
    parser.add_argument("--side", type=int, default=160, help="longest side of the reused photos, px")
    parser.add_argument("--slice", type=int, default=20_000, help="photos of the gallery to index")
    parser.add_argument("--work", type=Path, default=WORK / "gldv2-dry-run")
    args = parser.parse_args()

    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    mirror, download, gallery, sliced, index = (
        work / name for name in ("mirror", "download", "gallery", "slice", "index")
    )
    started = time.perf_counter()
    held = write_mirror(mirror, args.rows, args.landmarks, args.shards, args.side)
    print(
        f"mirror: {held['rows']:,} rows of {held['landmarks']:,} landmarks ({args.landmarks:,} above a tail of "
        f"{TAIL_LANDMARKS:,}), {args.shards} shards, {disk(mirror):.2f} GB, {held['photos']} dev photos reused at "
        f"{args.side} px; written in {time.perf_counter() - started:.0f} s",
        flush=True,
    )
    server, url = serve(mirror)
    try:
        subset_s, subset_gb = run_step(
            "data gldv2",
            ["data", "gldv2", "--base-url", url, "--out", str(download), "--gallery", str(gallery),
             "--shards", f"0-{args.shards - 1}", "--classes", str(args.landmarks), "--no-progress"],
        )  # fmt: skip
    finally:
        server.shutdown()
    with (gallery / "train.csv").open() as handle:
        gallery_photos = sum(1 for _ in handle) - 1
    sliced_photos = make_slice(gallery, sliced, args.slice)
    index_s, index_gb = run_step("index build", ["index", "build", str(sliced), "--out", str(index), "--no-progress"])
    rate = sliced_photos / index_s

    print("\n| step | what | wall | peak resident | disk |")
    print("|:---|:---|---:|---:|---:|")
    print(
        f"| `data gldv2` | download {args.shards} shards (MD5-verified), choose {args.landmarks:,} landmarks, extract, "
        f"split | {subset_s:,.0f} s | {subset_gb:.2f} GB | download {disk(download):.2f} GB, gallery {disk(gallery):.2f} GB |"
    )
    print(
        f"| `index build` | {sliced_photos:,} photos of the gallery | {index_s:,.0f} s ({rate:.1f} photos/s) | "
        f"{index_gb:.2f} GB | index {disk(index):.2f} GB |"
    )
    whole = gallery_photos / rate
    per_photo = disk(index) / sliced_photos
    print(
        f"\nthe gallery holds {gallery_photos:,} photos: indexing all of them at this rate takes {whole / 3600:.1f} h "
        f"and about {per_photo * gallery_photos:.1f} GB of index ({per_photo * 2**20:.0f} KB a photo)"
    )


if __name__ == "__main__":
    main()
