"""Landmark ranking: a landmark's score from its candidate photos' scores, and the uncalibrated confidence."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Without calibration, confidence is 0.5 at this cosine similarity of the best landmark: the measured
# point below which the dev distractors fall, with Lite0 and with the ensemble alike (README, quality
# table's first row: 100% refused).
UNCALIBRATED_SCORE_AT_HALF = 0.63
# A landmark's score: the mean of its best this-many photo scores (1: its best photo). The service's
# default (`SearchConfig.aggregate_top`).
DEFAULT_AGGREGATE_TOP = 2


@dataclass(frozen=True)
class LandmarkScore:
    landmark_id: str
    score: float  # the aggregated score of its best photos (with verification bonus)
    votes: int  # how many of the candidates belong to it


def rank_landmarks(
    scored: Sequence[tuple[str, float]], aggregate_top: int = DEFAULT_AGGREGATE_TOP
) -> list[LandmarkScore]:
    """Landmarks of the candidate photos, best first. `scored`: (landmark_id, photo score), best first.

    A landmark scores the mean of its best `aggregate_top` photo scores; one with fewer candidates
    repeats its last, so a single very close photo is not diluted by a far one outside the candidates.
    """
    per_landmark: dict[str, list[float]] = {}
    for landmark_id, score in scored:
        per_landmark.setdefault(landmark_id, []).append(score)
    m = max(1, aggregate_top)

    def aggregate(scores: list[float]) -> float:
        best = scores[:m]
        return float(np.mean(best + [best[-1]] * (m - len(best))))

    return sorted(
        (LandmarkScore(lid, aggregate(scores), len(scores)) for lid, scores in per_landmark.items()),
        key=lambda lm: -lm.score,
    )


EARTH_RADIUS_KM = 6371.0088


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance between two (lat, lon) points in degrees (haversine)."""
    lat1, lon1, lat2, lon2 = map(np.radians, (a[0], a[1], b[0], b[1]))
    h = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return float(2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(min(1.0, h))))


def near_the_photo(
    landmarks: Sequence[LandmarkScore],
    places: dict[str, tuple[float, float]],
    location: tuple[float, float],
    bonus: float,
    scale_km: float,
) -> list[LandmarkScore]:
    """Landmarks re-ranked with the photo's own position: each gains BONUS x exp(-distance / SCALE_KM)
    (a landmark without coordinates gains nothing). Soft by construction: nothing is ever taken away,
    so a wrong position can only lift the landmarks near it, by at most BONUS."""
    adjusted = [
        LandmarkScore(
            lm.landmark_id,
            lm.score + bonus * float(np.exp(-distance_km(location, places[lm.landmark_id]) / scale_km)),
            lm.votes,
        )
        if lm.landmark_id in places
        else lm
        for lm in landmarks
    ]
    return sorted(adjusted, key=lambda lm: -lm.score)


def confidence_from_score(score: float, threshold: float = UNCALIBRATED_SCORE_AT_HALF) -> float:
    """The uncalibrated confidence in [0, 1]: 0.5 at `threshold` similarity, rising with the score."""
    if score >= threshold:
        return float(np.clip(0.5 + (score - threshold) / (2 * max(1e-6, 1 - threshold)), 0.0, 1.0))
    return float(np.clip(0.5 * score / max(threshold, 1e-6), 0.0, 0.5))
