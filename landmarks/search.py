"""Search: embed a photo, find its nearest gallery photos, rank landmarks, decide if it is one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from landmarks.index import GalleryIndex, Neighbour
from landmarks.models import Extractor

# Cosine similarity of the best landmark below which the photo is "not a landmark I know".
# Measured on the dev protocol with the default model (see README): distractors peak below it.
DEFAULT_THRESHOLD = 0.63


@dataclass(frozen=True)
class LandmarkScore:
    landmark_id: str
    score: float  # the best similarity among its photos
    votes: int  # how many of the candidates belong to it


@dataclass(frozen=True)
class SearchResult:
    matches: list[Neighbour]
    landmarks: list[LandmarkScore]
    landmark: LandmarkScore | None
    confidence: float


def confidence_from_score(score: float, threshold: float) -> float:
    """A first, uncalibrated confidence in [0, 1]: 0.5 at the threshold, rising with the score."""
    return float(np.clip(0.5 + (score - threshold) / (2 * max(1e-6, 1 - threshold)), 0.0, 1.0)) if score >= threshold else float(
        np.clip(0.5 * score / max(threshold, 1e-6), 0.0, 0.5)
    )


class Searcher:
    def __init__(self, extractor: Extractor, index: GalleryIndex, *, threshold: float = DEFAULT_THRESHOLD, candidates: int = 50) -> None:
        self.extractor = extractor
        self.index = index
        self.threshold = threshold
        self.candidates = candidates

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.extractor.embed_images(images)

    def search(self, vectors: np.ndarray, k: int) -> list[SearchResult]:
        neighbour_lists = self.index.search(vectors, max(k, self.candidates))
        return [self._result(neighbours, k) for neighbours in neighbour_lists]

    def _result(self, neighbours: list[Neighbour], k: int) -> SearchResult:
        best: dict[str, float] = {}
        votes: dict[str, int] = {}
        for neighbour in neighbours:
            best.setdefault(neighbour.landmark_id, neighbour.score)
            votes[neighbour.landmark_id] = votes.get(neighbour.landmark_id, 0) + 1
        landmarks = [LandmarkScore(lid, score, votes[lid]) for lid, score in sorted(best.items(), key=lambda kv: -kv[1])]
        top = landmarks[0] if landmarks else None
        confidence = confidence_from_score(top.score, self.threshold) if top else 0.0
        landmark = top if top is not None and top.score >= self.threshold else None
        return SearchResult(neighbours[:k], landmarks, landmark, confidence)
