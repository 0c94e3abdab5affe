"""Spatial verification: tentative local matches between two photos, filtered by a geometric model.

Like DELF/DELG re-ranking: descriptors are matched with Lowe's ratio test (RootSIFT for SIFT, Hamming
distance for ORB) or, for DELF, as mutual nearest neighbours; then RANSAC fits an affine transform; the
number of inliers says how much of the query's geometry the gallery photo shares. Unrelated photos get
a handful of chance inliers; two photos of the same building from similar viewpoints get tens.
"""

from __future__ import annotations

import cv2
import numpy as np

from landmarks.quality.local_features import LocalFeatures

MIN_MATCHES = 6  # fewer tentative matches than this cannot support a verified transform
# Matches whose keypoints sit at the same relative place in both photos (within this share of each
# side) are dropped before RANSAC: they are overlays, such as a stock agency's watermark or caption
# strip, which otherwise "verify" any two photos of the same agency. A real view of a landmark is
# never pinned to the same relative pixels in two different photos at tens of points.
STATIC_OVERLAY = 0.01
# RANSAC's reprojection tolerance, as a share of the candidate photo's longest side. DELF keypoints sit
# on a 16-pixel grid (per pyramid level), so their positions are only good to about half a cell.
RANSAC_THRESHOLDS = {"sift": 0.0125, "orb": 0.0125, "delf": 0.025}


def _rootsift(descriptors: np.ndarray) -> np.ndarray:
    d = descriptors.astype(np.float32)
    d /= d.sum(axis=1, keepdims=True) + 1e-7
    return np.sqrt(d)


def tentative_matches(
    query: LocalFeatures, candidate: LocalFeatures, ratio: float = 0.8
) -> tuple[np.ndarray, np.ndarray]:
    """(query indices, candidate indices) of the matches that pass the ratio test."""
    if len(query) < 2 or len(candidate) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if query.kind == "delf":
        return _mutual_nearest(query.descriptors, candidate.descriptors)
    if query.kind == "sift":
        q, c = _rootsift(query.descriptors), _rootsift(candidate.descriptors)
        similarity = q @ c.T  # RootSIFT vectors are unit length: distance² = 2 - 2·similarity
        top2 = np.argpartition(-similarity, 1, axis=1)[:, :2]
        s2 = np.take_along_axis(similarity, top2, axis=1)
        first = np.argmax(s2, axis=1)
        best = top2[np.arange(len(top2)), first]
        d1 = np.sqrt(np.maximum(2 - 2 * s2.max(axis=1), 0))
        d2 = np.sqrt(np.maximum(2 - 2 * s2.min(axis=1), 0))
        keep = d1 < ratio * d2
        return np.flatnonzero(keep), best[keep]
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(query.descriptors, candidate.descriptors, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < ratio * p[1].distance]
    return np.array([m.queryIdx for m in good], np.int64), np.array([m.trainIdx for m in good], np.int64)


def _mutual_nearest(query: np.ndarray, candidate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of unit descriptors that are each other's nearest neighbour.

    Not the ratio test: DELF's descriptors are dense, so a position's second-nearest neighbour is
    usually the cell beside its nearest, nearly as similar, and the ratio test would reject most true
    matches. Mutual nearest neighbours keep one match per cell pair instead.
    """
    similarity = query.astype(np.float32) @ candidate.astype(np.float32).T
    best = similarity.argmax(axis=1)
    mutual = similarity.argmax(axis=0)[best] == np.arange(len(query))
    return np.flatnonzero(mutual), best[mutual]


def count_inliers(
    query: LocalFeatures, candidate: LocalFeatures, *, ratio: float = 0.8, threshold: float | None = None
) -> int:
    """RANSAC inliers of an affine transform from the query to the candidate (0 when none fits).

    ratio: Lowe's ratio for SIFT and ORB matches (DELF's are mutual nearest neighbours).
    threshold: the reprojection error allowed, as a share of the candidate photo's longest side
    (None: the kind's, RANSAC_THRESHOLDS).
    """
    return len(inlier_points(query, candidate, ratio=ratio, threshold=threshold))


def inlier_points(
    query: LocalFeatures, candidate: LocalFeatures, *, ratio: float = 0.8, threshold: float | None = None
) -> np.ndarray:
    """The query's keypoints ((n, 2) x, y in query.size's pixels) that are RANSAC inliers of an affine
    transform to the candidate (none when no transform fits): where the two photos share geometry.
    Arguments as `count_inliers`."""
    none = np.zeros((0, 2), np.float32)
    if threshold is None:
        threshold = RANSAC_THRESHOLDS[query.kind]
    q_idx, c_idx = tentative_matches(query, candidate, ratio)
    if len(q_idx) < MIN_MATCHES:
        return none
    src, dst = query.xy[q_idx], candidate.xy[c_idx]
    moved = np.abs(src / np.float32(query.size) - dst / np.float32(candidate.size)).max(axis=1) > STATIC_OVERLAY
    src, dst = src[moved].reshape(-1, 1, 2), dst[moved].reshape(-1, 1, 2)
    if len(src) < MIN_MATCHES:
        return none
    pixels = threshold * max(candidate.size)
    _, mask = cv2.estimateAffine2D(
        src, dst, method=cv2.RANSAC, ransacReprojThreshold=pixels, maxIters=1000, confidence=0.99, refineIters=0
    )
    return none if mask is None else src.reshape(-1, 2)[mask.ravel().astype(bool)]
