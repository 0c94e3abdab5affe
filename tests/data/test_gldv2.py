"""`landmarks data gldv2` against a loopback HTTP server that serves GLDv2-shaped files made from dev photos.

The server honours HTTP Range, can cut a download short, and records every request, so the tests
see resumption happen rather than infer it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from landmarks.data.gldv2 import gldv2_protocol, most_frequent_landmarks, parse_shards
from landmarks.gallery import scan_gallery
from tests.support import dev_protocol, run_cli

# GLDv2 landmark id → (dev landmark, photos in shards). Landmark 4 has one photo in the shards but
# ten more listed in train.csv that no downloaded shard holds: it is the most frequent one.
LAYOUT = {"1": ("hawa_mahal", 5), "2": ("india_gate", 4), "3": ("lotus_temple", 3), "4": ("taj_mahal", 1), "5": ("charminar", 2)}
MISSING_OF_4 = 10


class FakeBucket:
    """The files of a GLDv2 bucket, in memory, served over loopback."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.cut_once: dict[str, int] = {}  # path → bytes to send before dropping the connection, once
        bucket = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.lstrip("/")
                bucket.requests.append((path, self.headers.get("Range")))
                body = bucket.files.get(path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                limit = bucket.cut_once.pop(path, None)
                self.wfile.write(body[start : start + limit] if limit is not None else body[start:])
                if limit is not None:
                    self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def tar_requests(self) -> list[tuple[str, str | None]]:
        return [request for request in self.requests if request[0].endswith(".tar")]

    def __enter__(self) -> FakeBucket:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def image_id(dev_path: Path) -> str:
    return hashlib.sha1(str(dev_path).encode()).hexdigest()[:16]


def make_tar(members: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def csv_bytes(header: list[str], rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


@pytest.fixture(scope="module")
def bucket_files() -> dict:
    """A two-shard GLDv2 bucket built from a few dev photos (made in memory at test time, never stored)."""
    protocol = dev_protocol()
    photos: dict[str, list[tuple[str, bytes]]] = {}
    for landmark_id, (dev_landmark, count) in LAYOUT.items():
        paths = [path for path, label in protocol.gallery if label == dev_landmark][:count]
        photos[landmark_id] = [(image_id(path), path.read_bytes()) for path in paths]
    train_rows = [[pid, f"http://example.invalid/{pid}.jpg", lid] for lid, items in photos.items() for pid, _ in items]
    train_rows += [[f"{index:016x}", "http://example.invalid/gone.jpg", "4"] for index in range(MISSING_OF_4)]
    member = lambda pid: f"{pid[0]}/{pid[1]}/{pid[2]}/{pid}.jpg"  # noqa: E731
    shard0 = [(member(pid), data) for lid in ("1", "2") for pid, data in photos[lid]]
    # A hostile member: its path climbs out of the extraction folder. Only the id-named file may land.
    shard0.append(("../../escaped.jpg", b"not a photo"))
    shard1 = [(member(pid), data) for lid in ("3", "4", "5") for pid, data in photos[lid]]
    tars = {"train/images_000.tar": make_tar(shard0), "train/images_001.tar": make_tar(shard1)}
    files = {
        "metadata/train.csv": csv_bytes(["id", "url", "landmark_id"], train_rows),
        "metadata/train_label_to_category.csv": csv_bytes(
            ["landmark_id", "category"], [[lid, f"http://commons.wikimedia.org/wiki/Category:{LAYOUT[lid][0].title()}"] for lid in LAYOUT]
        ),
        **tars,
        **{f"md5sum/train/md5.{Path(name).stem}.txt": f"{hashlib.md5(data).hexdigest()}  {Path(name).name}\n".encode() for name, data in tars.items()},
    }
    return {"files": files, "photos": photos}


def run_gldv2(bucket: FakeBucket, out: Path, *extra: str):
    return run_cli("data", "gldv2", "--base-url", bucket.url, "--out", str(out), "--shards", "0-1", "--classes", "3", "--no-progress", *extra)


def test_download_resumes_verifies_and_builds_the_gallery(bucket_files, tmp_path):
    files, photos = bucket_files["files"], bucket_files["photos"]
    out = tmp_path / "gldv2"
    shard0, shard1 = files["train/images_000.tar"], files["train/images_001.tar"]
    # An earlier run was killed halfway through shard 0 ...
    half = len(shard0) // 2
    (out / "train").mkdir(parents=True)
    (out / "train" / "images_000.tar.part").write_bytes(shard0[:half])
    with FakeBucket(dict(files)) as bucket:
        # ... and the connection drops in the middle of shard 1 this time.
        bucket.cut_once["train/images_001.tar"] = len(shard1) // 3
        result = run_gldv2(bucket, out)
        assert result.returncode == 0, result.stderr + result.stdout
        assert bucket.tar_requests() == [
            ("train/images_000.tar", f"bytes={half}-"),
            ("train/images_001.tar", None),
            ("train/images_001.tar", f"bytes={len(shard1) // 3}-"),
        ]
    assert (out / "train" / "images_000.tar").read_bytes() == shard0
    assert (out / "train" / "images_001.tar").read_bytes() == shard1
    assert not list(out.rglob("*.part"))

    # The 3 most frequent landmarks over train.csv: 4 (11 rows, one photo on disk), 1 (5), 2 (4).
    gallery_dir = out / "gallery"
    gallery = scan_gallery(gallery_dir)
    assert gallery.layout == "gldv2"
    assert sorted(gallery.landmarks) == ["1", "2", "4"]
    assert gallery.landmarks["1"].name == "Hawa Mahal"
    # Every 5th photo by id is held out (index 0): one query each for 1 and 2; landmark 4's lone photo stays.
    protocol = gldv2_protocol(gallery_dir)
    assert sorted(label for _, label in protocol.queries) == ["1", "2"]
    assert len(protocol.gallery) == 4 + 3 + 1
    held_out = {path.stem for path, _ in protocol.queries}
    assert held_out == {min(pid for pid, _ in photos["1"]), min(pid for pid, _ in photos["2"])}
    assert held_out.isdisjoint(path.stem for path, _ in protocol.gallery)
    by_id = {pid: data for items in photos.values() for pid, data in items}
    for path, _ in protocol.gallery + protocol.queries:
        assert path.read_bytes() == by_id[path.stem]
    assert not list(tmp_path.rglob("escaped.jpg"))
    assert "10 photos of the chosen landmarks are in shards not downloaded" in result.stdout

    # Running again downloads nothing: every file is there and verified.
    with FakeBucket(dict(files)) as bucket:
        result = run_gldv2(bucket, out)
        assert result.returncode == 0, result.stderr + result.stdout
        assert bucket.tar_requests() == []


def test_a_shard_that_fails_its_checksum_is_rejected(bucket_files, tmp_path):
    files = dict(bucket_files["files"])
    corrupt = bytearray(files["train/images_001.tar"])
    corrupt[1000] ^= 0xFF
    files["train/images_001.tar"] = bytes(corrupt)
    out = tmp_path / "gldv2"
    with FakeBucket(files) as bucket:
        result = run_gldv2(bucket, out)
    assert result.returncode == 2
    assert "MD5" in result.stderr and "images_001.tar" in result.stderr
    assert not (out / "train" / "images_001.tar").exists() and not (out / "train" / "images_001.tar.part").exists()
    assert (out / "train" / "images_000.tar").exists()  # the good shard is kept for the next run


def test_most_frequent_landmarks_break_ties_by_id():
    rows = [("a", "7"), ("b", "7"), ("c", "10"), ("d", "10"), ("e", "2")]
    assert most_frequent_landmarks(rows, 2) == ["7", "10"]
    assert most_frequent_landmarks(rows, 5) == ["7", "10", "2"]


def test_shard_ranges():
    assert parse_shards("0-3,7,2") == [0, 1, 2, 3, 7]
    with pytest.raises(ValueError, match="outside"):
        parse_shards("498-500")
