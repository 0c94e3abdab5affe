"""Google Landmarks v2 (train set): download, verify, and build an N-class gallery in GLDv2 layout.

The official files (CVDF's google-landmark bucket; the base URL is configurable):
    metadata/train.csv                      id,url,landmark_id (4.1M photos, 203k landmarks)
    metadata/train_label_to_category.csv    landmark_id,category (Wikimedia Commons URL)
    metadata/train_clean.csv                landmark_id,images (GLDv2-clean: space-separated ids)
    train/images_000.tar ... images_499.tar JPEGs at a/b/c/<id>.jpg, about 1 GB each
    md5sum/train/md5.images_000.txt ...     the MD5 of each tar

The gallery written (read by `landmarks.gallery.scan_gallery`, `landmarks train` and `landmarks eval`):
    GALLERY/train.csv                       id,landmark_id of the gallery photos
    GALLERY/queries.csv                     id,landmark_id of held-out query photos (never in train.csv)
    GALLERY/train_label_to_category.csv     landmark names for the chosen landmarks
    GALLERY/a/b/c/<id>.jpg                  the photos of both
"""

from __future__ import annotations

import csv
import logging
import re
import tarfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from landmarks.data.download import download, parse_md5_file
from landmarks.evaluation.protocol import Protocol
from landmarks.gallery import gldv2_image_path, scan_gallery

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://s3.amazonaws.com/google-landmark"
NUM_SHARDS = 500
TRAIN_CSV = "metadata/train.csv"
CATEGORIES_CSV = "metadata/train_label_to_category.csv"
CLEAN_CSV = "metadata/train_clean.csv"
QUERIES_FILE = "queries.csv"
_IMAGE_ID = re.compile(r"^[0-9a-f]{16}$")


def shard_file(shard: int) -> str:
    return f"train/images_{shard:03d}.tar"


def md5_file(shard: int) -> str:
    return f"md5sum/train/md5.images_{shard:03d}.txt"


def parse_shards(spec: str) -> list[int]:
    """'0-4,7' → [0, 1, 2, 3, 4, 7]."""
    shards: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        first, _, last = part.partition("-")
        try:
            low, high = int(first), int(last or first)
        except ValueError as exc:
            raise ValueError(f"bad shard range {part!r}: use numbers like 0-9,12") from exc
        if not 0 <= low <= high < NUM_SHARDS:
            raise ValueError(f"shard range {part!r} is outside 0-{NUM_SHARDS - 1}")
        shards.update(range(low, high + 1))
    if not shards:
        raise ValueError("no shard selected")
    return sorted(shards)


@dataclass(frozen=True)
class Downloads:
    train_csv: Path
    categories_csv: Path
    clean_csv: Path | None
    shards: list[Path]


def fetch(base_url: str, out_dir: Path, shards: Iterable[int], *, clean: bool = False, progress: bool = True) -> Downloads:
    """Download the metadata and the chosen image shards into OUT_DIR, each shard verified by MD5."""
    base_url = base_url.rstrip("/")

    def get(relative: str, expected_md5: str | None = None) -> Path:
        return download(f"{base_url}/{relative}", out_dir / relative, expected_md5=expected_md5, progress=progress)

    train_csv, categories_csv = get(TRAIN_CSV), get(CATEGORIES_CSV)
    clean_csv = get(CLEAN_CSV) if clean else None
    tars = []
    for shard in tqdm(list(shards), desc="shards", unit="tar", disable=not progress, dynamic_ncols=True):
        expected = parse_md5_file(get(md5_file(shard)).read_text(encoding="utf-8", errors="replace"))
        tars.append(get(shard_file(shard), expected))
    return Downloads(train_csv, categories_csv, clean_csv, tars)


def read_train_csv(path: Path, *, keep: set[str] | None = None) -> list[tuple[str, str]]:
    """(id, landmark_id) rows of train.csv, only the ids in `keep` when given."""
    with path.open(newline="", encoding="utf-8") as handle:
        return [(row["id"], str(row["landmark_id"])) for row in csv.DictReader(handle) if keep is None or row["id"] in keep]


def read_clean_ids(path: Path) -> set[str]:
    with path.open(newline="", encoding="utf-8") as handle:
        return {image_id for row in csv.DictReader(handle) for image_id in row["images"].split()}


def most_frequent_landmarks(rows: Iterable[tuple[str, str]], count: int) -> list[str]:
    """The `count` landmarks with the most photos; equal counts by landmark id, so the choice is stable."""
    counts = Counter(landmark_id for _, landmark_id in rows)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], int(item[0]) if item[0].isdigit() else item[0]))
    return [landmark_id for landmark_id, _ in ranked[:count]]


def _gallery_path(root: Path, image_id: str) -> Path:
    return root / image_id[0] / image_id[1] / image_id[2] / f"{image_id}.jpg"


def extract_photos(tars: Iterable[Path], wanted: set[str], out_dir: Path, *, progress: bool = True) -> int:
    """Copy the wanted photos out of the shards into OUT_DIR/a/b/c/<id>.jpg; returns how many were written.

    Member paths inside the tar are never used as paths: only a file name that is a GLDv2 id is
    read, and the destination is rebuilt from the id, so a hostile archive cannot write elsewhere.
    """
    written = 0
    for tar_path in tqdm(list(tars), desc="extracting", unit="tar", disable=not progress, dynamic_ncols=True):
        with tarfile.open(tar_path, mode="r:*") as archive:
            for member in archive:
                name = member.name.rsplit("/", 1)[-1]
                image_id = name.removesuffix(".jpg")
                if not member.isfile() or not name.endswith(".jpg") or not _IMAGE_ID.match(image_id) or image_id not in wanted:
                    continue
                dest = _gallery_path(out_dir, image_id)
                if dest.exists() and dest.stat().st_size == member.size:
                    continue
                source = archive.extractfile(member)
                if source is None:
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = dest.with_suffix(".tmp")
                tmp.write_bytes(source.read())
                tmp.replace(dest)
                written += 1
    return written


@dataclass(frozen=True)
class GalleryReport:
    landmarks: int
    gallery_photos: int
    query_photos: int
    missing: int  # photos of the chosen landmarks that are not in the downloaded shards


def build_gallery(
    downloads: Downloads,
    gallery_dir: Path,
    *,
    num_classes: int = 10_000,
    query_every: int = 5,
    progress: bool = True,
) -> GalleryReport:
    """The N most frequent landmarks (over the whole train.csv, as the seed project chose them),
    their photos from the downloaded shards, split into a gallery and held-out queries.

    Split as the dev protocol: per landmark, photos sorted by id, every `query_every`-th (0, N, 2N,
    ...) is a query. A landmark with a single photo on disk has nothing to match a query against,
    so its photo stays in the gallery.
    """
    keep = read_clean_ids(downloads.clean_csv) if downloads.clean_csv else None
    rows = read_train_csv(downloads.train_csv, keep=keep)
    chosen = set(most_frequent_landmarks(rows, num_classes))
    wanted = {image_id: landmark_id for image_id, landmark_id in rows if landmark_id in chosen}
    gallery_dir.mkdir(parents=True, exist_ok=True)
    extract_photos(downloads.shards, set(wanted), gallery_dir, progress=progress)

    on_disk: dict[str, list[str]] = {}
    for image_id, landmark_id in sorted(wanted.items()):
        if _gallery_path(gallery_dir, image_id).is_file():
            on_disk.setdefault(landmark_id, []).append(image_id)
    gallery_rows, query_rows = [], []
    for landmark_id, image_ids in sorted(on_disk.items()):
        for position, image_id in enumerate(image_ids):
            is_query = len(image_ids) > 1 and position % query_every == 0
            (query_rows if is_query else gallery_rows).append((image_id, landmark_id))

    _write_rows(gallery_dir / "train.csv", ("id", "landmark_id"), gallery_rows)
    _write_rows(gallery_dir / QUERIES_FILE, ("id", "landmark_id"), query_rows)
    with downloads.categories_csv.open(newline="", encoding="utf-8") as handle:
        categories = [(row["landmark_id"], row["category"]) for row in csv.DictReader(handle) if row["landmark_id"] in on_disk]
    _write_rows(gallery_dir / "train_label_to_category.csv", ("landmark_id", "category"), categories)
    found = sum(len(ids) for ids in on_disk.values())
    return GalleryReport(len(on_disk), len(gallery_rows), len(query_rows), len(wanted) - found)


def _write_rows(path: Path, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    tmp.replace(path)


def gldv2_protocol(root: Path) -> Protocol:
    """The gallery/query split of a gallery written by `build_gallery` (GLDv2 has no distractors)."""
    gallery = scan_gallery(root)
    queries = []
    with (root / QUERIES_FILE).open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            path = gldv2_image_path(root, row["id"])
            if path is not None:
                queries.append((path, str(row["landmark_id"])))
    return Protocol(root, [(image.path, image.landmark_id) for image in gallery.images], queries, [])
