"""Building and growing an index from a gallery on disk, embedding only what changed."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from landmarks.gallery import Gallery, GalleryImage
from landmarks.images import ImageError, decode_image, loaded_ahead
from landmarks.index.gallery_index import GalleryIndex
from landmarks.index.store import ImageRecord
from landmarks.models import Extractor
from landmarks.quality.local_features import LocalFeatureParams
from landmarks.quality.prior import LandmarkPrior

log = logging.getLogger(__name__)
# The local features every new index gets (pass None to build_index to skip them).
DEFAULT_LOCAL_FEATURES = LocalFeatureParams()


@dataclass
class BuildReport:
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (key, reason)
    total: int = 0
    landmarks: int = 0


def _stat(path: Path) -> tuple[int, float]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime


def build_index(
    gallery: Gallery,
    extractor: Extractor,
    out_dir: Path,
    *,
    kind: str = "flat",
    batch_size: int = 16,
    progress: bool = True,
    local_features: LocalFeatureParams | None = DEFAULT_LOCAL_FEATURES,
    keep_prefixes: tuple[str, ...] = (),
    prior: LandmarkPrior | None = None,
) -> BuildReport:
    """Create or update OUT_DIR so it holds exactly the gallery's readable photos.

    prior: the landmark prior (landmarks.quality.prior) to store for each photo, the search's
    landmark gate and the cleaning's evidence; photos already indexed without one get theirs too.

    local_features: the parameters of the photos' local features, for spatial verification at search
    time (the search configuration's `local_params`); None: none (the search then runs without
    spatial verification). keep_prefixes: photos whose source starts with one of these are not the
    folder's (added to the index by other means) and stay.
    """
    index = GalleryIndex.open(
        out_dir, fingerprint=extractor.fingerprint, model=extractor.source, dim=extractor.dim, kind=kind
    )
    try:
        report = _sync(
            index,
            gallery,
            extractor,
            kind=kind,
            batch_size=batch_size,
            progress=progress,
            keep_prefixes=keep_prefixes,
            prior=prior,
        )
        if prior is not None:
            fill_priors(index, prior, batch_size, progress)
        if local_features is not None:
            from landmarks.quality.local_features import sync_for_index

            sync_for_index(index, local_features, progress=progress)
        return report
    finally:
        index.close()


def _sync(
    index: GalleryIndex,
    gallery: Gallery,
    extractor: Extractor,
    *,
    kind: str,
    batch_size: int,
    progress: bool,
    keep_prefixes: tuple[str, ...],
    prior: LandmarkPrior | None,
) -> BuildReport:
    report = BuildReport()
    known = index.store.images()
    wanted = {image.key: image for image in gallery.images}
    todo: list[GalleryImage] = []
    for image in gallery.images:
        record = known.get(image.key)
        size, mtime = _stat(image.path)
        if record is None:
            todo.append(image)
        elif (record.size, record.mtime, record.landmark_id) != (size, mtime, image.landmark_id):
            todo.append(image)
            report.updated += 1
        else:
            report.unchanged += 1
    gone = [record.image_id for key, record in known.items() if key not in wanted and not key.startswith(keep_prefixes)]
    if gone:
        index.store.delete_images(gone)
        report.removed = len(gone)
    index.store.upsert_landmarks(gallery.landmarks.values())

    bar = tqdm(total=len(todo), desc="indexing", unit="img", disable=not progress or not todo, dynamic_ncols=True)
    for batch in _decoded_batches(todo, extractor, prior, batch_size, report):
        vectors = extractor.embed_arrays([arrays[0] for _, arrays in batch])
        priors = prior.of_arrays([arrays[1] for _, arrays in batch]) if prior is not None else [None] * len(batch)
        rows = [
            (image.landmark_id, image.key, str(image.path), *_stat(image.path), vector, photo_prior)
            for (image, _), vector, photo_prior in zip(batch, vectors, priors, strict=True)
        ]
        index.store.add_images(rows)  # committed per batch: a killed build keeps its progress
        bar.update(len(batch))
    bar.close()
    report.added = len(todo) - report.updated - len(report.skipped)
    index.store.delete_landmarks_without_images()
    index.store.set_meta({"kind": kind})
    index.vectors.kind = kind
    index.rebuild_vectors()
    report.total = len(index)
    report.landmarks = len(index.store.image_counts())
    for key, reason in report.skipped:
        log.warning("skipped %s: %s", key, reason)
    return report


def fill_priors(index: GalleryIndex, prior: LandmarkPrior, batch_size: int, progress: bool) -> None:
    """The landmark prior of photos indexed without one (an index made before the prior, or uploads)."""
    missing = index.store.without_prior()
    if not missing:
        return
    bar = tqdm(total=len(missing), desc="landmark prior", unit="img", disable=not progress, dynamic_ncols=True)

    def load(record: ImageRecord) -> tuple[int, np.ndarray | None]:
        try:
            return record.image_id, prior.preprocess(decode_image(Path(record.path)))
        except (ImageError, OSError) as exc:
            log.warning("no landmark prior for photo %s (%s): %s", record.image_id, record.path, exc)
            return record.image_id, None

    for loaded in loaded_ahead(load, missing, batch_size):
        good = [(image_id, array) for image_id, array in loaded if array is not None]
        if good:
            values = prior.of_arrays([array for _, array in good])
            index.store.set_priors(zip((image_id for image_id, _ in good), values.tolist(), strict=True))
        bar.update(len(loaded))
    bar.close()


def _decoded_batches(
    images: list[GalleryImage], extractor: Extractor, prior: LandmarkPrior | None, batch_size: int, report: BuildReport
) -> Iterator[list[tuple[GalleryImage, tuple[np.ndarray, np.ndarray | None]]]]:
    """Decode and preprocess (for the model, and for the prior when given) on worker threads while the
    model embeds the previous batch."""

    def load(image: GalleryImage) -> tuple[GalleryImage, tuple[np.ndarray, np.ndarray | None] | None, str | None]:
        try:
            photo = decode_image(image.path)
            return image, (extractor.preprocess(photo), prior.preprocess(photo) if prior else None), None
        except (ImageError, OSError) as exc:
            return image, None, str(exc)

    for loaded in loaded_ahead(load, images, batch_size):  # one batch decoded ahead of the model at most
        batch = []
        for image, arrays, error in loaded:
            if arrays is None:
                report.skipped.append((image.key, error or "unreadable"))
            else:
                batch.append((image, arrays))
        if batch:
            yield batch
