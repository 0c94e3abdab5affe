"""Turning gallery photos into model inputs for an index build: JPEGs decoded at reduced size (DCT
scaling) to what the networks need, on threads or worker processes, a bounded number ahead.

bench/indexing.py measures this pipeline against the old one (`LEGACY_PIPELINE`: full-size decoding).
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from landmarks.images import DRAFT_MARGIN, ImageError, Preprocessor, decode_image, draft_size
from landmarks.quality.prior import PRIOR_IMAGE_SIZE

Item = TypeVar("Item")


@dataclass(frozen=True)
class Pipeline:
    """How an index build reads its photos.

    draft: decode a JPEG at the smallest DCT scale (1/2, 1/4, 1/8) that still leaves DRAFT times the
    pixels a side that the networks resize to (images.DRAFT_MARGIN says why 2); None: full size.
    workers: decoding processes beside the embedding (0: two threads in this process; None: a process
    for each core beyond the two the embedding uses, up to 4, so threads on a 2-core machine, where
    processes measured slower than threads: README, "Indexing throughput"). Below
    `min_photos_for_workers` photos, starting processes costs more than it saves. batch_size: photos
    per embedding call and per SQLite commit.
    """

    draft: float | None = DRAFT_MARGIN
    workers: int | None = None
    batch_size: int = 16
    min_photos_for_workers: int = 64

    def workers_for(self, photos: int) -> int:
        if photos < self.min_photos_for_workers:
            return 0
        if self.workers is not None:
            return self.workers
        cores = os.cpu_count() or 1
        return min(4, cores - 2) if cores > 2 else 0


DEFAULT_PIPELINE = Pipeline()
# The pipeline before bench/indexing.py's work (every photo decoded at full size), kept so that the
# bench compares against it.
LEGACY_PIPELINE = Pipeline(draft=None, workers=0)
PIPELINES = {"default": DEFAULT_PIPELINE, "legacy": LEGACY_PIPELINE}


def photo_draft(model_size: int, margin: float | None = DRAFT_MARGIN) -> int | None:
    """What a photo is decoded to at least (decode_image's `draft`) for a model of MODEL_SIZE px and the
    landmark prior: the same for gallery photos and uploads, whether or not the prior runs, so that a
    photo decodes to the same pixels in both and finds itself at similarity 1. The other consumers of
    an upload (local features at 480 px, multi-scale sizes) resize down from there or use what it has."""
    return draft_size([model_size, PRIOR_IMAGE_SIZE], margin)


@dataclass(frozen=True)
class LoadedPhoto:
    model_input: np.ndarray  # (3, S, S) float32, the extractor's preprocessing
    prior_input: np.ndarray | None  # the landmark prior's, when the build stores priors


@dataclass(frozen=True)
class PhotoLoader:
    """What one gallery photo becomes before the networks see it. Picklable: it travels to workers."""

    model: Preprocessor
    prior: Preprocessor | None = None
    draft: float | None = DRAFT_MARGIN  # Pipeline.draft

    @property
    def draft_size(self) -> int | None:
        return photo_draft(self.model.image_size, self.draft)

    def __call__(self, path: Path) -> LoadedPhoto:
        photo = decode_image(path, draft=self.draft_size)
        return LoadedPhoto(self.model(photo), self.prior(photo) if self.prior is not None else None)


def load_photos(
    loader: PhotoLoader, items: Iterable[Item], path_of: Callable[[Item], Path], workers: int, ahead: int = 32
) -> Iterator[tuple[Item, LoadedPhoto | None, str | None]]:
    """(item, loaded photo or None, error or None) for every item, in order, loaded on WORKERS processes
    (0: two threads). At most AHEAD photos are loaded ahead of the consumer, so memory stays flat
    however large the gallery."""
    if workers > 0:
        # spawn, not fork: the caller holds ONNX Runtime and PyTorch thread pools, which a fork can
        # leave locked in the child.
        pool: Executor = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"), initializer=_set_loader, initargs=(loader,)
        )
        task: Callable[[Path], LoadedPhoto] = _load_in_worker
    else:
        pool, task = ThreadPoolExecutor(max_workers=2), loader
    with pool:
        pending: deque[tuple[Item, Future]] = deque()
        for item in items:
            pending.append((item, pool.submit(task, path_of(item))))
            if len(pending) > ahead:
                yield _result(*pending.popleft())
        while pending:
            yield _result(*pending.popleft())


def _result(item: Item, future: Future) -> tuple[Item, LoadedPhoto | None, str | None]:
    try:
        return item, future.result(), None
    except (ImageError, OSError) as exc:
        return item, None, str(exc) or type(exc).__name__


_worker_loader: PhotoLoader | None = None


def _set_loader(loader: PhotoLoader) -> None:
    global _worker_loader
    _worker_loader = loader


def _load_in_worker(path: Path) -> LoadedPhoto:
    assert _worker_loader is not None, "worker started without its loader"
    return _worker_loader(path)
