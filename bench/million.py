"""A million-photo gallery of the default model's vectors, through the product's own code: built from the
gallery's SQLite store as `landmarks index build` builds it, searched as the service searches it, and
served by `landmarks serve` to the dev queries over HTTP.

    uv run python bench/million.py --size 1000000 --kind pca-ivf-pq-sq8

The store holds the dev protocol's real gallery (the 530 photos of bench/common.dev_index, their vectors
and priors as `index build` stored them) and synthetic photos up to SIZE: bench/index_scale.py's
vectors, modelled on the dev photos' embeddings with the default model (50 photos a landmark), each with
the prior of a random real gallery photo, so the landmark prior's gate keeps its threshold. Cached under
data/bench/million-SIZE/ (a million rows: 15 GB of SQLite, beside index_scale's 15 GB memory map).

Each step runs in its own process, so its peak resident memory is its own:
1. build: `GalleryIndex.open(kind=KIND)` on the store, as `index build --kind KIND` ends (the vectors
   read from SQLite a chunk at a time, codes trained on a sample, the FAISS files written);
2. search: the built index opened as the service opens it (from its files); single queries of
   synthetic vectors at each setting, p50/p95 and recall@10 against exact search over the stored vectors
   (a chunked scan of the store, timed beside it);
3. serve: `landmarks serve` on the index; the dev queries and distractors over HTTP, one at a time: R@1
   and refusals among a million photos, p50/p95, and the server's peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from common import DEV_DATA, WORK, dev_index  # also puts the repository on sys.path
from index_scale import CHUNK, PHOTOS_PER_LANDMARK, Generator, dataset, exact_neighbours, real_embeddings
from server import ApiServer

from landmarks.evaluation.protocol import dev_protocol
from landmarks.gallery import Landmark
from landmarks.index import GalleryIndex
from landmarks.index.gallery_index import STORE_FILE
from landmarks.index.store import GalleryStore
from landmarks.models import DEFAULT_MODEL

INSERT_ROWS = 10_000
# Candidates re-scored on the 8-bit codes (rerank 1: min_candidates alone decides), and IVF cells probed.
SETTINGS = [{"nprobe": n, "rerank": 1, "min_candidates": c} for c in (320, 640, 1280, 2560) for n in (256, 512)]


def peak_gb(pid: int | str = "self") -> float:
    """The process's peak resident memory (VmHWM: ru_maxrss would carry the parent's across exec)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) / 2**20


def make_store(directory: Path, size: int, kind: str) -> None:
    """The dev gallery's real rows, then synthetic rows up to SIZE (skipped when already made)."""
    path = directory / STORE_FILE
    if path.is_file():
        return
    source = GalleryStore(dev_index() / STORE_FILE)
    real_ids, real_vectors, real_labels = source.vectors(int(source.get_meta("dim")))
    priors = source.priors()
    records = [source.image(int(i)) for i in real_ids]
    tmp = directory / "making" / STORE_FILE
    tmp.parent.mkdir(parents=True, exist_ok=True)
    store = GalleryStore(tmp)
    store.set_meta({key: source.get_meta(key) for key in ("fingerprint", "model", "dim")} | {"kind": kind})
    store.upsert_landmarks(source.landmarks().values())
    store.add_images(
        (r.landmark_id, r.source, r.path, r.size, r.mtime, v, priors.get(int(i)))
        for r, v, i in zip(records, real_vectors, real_ids, strict=True)
    )
    synthetic, which = synthetic_photos(size)
    synthetic, which = synthetic[: size - len(real_ids)], which[: size - len(real_ids)]
    landmarks = int(which.max()) + 1
    store.upsert_landmarks(Landmark(f"synthetic_{n:06d}", f"Synthetic landmark {n}") for n in range(landmarks))
    real_priors = np.array([p for p in priors.values() if p is not None])
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for start in range(0, len(synthetic), INSERT_ROWS):
        chunk = np.asarray(synthetic[start : start + INSERT_ROWS])
        drawn = rng.choice(real_priors, len(chunk))
        store.add_images(
            (f"synthetic_{w:06d}", f"synthetic/{start + n:07d}", "", 0, 0.0, v, float(p))
            for n, (w, v, p) in enumerate(zip(which[start : start + INSERT_ROWS], chunk, drawn, strict=True))
        )
        done = start + len(chunk)
        rate = done / (time.perf_counter() - started)
        print(f"\rstore: {done:,} of {len(synthetic):,} synthetic rows ({rate:,.0f}/s)", end="", flush=True)
    print(f"; real rows: {len(real_ids)} of {len(set(real_labels))} landmarks")
    store.close()
    for suffix in ("", "-wal", "-shm"):
        made = tmp.with_name(tmp.name + suffix)
        if made.exists():
            made.replace(path.with_name(path.name + suffix))


def generator() -> Generator:
    return Generator(*real_embeddings(DEV_DATA, DEFAULT_MODEL))


def synthetic_photos(size: int) -> tuple[np.ndarray, np.ndarray]:
    """bench/index_scale.py's SIZE vectors (its memory map) and the synthetic landmark of each."""
    gallery, _ = dataset(generator(), size, 1)
    landmarks = max(1, size // PHOTOS_PER_LANDMARK)
    which = [
        np.random.default_rng([size, start]).integers(0, landmarks, min(CHUNK, size - start))
        for start in range(0, size, CHUNK)
    ]  # as dataset() draws them
    return gallery, np.concatenate(which)


def open_index(directory: Path, kind: str | None = None) -> GalleryIndex:
    """The index as the service opens it; with KIND, rebuilt from the store as `index build --kind` does."""
    return GalleryIndex.open_recorded(directory, **({"kind": kind} if kind else {}))


def step_build(directory: Path, kind: str) -> dict:
    started = time.perf_counter()
    index = open_index(directory, kind)  # no FAISS file yet: built from the store, then saved
    seconds = time.perf_counter() - started
    result = {"vectors": len(index), "seconds": seconds, "peak_gb": peak_gb()}
    index.close()
    return result


def step_search(directory: Path, size: int, queries: int) -> dict:
    started = time.perf_counter()
    index = open_index(directory)
    load_seconds = time.perf_counter() - started
    _, asked = dataset(generator(), size, queries)  # new photos of the synthetic landmarks
    labels = index.store.matched_labels()
    rows = index.store.vector_rows(index.vectors.dim, np.fromiter(sorted(labels), np.int64, len(labels)))
    started = time.perf_counter()
    truth = exact_neighbours(rows, asked, 10)
    exact_ms = (time.perf_counter() - started) / queries * 1000
    out = {"load_seconds": load_seconds, "exact_ms_per_query_batched": exact_ms, "settings": []}
    for setting in SETTINGS:
        index.vectors.tune(**setting)
        latencies, found = [], []
        for query in asked:
            started = time.perf_counter()
            neighbours = index.search(query[None, :], 10)[0]
            latencies.append((time.perf_counter() - started) * 1000)
            found.append([n.image_id for n in neighbours])
        recall = float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)]))
        latencies.sort()
        out["settings"].append(
            {
                **setting,
                "p50": statistics.median(latencies),
                "p95": latencies[int(0.95 * (len(latencies) - 1))],
                "recall": recall,
            }
        )
    out["peak_gb"] = peak_gb()
    index.close()
    return out


def step_serve(directory: Path) -> dict:
    protocol = dev_protocol(DEV_DATA)
    right, refused, latencies = 0, 0, []
    started = time.perf_counter()
    with ApiServer(directory) as server, httpx.Client(base_url=server.url, timeout=300) as client:
        ready = time.perf_counter() - started

        def answer(path: Path) -> dict:
            began = time.perf_counter()
            response = client.post("/search", files={"image": (path.name, path.read_bytes(), "image/jpeg")})
            latencies.append((time.perf_counter() - began) * 1000)
            response.raise_for_status()
            return response.json()

        for path, label in protocol.queries:
            landmark = answer(path)["landmark"]
            right += landmark is not None and landmark["landmark_id"] == label
        for path in protocol.distractors:
            refused += answer(path)["landmark"] is None
        peak = peak_gb(server.process.pid)
    latencies.sort()
    return {
        "ready_seconds": ready,
        "acc": right / len(protocol.queries),
        "refused": refused / len(protocol.distractors),
        "p50": statistics.median(latencies),
        "p95": latencies[int(0.95 * (len(latencies) - 1))],
        "server_peak_gb": peak,
    }


def run_step(*args: str) -> dict:
    process = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if process.returncode:
        raise RuntimeError(f"step {args} failed:\n{process.stderr[-4000:]}")
    return json.loads(process.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1_000_000, help="photos in the gallery, the real ones included")
    parser.add_argument("--kind", default="pca-ivf-pq-sq8")
    parser.add_argument("--queries", type=int, default=200, help="synthetic queries timed one at a time")
    parser.add_argument("--step", choices=["build", "search", "serve"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    directory = WORK / f"million-{args.size}"
    if args.step == "build":
        print(json.dumps(step_build(directory, args.kind)))
        return
    if args.step == "search":
        print(json.dumps(step_search(directory, args.size, args.queries)))
        return
    if args.step == "serve":
        print(json.dumps(step_serve(directory)))
        return

    started = time.perf_counter()
    make_store(directory, args.size, args.kind)
    print(f"store: {time.perf_counter() - started:.0f} s", flush=True)
    for stale in [*directory.glob("vectors*"), *directory.glob("calibration.json")]:
        stale.unlink()  # build from the store every run, and serve it as `index build` leaves it
    built = run_step("--size", str(args.size), "--kind", args.kind, "--step", "build")
    print(
        f"build: {built['vectors']:,} vectors ({args.kind}) in {built['seconds']:.0f} s, peak {built['peak_gb']:.2f} GB"
    )
    disk = sum(p.stat().st_size for p in directory.glob("vectors*")) / 2**30
    print(f"index files: {disk:.2f} GB")
    searched = run_step("--size", str(args.size), "--queries", str(args.queries), "--step", "search")
    print(
        f"search: index loaded in {searched['load_seconds']:.0f} s; exact search (chunked scan of the store, "
        f"{args.queries} queries in one pass): {searched['exact_ms_per_query_batched']:.0f} ms a query; peak {searched['peak_gb']:.2f} GB"
    )
    print("| candidates | nprobe | p50 ms | p95 ms | recall@10 |\n|---:|---:|---:|---:|---:|")
    for row in searched["settings"]:
        print(
            f"| {row['min_candidates']:,} | {row['nprobe']} | {row['p50']:.2f} | {row['p95']:.2f} | {row['recall']:.3f} |"
        )
    served = run_step("--size", str(args.size), "--step", "serve")
    print(
        f"serve: ready in {served['ready_seconds']:.0f} s; dev queries named right {served['acc']:.3f}, distractors "
        f"refused {served['refused']:.0%}; POST /search p50 {served['p50']:.0f} ms, p95 {served['p95']:.0f} ms; "
        f"server peak {served['server_peak_gb']:.2f} GB"
    )


if __name__ == "__main__":
    main()
