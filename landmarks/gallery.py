"""Reading a gallery on disk: a folder per landmark, or the Google Landmarks v2 layout.

Folder layout:  GALLERY/<landmark_id>/*.jpg|png|webp  (+ optional GALLERY/landmarks.csv with
                landmark_id, name, city, country, lat, lon; extra columns are kept)
GLDv2 layout:   GALLERY/train.csv (id, landmark_id), images at GALLERY/[train/]a/b/c/<id>.jpg,
                GALLERY/train_label_to_category.csv (landmark_id, Wikimedia category URL)
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from landmarks.images import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

METADATA_FILE = "landmarks.csv"
CORE_FIELDS = ("landmark_id", "name", "city", "country", "lat", "lon")


@dataclass(frozen=True)
class GalleryImage:
    key: str  # stable identity across rebuilds: the path relative to the gallery root
    path: Path
    landmark_id: str


@dataclass
class Landmark:
    landmark_id: str
    name: str
    city: str | None = None
    country: str | None = None
    lat: float | None = None
    lon: float | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class Gallery:
    root: Path
    layout: str
    images: list[GalleryImage]
    landmarks: dict[str, Landmark]


def _float_or_none(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def humanize_id(landmark_id: str) -> str:
    return landmark_id.replace("_", " ").strip().title() or landmark_id


def read_landmarks_csv(path: Path) -> dict[str, Landmark]:
    landmarks: dict[str, Landmark] = {}
    with path.open(newline="", encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            landmark_id = (row.get("landmark_id") or "").strip()
            if not landmark_id:
                continue
            landmarks[landmark_id] = Landmark(
                landmark_id=landmark_id,
                name=(row.get("name") or "").strip() or humanize_id(landmark_id),
                city=(row.get("city") or "").strip() or None,
                country=(row.get("country") or "").strip() or None,
                lat=_float_or_none(row.get("lat")),
                lon=_float_or_none(row.get("lon")),
                extra={k: v for k, v in row.items() if k and k not in CORE_FIELDS and v not in (None, "")},
            )
    return landmarks


def category_name(url: str) -> str:
    """'http://commons.wikimedia.org/wiki/Category:Eiffel_Tower%2C_Paris' → 'Eiffel Tower, Paris'."""
    tail = url.rsplit("Category:", 1)[-1] if "Category:" in url else url.rstrip("/").rsplit("/", 1)[-1]
    return unquote(tail).replace("_", " ").strip()


def scan_gallery(root: Path) -> Gallery:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"gallery folder {root} does not exist")
    if (root / "train.csv").is_file():
        return _scan_gldv2(root)
    return _scan_folders(root)


def _scan_folders(root: Path) -> Gallery:
    landmarks = read_landmarks_csv(root / METADATA_FILE) if (root / METADATA_FILE).is_file() else {}
    images = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                images.append(GalleryImage(f"{folder.name}/{path.name}", path.absolute(), folder.name))
        landmarks.setdefault(folder.name, Landmark(folder.name, humanize_id(folder.name)))
    used = {image.landmark_id for image in images}
    return Gallery(root, "folders", images, {k: v for k, v in landmarks.items() if k in used})


def gldv2_image_path(root: Path, image_id: str) -> Path | None:
    relative = Path(image_id[0], image_id[1], image_id[2], f"{image_id}.jpg")
    for base in (root, root / "train"):
        if (base / relative).is_file():
            return base / relative
    return None


def _scan_gldv2(root: Path) -> Gallery:
    names: dict[str, str] = {}
    categories = root / "train_label_to_category.csv"
    if categories.is_file():
        with categories.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                names[str(row["landmark_id"])] = category_name(row.get("category", ""))
    extra_metadata = read_landmarks_csv(root / METADATA_FILE) if (root / METADATA_FILE).is_file() else {}
    images, missing = [], 0
    with (root / "train.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            image_id, landmark_id = row["id"].strip(), str(row["landmark_id"]).strip()
            path = gldv2_image_path(root, image_id)
            if path is None:
                missing += 1
                continue
            images.append(GalleryImage(str(path.relative_to(root)), path.absolute(), landmark_id))
    if missing:
        log.warning("gldv2 gallery: %d images listed in train.csv are not on disk and were left out", missing)
    landmarks = {}
    for landmark_id in sorted({image.landmark_id for image in images}):
        landmarks[landmark_id] = extra_metadata.get(landmark_id) or Landmark(
            landmark_id, names.get(landmark_id) or f"Landmark {landmark_id}"
        )
    return Gallery(root, "gldv2", images, landmarks)
