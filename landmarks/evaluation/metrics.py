"""Retrieval and recognition metrics as pure numpy functions, reusable anywhere.

Retrieval metrics take a boolean relevance matrix: row q holds, best first, whether each of the
results returned for query q shows the query's landmark. Recognition metrics take one predicted
label and one confidence per query, with `None` as the true label of a query that shows no landmark.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def top_k(queries: np.ndarray, gallery: np.ndarray, k: int, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Indices and cosine scores of each query's k most similar gallery vectors, best first.

    Vectors are unit length, so the inner product is the cosine. Queries go in chunks so the score
    matrix never holds more than `chunk` rows of the gallery's width.
    """
    k = min(k, len(gallery))
    indices = np.zeros((len(queries), k), dtype=np.int64)
    scores = np.zeros((len(queries), k), dtype=np.float32)
    for start in range(0, len(queries), chunk):
        similarity = queries[start : start + chunk] @ gallery.T
        candidates = (
            np.argpartition(-similarity, k - 1, axis=1)[:, :k]
            if k < len(gallery)
            else np.tile(np.arange(k), (len(similarity), 1))
        )
        candidate_scores = np.take_along_axis(similarity, candidates, axis=1)
        order = np.argsort(-candidate_scores, axis=1, kind="stable")
        indices[start : start + chunk] = np.take_along_axis(candidates, order, axis=1)
        scores[start : start + chunk] = np.take_along_axis(candidate_scores, order, axis=1)
    return indices, scores


def relevance_matrix(ranked_labels: np.ndarray, query_labels: Sequence[str]) -> np.ndarray:
    """(Q, K) labels of the ranked results and Q query labels → (Q, K) bool relevance."""
    return np.asarray(ranked_labels) == np.asarray(query_labels, dtype=object).reshape(-1, 1)


def recall_at_k(relevance: np.ndarray, k: int) -> float:
    """Share of queries with at least one relevant result among their first k (R@k)."""
    relevance = np.asarray(relevance, dtype=bool)
    if relevance.shape[0] == 0:
        return 0.0
    return float(relevance[:, :k].any(axis=1).mean())


def average_precision_at_k(relevance: Sequence[bool], num_relevant: int, k: int) -> float:
    """AP@k of one query: precision at each relevant result within the first k, summed, over min(num_relevant, k).

    num_relevant counts every relevant item in the whole gallery, not only the retrieved ones, so a
    relevant photo that never makes the first k costs precision (the Google Landmark Retrieval mAP@100).
    """
    if num_relevant <= 0:
        return 0.0
    hits = np.flatnonzero(np.asarray(relevance, dtype=bool)[:k])
    precision_at_hits = np.arange(1, len(hits) + 1) / (hits + 1)
    return float(precision_at_hits.sum() / min(num_relevant, k))


def map_at_k(relevance: np.ndarray, num_relevant: Sequence[int], k: int) -> float:
    """Mean of `average_precision_at_k` over the queries (rows)."""
    relevance = np.asarray(relevance, dtype=bool)
    if relevance.shape[0] == 0:
        return 0.0
    return float(
        np.mean([average_precision_at_k(row, int(n), k) for row, n in zip(relevance, num_relevant, strict=True)])
    )


def gap(predicted: Sequence[str | None], confidence: Sequence[float], truth: Sequence[str | None]) -> float:
    """Global Average Precision (Kaggle Google Landmark Recognition).

    One prediction per query (None: the system made none). Predictions are sorted by confidence,
    highest first; GAP = (1/M) Σ_i P(i)·rel(i), where P(i) is the precision over the first i
    predictions, rel(i) whether prediction i is right, and M the number of queries that show a
    landmark. A prediction for a query without a landmark (truth None) is always wrong, so confident
    answers to distractors pull the precision of everything ranked below them down. Ties in
    confidence keep the input order.
    """
    predicted = np.asarray(predicted, dtype=object)
    truth = np.asarray(truth, dtype=object)
    confidence = np.asarray(confidence, dtype=np.float64)
    landmark_queries = int(sum(label is not None for label in truth))
    if landmark_queries == 0:
        return 0.0
    made = np.array([label is not None for label in predicted], dtype=bool)
    order = np.argsort(-confidence[made], kind="stable")
    correct = np.array(
        [p == t and t is not None for p, t in zip(predicted[made], truth[made], strict=True)], dtype=bool
    )[order]
    precision = np.cumsum(correct) / np.arange(1, len(correct) + 1)
    return float((precision * correct).sum() / landmark_queries)


def accuracy(predicted: Sequence[str | None], truth: Sequence[str | None]) -> float:
    """Share of queries whose prediction equals the truth (None == None counts as right)."""
    if len(truth) == 0:
        return 0.0
    return float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)]))
