"""Building and growing an index from a gallery on disk, embedding only what changed."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from landmarks.gallery import Gallery, GalleryImage
from landmarks.images import DRAFT_MARGIN, ImageError, decode_image, draft_size, loaded_ahead
from landmarks.index.gallery_index import GalleryIndex
from landmarks.index.loading import DEFAULT_PIPELINE, LoadedPhoto, PhotoLoader, Pipeline, load_photos
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
    kind: str | None = None,
    pipeline: Pipeline = DEFAULT_PIPELINE,
    progress: bool = True,
    local_features: LocalFeatureParams | None = DEFAULT_LOCAL_FEATURES,
    keep_prefixes: tuple[str, ...] = (),
    prior: LandmarkPrior | None = None,
) -> BuildReport:
    """Create or update OUT_DIR so it holds exactly the gallery's readable photos.

    kind: the FAISS index kind (landmarks.index.vectors.KINDS; default: the index's own, and
    DEFAULT_KIND for a new one).

    prior: the landmark prior (landmarks.quality.prior) to store for each photo, the search's
    landmark gate and the cleaning's evidence; photos already indexed without one get theirs too.

    local_features: the parameters of the photos' local features, for spatial verification at search
    time (the search configuration's `local_params`); None: none (the search then runs without
    spatial verification). pipeline: how photos are decoded and batched (landmarks.index.loading).
    keep_prefixes: photos whose source starts with one of these are not the
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
            pipeline=pipeline,
            progress=progress,
            keep_prefixes=keep_prefixes,
            prior=prior,
        )
        if prior is not None:
            fill_priors(index, prior, pipeline.batch_size, progress, draft=pipeline.draft)
        if local_features is not None:
            from landmarks.quality.local_features import sync_for_index

            sync_for_index(index, local_features, progress=progress, draft=pipeline.draft)
        return report
    finally:
        index.close()


def _sync(
    index: GalleryIndex,
    gallery: Gallery,
    extractor: Extractor,
    *,
    pipeline: Pipeline,
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

    loader = PhotoLoader(extractor.preprocess, prior.preprocess if prior else None, pipeline.draft)
    bar = tqdm(total=len(todo), desc="indexing", unit=" photos", disable=not progress or not todo, dynamic_ncols=True)
    loaded = load_photos(loader, todo, lambda image: image.path, pipeline.workers_for(len(todo)))
    written = 0
    for batch in _readable_batches(loaded, pipeline.batch_size, report):
        vectors = extractor.embed_arrays([photo.model_input for _, photo in batch])
        priors = (
            prior.of_arrays([photo.prior_input for _, photo in batch]) if prior is not None else [None] * len(batch)
        )
        rows = [
            (image.landmark_id, image.key, str(image.path), *_stat(image.path), vector, photo_prior)
            for (image, _), vector, photo_prior in zip(batch, vectors, priors, strict=True)
        ]
        index.store.add_images(rows)  # committed per batch: a killed build keeps its progress
        written += len(batch)
        bar.update(written + len(report.skipped) - bar.n)  # skipped photos count as done
    bar.close()
    report.added = len(todo) - report.updated - len(report.skipped)
    index.store.delete_landmarks_without_images()
    index.rebuild_vectors()
    report.total = len(index)
    report.landmarks = len(index.store.image_counts())
    for key, reason in report.skipped:
        log.warning("skipped %s: %s", key, reason)
    return report


def fill_priors(
    index: GalleryIndex, prior: LandmarkPrior, batch_size: int, progress: bool, *, draft: float | None = DRAFT_MARGIN
) -> None:
    """The landmark prior of photos indexed without one (an index made before the prior, or uploads),
    decoded as an index build decodes them (Pipeline.draft)."""
    decode_at = draft_size([prior.preprocess.image_size], draft)
    missing = index.store.without_prior()
    if not missing:
        return
    bar = tqdm(total=len(missing), desc="landmark prior", unit=" photos", disable=not progress, dynamic_ncols=True)

    def load(record: ImageRecord) -> tuple[int, np.ndarray | None]:
        try:
            return record.image_id, prior.preprocess(decode_image(Path(record.path), draft=decode_at))
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


def _readable_batches(
    loaded: Iterator[tuple[GalleryImage, LoadedPhoto | None, str | None]], batch_size: int, report: BuildReport
) -> Iterator[list[tuple[GalleryImage, LoadedPhoto]]]:
    """The loaded photos in batches of BATCH_SIZE; unreadable ones go to the report's skipped list."""
    batch: list[tuple[GalleryImage, LoadedPhoto]] = []
    for image, photo, error in loaded:
        if photo is None:
            report.skipped.append((image.key, error or "unreadable"))
            continue
        batch.append((image, photo))
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch
