"""The team's evaluation protocol over a labelled photo folder (see landmarks-dev/README.md).

For each landmark, photos sorted by file name: every `query_every`-th photo (index 0, 5, 10, ...) is a
query, the rest is the gallery. Every distractor is a query that should get no landmark.

`fold` shifts the queries (fold 1: index 1, 6, 11, ...): the folds 0 to query_every-1 make every photo
a query once, a cross-validation with five times the queries of the reported split (fold 0), for
telling real gains from one or two lucky queries.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from landmarks.images import IMAGE_SUFFIXES


@dataclass(frozen=True)
class Protocol:
    root: Path
    gallery: list[tuple[Path, str]]
    queries: list[tuple[Path, str]]
    distractors: list[Path]

    @property
    def landmark_ids(self) -> list[str]:
        return sorted({label for _, label in self.gallery})

    def restricted_to(self, landmark_ids: set[str]) -> Protocol:
        return Protocol(
            self.root,
            [(p, lid) for p, lid in self.gallery if lid in landmark_ids],
            [(p, lid) for p, lid in self.queries if lid in landmark_ids],
            self.distractors,
        )


def dev_protocol(root: Path, query_every: int = 5, fold: int = 0) -> Protocol:
    """Split ROOT/images/<landmark_id>/* and ROOT/distractors/* as the protocol says."""
    if not 0 <= fold < query_every:
        raise ValueError(f"fold {fold} is not between 0 and {query_every - 1}")
    root = Path(root)
    gallery, queries = [], []
    for folder in sorted(p for p in (root / "images").iterdir() if p.is_dir()):
        photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for position, photo in enumerate(photos):
            (queries if position % query_every == fold else gallery).append((photo, folder.name))
    distractor_dir = root / "distractors"
    distractors = (
        sorted(p for p in distractor_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if distractor_dir.is_dir()
        else []
    )
    return Protocol(root, gallery, queries, distractors)


def materialize_gallery(photos: list[tuple[Path, str]], out_dir: Path, metadata_csv: Path | None = None) -> Path:
    """A folder-per-landmark gallery of symbolic links (no photo is copied), for `index build`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for photo, landmark_id in photos:
        link = out_dir / landmark_id / photo.name
        link.parent.mkdir(exist_ok=True)
        if not link.exists():
            os.symlink(photo.absolute(), link)
    if metadata_csv is not None and metadata_csv.is_file():
        wanted = {landmark_id for _, landmark_id in photos}
        with (
            metadata_csv.open(newline="", encoding="utf-8") as src,
            (out_dir / "landmarks.csv").open("w", newline="", encoding="utf-8") as dst,
        ):
            reader = csv.DictReader(src)
            writer = csv.DictWriter(dst, fieldnames=reader.fieldnames)
            writer.writeheader()
            writer.writerows(row for row in reader if row["landmark_id"] in wanted)
    return out_dir
