"""Searcher: embed query photos, find their nearest gallery photos, rank landmarks, decide if it is one.

`embed` turns photos into `Query` objects (the vector, and the local features when spatial
verification is on); `search` answers them. The stages are described in `landmarks.search`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image

from landmarks.index import GalleryIndex, Neighbour
from landmarks.models import Extractor
from landmarks.quality.calibration import DEFAULT_OPERATING_THRESHOLD, Calibration, CalibrationModel, feature_vector
from landmarks.quality.expansion import alpha_query_expansion
from landmarks.quality.local_features import LocalFeatures, LocalFeatureStore, extract
from landmarks.quality.multiscale import MultiScaleEmbedder
from landmarks.quality.prior import LandmarkPrior
from landmarks.quality.spatial import count_inliers, inlier_points
from landmarks.search.config import SearchConfig
from landmarks.search.gallery_cache import GalleryCache
from landmarks.search.ranking import LandmarkScore, confidence_from_score, near_the_photo, rank_landmarks
from landmarks.search.region import Region, locate_by_crops, locate_by_inliers

log = logging.getLogger(__name__)

# Fewer gallery priors than this say too little about what the gallery shows to set a gate on.
MIN_PRIORS_FOR_GATE = 20


@dataclass(frozen=True, eq=False)
class Query:
    """One query photo as `Searcher.search` takes it: its unit vector (D,), multi-scale when configured,
    and its local features when spatial verification is on (else None)."""

    vector: np.ndarray
    local: LocalFeatures | None = None
    prior: float | None = None  # how landmark-like the photo is (landmarks.quality.prior), when known
    location: tuple[float, float] | None = None  # where the photo was taken (its EXIF GPS), when known

    def __post_init__(self) -> None:
        vector = np.ascontiguousarray(self.vector, dtype=np.float32)
        if vector.ndim != 1:
            raise ValueError(f"a query vector is one row, not an array of shape {vector.shape}")
        object.__setattr__(self, "vector", vector)


@dataclass(frozen=True)
class SearchResult:
    matches: list[Neighbour]
    landmarks: list[LandmarkScore]
    landmark: LandmarkScore | None
    confidence: float
    features: np.ndarray | None = None  # the calibration's inputs (score, margin, inliers)
    inliers: dict[int, int] = field(default_factory=dict)  # image_id -> verified inliers
    prior: float | None = None  # the query's landmark prior, when known
    prior_floor: float | None = None  # the gate it was held to (None: no gate)
    location: tuple[float, float] | None = None  # the photo's own position, when it had one
    # One per entry of `landmarks`: the probability that the photo shows that landmark (see
    # `landmark_confidences`); the first is `confidence`.
    confidences: tuple[float, ...] = ()

    @property
    def refusal(self) -> str | None:
        """Why `landmark` is None: "not_a_landmark" (the photo does not look like a landmark at all),
        "unknown_landmark" (no gallery landmark is close enough); None when answered or nothing to rank."""
        if self.landmark is not None or not self.landmarks:
            return None
        gated = self.prior is not None and self.prior_floor is not None and self.prior < self.prior_floor
        return "not_a_landmark" if gated else "unknown_landmark"


class Searcher:
    """Thread-safe: the service calls `embed` and `search` from several threads at once."""

    def __init__(
        self,
        extractor: Extractor,
        index: GalleryIndex,
        config: SearchConfig | None = None,
        *,
        threshold: float | None = None,
        candidates: int | None = None,
        calibration: Calibration | None = None,
        prior: LandmarkPrior | None = None,
    ) -> None:
        config = config if config is not None else SearchConfig()
        if threshold is not None:
            config = replace(config, threshold=threshold)
        if candidates is not None:
            config = replace(config, candidates=candidates)
        self.extractor = extractor
        self.index = index
        self.config = config
        self._warned: set[str] = set()
        self.prior = prior if config.prior_keep > 0 else None
        self._floor: tuple[int, float | None] | None = None  # (gallery size, floor) of the last computation
        self._coordinates: dict[str, tuple[float, float] | None] | None = None  # landmark id -> (lat, lon)
        self.multiscale = MultiScaleEmbedder(extractor, config.scales) if config.multiscale else None
        self.gallery = GalleryCache(extractor, index, config, self.multiscale)
        self._sizes: tuple[int, dict[str, int]] | None = None  # (gallery size, photos a landmark)
        directory = getattr(index, "directory", None)
        self.local_store = (
            LocalFeatureStore.open_existing(directory) if config.spatial and directory is not None else None
        )
        if config.spatial and self.local_store is None:
            self._warn_once(
                "spatial",
                "spatial verification is on, but the index has no local features (%s): "
                "searching without it; rebuild the index with `landmarks index build` to add them",
                directory,
            )
        elif self.local_store is not None and config.local_params.key not in self.local_store.params_keys():
            self._warn_once(
                "spatial",
                "the index's local features were extracted with other parameters than %s: "
                "searching without spatial verification",
                config.local_params.key,
            )
            self.local_store = None
        if calibration is None and config.calibrated and directory is not None:
            calibration = Calibration.load_if_present(directory)
        self.calibration = calibration
        self.model: CalibrationModel | None = (
            calibration.model_for(config.signature()) if calibration and config.calibrated else None
        )
        if calibration is not None and self.model is None and config.calibrated:
            self._warn_once(
                "calibration",
                "%s has no model for this search configuration; confidence stays uncalibrated "
                "(run `landmarks calibrate` with the same LANDMARKS_* settings)",
                directory,
            )

    # --- public ------------------------------------------------------------------------------------
    @property
    def threshold(self) -> float:
        """The operating threshold on confidence in force."""
        if self.config.threshold is not None:
            return float(self.config.threshold)
        return self.model.threshold if self.model is not None else DEFAULT_OPERATING_THRESHOLD

    @property
    def candidates(self) -> int:
        return self.config.candidates

    @property
    def spatial_active(self) -> bool:
        return self.local_store is not None

    def embed(self, images: Sequence[Image.Image]) -> list[Query]:
        """One `Query` per photo: its unit vector (multi-scale when configured), its landmark prior when
        the gate is on, and, with spatial verification on, its local features."""
        images = list(images)
        vectors = self._vectors(images)
        priors = self.prior.of_images(images).tolist() if self.prior is not None else [None] * len(images)
        return [
            Query(vector, extract(image, self.config.local_params) if self.spatial_active else None, prior)
            for vector, image, prior in zip(vectors, images, priors, strict=True)
        ]

    def search(self, queries: Sequence[Query], k: int) -> list[SearchResult]:
        """One result per query. Its local features, when it has them, enable verification; its prior,
        when it has one, the landmark gate."""
        return [
            self._search_one(query.vector, query.local, k, prior=query.prior, location=query.location)
            for query in queries
        ]

    def locate(self, image: Image.Image, query: Query, result: SearchResult) -> Region | None:
        """Where RESULT's answered landmark is in IMAGE (the photo of QUERY, upright as decoded): a box
        from the query regions that match it (landmarks.search.region). None when no landmark was named."""
        if result.landmark is None:
            return None
        landmark_id = result.landmark.landmark_id
        by_inliers = self._locate_by_inliers(query, result)
        if by_inliers is not None:
            return by_inliers
        references = self._landmark_vectors(landmark_id)
        if len(references) == 0:
            return None
        aggregate_top = self.config.aggregate_top

        def score(vectors: np.ndarray) -> np.ndarray:
            # Each crop scores as the search scores a landmark: the mean of its best photos.
            sims = np.sort(vectors @ references.T, axis=1)[:, ::-1]
            return np.array(
                [rank_landmarks([(landmark_id, float(v)) for v in row], aggregate_top)[0].score for row in sims]
            )

        whole = float(score(query.vector[None, :])[0])
        return locate_by_crops(image, whole, self._vectors, score)

    def _locate_by_inliers(self, query: Query, result: SearchResult) -> Region | None:
        """The box of the query's inliers against the answered landmark's verified gallery photos (those
        with at least spatial_min_inliers), all together: each shares a part of the view; else None."""
        if query.local is None or self.local_store is None or not result.inliers:
            return None
        labels = {match.image_id: match.landmark_id for match in result.matches}
        verified = [
            image_id
            for image_id, count in result.inliers.items()
            if count >= self.config.spatial_min_inliers
            and self._label_of(image_id, labels) == result.landmark.landmark_id
        ]
        if not verified:
            return None
        stored = self.local_store.get_many(verified, self.config.local_params.key)
        points = [inlier_points(query.local, features) for features in stored.values()]
        return locate_by_inliers(np.concatenate(points) if points else np.zeros((0, 2)), query.local.size)

    def _label_of(self, image_id: int, known: dict[int, str]) -> str | None:
        if image_id in known:
            return known[image_id]
        record = self.index.image(image_id)
        return record.landmark_id if record is not None else None

    def prior_floor(self) -> float | None:
        """The landmark prior below which a query is refused: the (1 - prior_keep) quantile of the
        gallery photos' priors. None (no gate) without a prior model or before the gallery has priors."""
        if self.prior is None:
            return None
        size = len(self.index)
        cached = self._floor
        if cached is not None and cached[0] == size:
            return cached[1]
        priors = np.fromiter(self.index.store.priors().values(), np.float64)
        floor = None
        if len(priors) >= MIN_PRIORS_FOR_GATE:
            floor = float(np.quantile(priors, 1.0 - self.config.prior_keep))
        elif size:
            self._warn_once(
                "prior",
                "only %d of the gallery's %d photos have a landmark prior: no landmark gate "
                "(run `landmarks index build` to compute them)",
                len(priors),
                size,
            )
        self._floor = (size, floor)
        return floor

    def search_images(self, images: Sequence[Image.Image], k: int) -> list[SearchResult]:
        return self.search(self.embed(images), k)

    def gallery_probe(self, image_id: int, *, leave_landmark_out: bool = False, k: int = 1) -> SearchResult | None:
        """Search with a gallery photo as the query, itself (or its whole landmark) left out.

        What `landmarks calibrate` learns from: nothing the evaluation queries is used. Without a stage
        that needs the whole gallery in memory, the photo's vector is read from the store: a
        million-photo gallery's vectors (15 GB) are never all loaded for it.
        """
        if self._needs_memory():
            gallery = self.gallery.get()
            row = gallery.rows.get(int(image_id))
            if row is None:
                return None
            label, vector = gallery.labels[row], gallery.raw[row]
        else:
            label = self.index.label_of(image_id)
            if label is None:
                return None
            _, vectors = next(self.index.store.vector_rows(self.index.vectors.dim, np.array([image_id])).read())
            if not len(vectors):
                return None
            vector = vectors[0]
        local = None
        if self.spatial_active:
            local = self.local_store.get_many([image_id], self.config.local_params.key).get(int(image_id))
        exclude_landmark = label if leave_landmark_out else None
        return self._search_one(vector, local, k, exclude_ids={int(image_id)}, exclude_landmark=exclude_landmark)

    def gallery_ids(self) -> list[tuple[int, str]]:
        """(image id, landmark id) of every photo that takes part in matching, by id."""
        return sorted(self.index.labels().items())

    def _landmark_size(self, landmark_id: str) -> int:
        """Photos of a landmark that take part in matching (counted again only when the gallery's size changes)."""
        size = len(self.index)
        if self._sizes is None or self._sizes[0] != size:
            self._sizes = (size, self.index.store.image_counts())
        return self._sizes[1].get(landmark_id, 0)

    def close(self) -> None:
        if self.local_store is not None:
            self.local_store.close()

    # --- stages ------------------------------------------------------------------------------------
    def _warn_once(self, key: str, message: str, *args) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)

    def _places(self, landmarks: Sequence[LandmarkScore]) -> dict[str, tuple[float, float]]:
        """(lat, lon) of each landmark that has them, cached; re-read when a landmark is new to the cache
        (added at run time)."""
        if self._coordinates is None or any(lm.landmark_id not in self._coordinates for lm in landmarks):
            self._coordinates = {
                landmark_id: (lm.lat, lm.lon) if lm.lat is not None and lm.lon is not None else None
                for landmark_id, lm in self.index.landmarks().items()
            }
        found = {lm.landmark_id: self._coordinates.get(lm.landmark_id) for lm in landmarks}
        return {landmark_id: place for landmark_id, place in found.items() if place is not None}

    def _vectors(self, images: list[Image.Image]) -> np.ndarray:
        """Unit vectors of photos as queries are embedded (multi-scale when configured)."""
        return self.multiscale.embed_images(images) if self.multiscale else self.extractor.embed_images(images)

    def _landmark_vectors(self, landmark_id: str) -> np.ndarray:
        """The vectors queries are compared with, of one landmark's photos that take part in matching."""
        if self._needs_memory():
            gallery = self.gallery.get()
            return gallery.searched[gallery.labels == landmark_id]
        return self.index.store.vectors(self.index.vectors.dim, landmark_id=landmark_id)[1]

    def _needs_memory(self) -> bool:
        return bool(self.config.multiscale or self.config.dba_k > 1 or self.config.qe_k > 0)

    def _nearest(self, query: np.ndarray, n: int) -> list[tuple[int, str, float]]:
        if self._needs_memory():
            gallery = self.gallery.get()
            if len(gallery.ids) == 0:
                return []
            sims = gallery.searched @ query
            n = min(n, len(sims))
            top = np.argpartition(-sims, n - 1)[:n] if n < len(sims) else np.arange(len(sims))
            top = top[np.argsort(-sims[top], kind="stable")]
            return [(int(gallery.ids[r]), gallery.labels[r], float(sims[r])) for r in top]
        return [(nb.image_id, nb.landmark_id, nb.score) for nb in self.index.search(query[None, :], n)[0]]

    def _search_one(
        self,
        query: np.ndarray,
        local: LocalFeatures | None,
        k: int,
        *,
        exclude_ids: set[int] | frozenset[int] = frozenset(),
        exclude_landmark: str | None = None,
        prior: float | None = None,
        location: tuple[float, float] | None = None,
    ) -> SearchResult:
        cfg = self.config
        extra = len(exclude_ids)
        if exclude_landmark is not None:
            extra += self._landmark_size(exclude_landmark)
        wanted = max(k, cfg.candidates)

        def nearest(vector: np.ndarray) -> list[tuple[int, str, float]]:
            found = self._nearest(vector, wanted + extra)
            return [c for c in found if c[0] not in exclude_ids and c[1] != exclude_landmark][:wanted]

        candidates = nearest(query)
        if cfg.qe_k > 0 and candidates:
            gallery = self.gallery.get()
            top = candidates[: cfg.qe_k]
            rows = [gallery.rows[c[0]] for c in top]
            expanded = alpha_query_expansion(query, gallery.searched[rows], np.array([c[2] for c in top]), cfg.qe_alpha)
            candidates = nearest(expanded)

        inliers: dict[int, int] = {}
        if local is not None and self.local_store is not None and candidates:
            top_ids = [c[0] for c in candidates[: cfg.spatial_top]]
            stored = self.local_store.get_many(top_ids, cfg.local_params.key)
            if len(stored) < len(top_ids):
                self._warn_once(
                    "spatial-missing",
                    "%d of the top gallery photos have no local features; they go unverified "
                    "(rebuild the index to add them)",
                    len(top_ids) - len(stored),
                )
            inliers = {image_id: count_inliers(local, stored[image_id]) for image_id in top_ids if image_id in stored}

        def photo_score(candidate: tuple[int, str, float]) -> float:
            verified = inliers.get(candidate[0], 0)
            if verified < cfg.spatial_min_inliers:
                return candidate[2]
            return candidate[2] + cfg.spatial_weight * min(verified, cfg.spatial_saturation) / cfg.spatial_saturation

        scored = sorted(((photo_score(c), c) for c in candidates), key=lambda pair: -pair[0])
        landmarks = rank_landmarks([(c[1], score) for score, c in scored], cfg.aggregate_top)
        if location is not None and cfg.geo_bonus > 0 and landmarks:
            landmarks = near_the_photo(landmarks, self._places(landmarks), location, cfg.geo_bonus, cfg.geo_scale_km)
        top = landmarks[0] if landmarks else None
        if top is None:
            return SearchResult([], [], None, 0.0, None, inliers, prior, location=location)
        runner_up = landmarks[1].score if len(landmarks) > 1 else (scored[-1][0] if scored else 0.0)
        verified: dict[str, int] = {}
        if self.spatial_active:
            for _, c in scored:
                verified[c[1]] = max(verified.get(c[1], 0), inliers.get(c[0], 0))
        features = feature_vector(top.score, top.score - runner_up, verified.get(top.landmark_id, 0))
        confidence = self._confidence(features, top.score)
        floor = self.prior_floor() if prior is not None else None
        if floor is not None and prior < floor:
            # Not a photo of a landmark, however close its nearest photos: refused, and its confidence
            # shown below the operating threshold, in proportion to how far below the gate it is.
            confidence = min(confidence, self.threshold * prior / max(floor, 1e-9))
            landmark = None
        else:
            landmark = top if confidence >= self.threshold else None

        if cfg.group_matches:
            rank = {lm.landmark_id: position for position, lm in enumerate(landmarks)}
            ordered = sorted(scored, key=lambda pair: (rank[pair[1][1]], -pair[0]))
        else:
            ordered = scored
        matches = [Neighbour(c[0], c[1], float(c[2])) for _, c in ordered[:k]]
        confidences = self._landmark_confidences(landmarks, float(confidence), verified)
        return SearchResult(
            matches, landmarks, landmark, float(confidence), features, inliers, prior, floor, location, confidences
        )

    def _confidence(self, features: np.ndarray, score: float) -> float:
        return self.model.confidence(features) if self.model is not None else confidence_from_score(score)

    def _landmark_confidences(
        self, landmarks: Sequence[LandmarkScore], top_confidence: float, verified: dict[str, int]
    ) -> tuple[float, ...]:
        """The probability that the photo shows each ranked landmark: the top's is `top_confidence`;
        a runner-up's is what the same model says of its own evidence (its score, its margin over the
        top, which is negative, and its verified inliers), capped by what the landmarks before it leave,
        since the photo shows at most one of them: the values never add up to more than 1."""
        confidences = [top_confidence]
        left = 1.0 - top_confidence
        for lm in landmarks[1:]:
            own = self._confidence(
                feature_vector(lm.score, lm.score - landmarks[0].score, verified.get(lm.landmark_id, 0)), lm.score
            )
            value = max(0.0, min(own, top_confidence, left))
            confidences.append(value)
            left -= value
        return tuple(confidences)
