"""Query expansion (alpha-QE) and database-side augmentation (DBA), after Radenović et al. (2018).

DBA replaces every gallery vector by a weighted mean of itself and its nearest gallery neighbours,
so photos of one landmark pull together; alpha-QE does the same for the query with its top results.
Both weigh a neighbour by its similarity to the power alpha (alpha = 0: a plain mean).
"""

from __future__ import annotations

import numpy as np


def _normalise(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def _weights(similarities: np.ndarray, alpha: float) -> np.ndarray:
    return np.clip(similarities, 0.0, None) ** alpha


def database_augment(vectors: np.ndarray, k: int, alpha: float, *, chunk: int = 2048) -> np.ndarray:
    """DBA: each row becomes the normalised weighted mean of its k nearest rows (itself included)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(vectors)
    if n == 0 or k <= 1:
        return vectors.copy()
    k = min(k, n)
    out = np.empty_like(vectors)
    for start in range(0, n, chunk):
        sims = vectors[start : start + chunk] @ vectors.T
        idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        weights = _weights(np.take_along_axis(sims, idx, axis=1), alpha)
        out[start : start + chunk] = np.einsum("nk,nkd->nd", weights, vectors[idx])
    return _normalise(out).astype(np.float32)


def alpha_query_expansion(
    query: np.ndarray, neighbours: np.ndarray, similarities: np.ndarray, alpha: float
) -> np.ndarray:
    """alpha-QE of one query from its top neighbours' vectors (k, D) and their similarities (k,)."""
    if len(neighbours) == 0:
        return query
    expanded = query + _weights(np.asarray(similarities, np.float32), alpha) @ neighbours
    return _normalise(expanded.astype(np.float32))
