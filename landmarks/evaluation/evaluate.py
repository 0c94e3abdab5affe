"""Evaluate one embedding model on a gallery/query split: retrieval, recognition and throughput.

Retrieval (R@k, mAP@100) is measured on the queries that show a landmark. Recognition (ACC, GAP)
takes, for every query, the top landmark as the service ranks landmarks (`landmarks.search.rank_landmarks`
over the best `candidates` photos: a landmark scores the mean of its best `aggregate_top` photo scores),
with that score as confidence; distractor queries have no right answer, so their predictions count as
wrong in GAP. ACC is the share of landmark queries whose top landmark is right; R@1 is the share whose
nearest photo shows it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from landmarks.evaluation import metrics
from landmarks.evaluation.protocol import Protocol
from landmarks.images import ImageError, decode_image, loaded_ahead
from landmarks.models import Extractor
from landmarks.search import SearchConfig, rank_landmarks

log = logging.getLogger(__name__)

RECALL_KS = (1, 2, 10)
MAP_K = 100
SERVICE = SearchConfig()  # the service's defaults: its candidate photos and landmark aggregation


@dataclass(frozen=True)
class Embedded:
    vectors: np.ndarray  # (N, D) for the photos that decoded
    kept: list[int]  # positions, in the input list, of the photos in `vectors`


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    gap: float
    recall: dict[int, float]
    map_at_100: float
    fps: float
    queries: int
    distractors: int
    gallery: int


def embed_photos(
    extractor: Extractor, paths: Sequence[Path], *, batch_size: int = 16, desc: str = "embedding", progress: bool = True
) -> Embedded:
    """Embed photos in batches, decoding on worker threads."""
    out: list[np.ndarray] = []
    kept: list[int] = []
    bar = tqdm(total=len(paths), desc=desc, unit="img", disable=not progress, dynamic_ncols=True, leave=False)
    for attempted, positions, arrays in _preprocessed_batches(extractor, paths, batch_size):
        if arrays:
            out.append(extractor.embed_arrays(arrays))
            kept.extend(positions)
        bar.update(attempted)
    bar.close()
    vectors = np.concatenate(out) if out else np.zeros((0, extractor.dim), np.float32)
    return Embedded(vectors, kept)


def _preprocessed_batches(
    extractor: Extractor, paths: Sequence[Path], batch_size: int
) -> Iterator[tuple[int, list[int], list[np.ndarray]]]:
    """(photos attempted, positions of those that decoded, their arrays) per batch."""

    def load(position: int) -> tuple[int, np.ndarray | None]:
        try:
            return position, extractor.preprocess(decode_image(paths[position]))
        except (ImageError, OSError) as exc:
            log.warning("left out unreadable photo %s: %s", paths[position], exc)
            return position, None

    for loaded in loaded_ahead(load, range(len(paths)), batch_size):
        good = [(index, array) for index, array in loaded if array is not None]
        yield len(loaded), [index for index, _ in good], [array for _, array in good]


def top_landmarks(ranked_labels: np.ndarray, scores: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Each query's top landmark and its score, as the service ranks them. ranked_labels, scores: (Q, K)
    landmarks and similarities of each query's nearest gallery photos, best first."""
    best = [rank_landmarks(list(zip(labels[: SERVICE.candidates], row[: SERVICE.candidates].tolist(), strict=True)), SERVICE.aggregate_top)[0]
            for labels, row in zip(ranked_labels, scores, strict=True)]  # fmt: skip
    return [landmark.landmark_id for landmark in best], np.asarray(
        [landmark.score for landmark in best], dtype=np.float32
    )


def measure_fps(
    extractor: Extractor, arrays: Sequence[np.ndarray], *, min_calls: int = 3, min_seconds: float = 1.0
) -> float:
    """Photos per second through the model alone, at steady state, on the extractor's device.

    Timed apart from the evaluation pass: there, decoding threads compete for the CPU and the GIL,
    and the first call of each batch shape pays one-off costs (on a GPU, over a second for kernel
    selection and loading) that say nothing about throughput. One untimed call, then at least
    `min_calls` calls and `min_seconds` (each call returns the vectors to the host, so the clock
    sees the device's work).
    """
    extractor.embed_arrays(arrays)
    calls, started = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - started < min_seconds:
        extractor.embed_arrays(arrays)
        calls += 1
    return calls * len(arrays) / (time.perf_counter() - started)


def evaluate(extractor: Extractor, protocol: Protocol, *, batch_size: int = 16, progress: bool = True) -> Evaluation:
    gallery = embed_photos(
        extractor, [path for path, _ in protocol.gallery], batch_size=batch_size, desc="gallery", progress=progress
    )
    query_items: list[tuple[Path, str | None]] = [*protocol.queries, *((path, None) for path in protocol.distractors)]
    queries = embed_photos(
        extractor, [path for path, _ in query_items], batch_size=batch_size, desc="queries", progress=progress
    )
    if len(gallery.kept) == 0 or len(queries.kept) == 0:
        raise ValueError("nothing to evaluate: the gallery or the query set has no readable photo")

    gallery_labels = np.asarray([protocol.gallery[i][1] for i in gallery.kept], dtype=object)
    query_labels = [query_items[i][1] for i in queries.kept]
    ranked, scores = metrics.top_k(queries.vectors, gallery.vectors, max(MAP_K, *RECALL_KS))
    ranked_labels = gallery_labels[ranked]

    predicted, confidence = top_landmarks(ranked_labels, scores)
    landmark_rows = [row for row, label in enumerate(query_labels) if label is not None]
    landmark_truth = [query_labels[row] for row in landmark_rows]

    relevance = metrics.relevance_matrix(ranked_labels[landmark_rows], landmark_truth)
    gallery_counts = {
        label: int(count)
        for label, count in zip(*np.unique(gallery_labels.astype(str), return_counts=True), strict=True)
    }
    num_relevant = [gallery_counts.get(label, 0) for label in landmark_truth]
    return Evaluation(
        accuracy=metrics.accuracy([predicted[row] for row in landmark_rows], landmark_truth),
        gap=metrics.gap(predicted, confidence, query_labels),
        recall={k: metrics.recall_at_k(relevance, k) for k in RECALL_KS},
        map_at_100=metrics.map_at_k(relevance, num_relevant, MAP_K),
        fps=measure_fps(
            extractor, [extractor.preprocess(decode_image(protocol.gallery[i][0])) for i in gallery.kept[:batch_size]]
        ),
        queries=len(landmark_rows),
        distractors=len(query_labels) - len(landmark_rows),
        gallery=len(gallery.kept),
    )
