"""Search: embed a photo, find its nearest gallery photos, rank landmarks, decide if it is one.

The stages, each switched by `SearchConfig` (in the service, by LANDMARKS_* variables: api/settings.py):

1. embedding, optionally multi-scale (`scales`), of the query and, through a cache in the index
   folder, of the gallery;
2. nearest gallery photos by cosine similarity, optionally over DBA-augmented gallery vectors
   (`dba_k`) and with alpha query expansion (`qe_k`);
3. spatial verification of the top `spatial_top` photos with local features and RANSAC (`spatial`):
   verified photos gain score in proportion to their inliers;
4. landmark aggregation (`aggregate_top`): a landmark's score is the mean of its best photo scores;
5. confidence: the calibrated probability that the top landmark is right (INDEX_DIR/calibration.json,
   from `landmarks calibrate`), else a fixed mapping of the score; `landmark` is null below the
   operating `threshold`;
6. matches: the photos of the ranked landmarks, best landmark first (`group_matches`), as in
   "discriminative re-ranking" with the gallery's labels; else by photo score alone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from landmarks.index import GalleryIndex, Neighbour
from landmarks.models import Extractor
from landmarks.quality.calibration import DEFAULT_OPERATING_THRESHOLD, Calibration, CalibrationModel, feature_vector
from landmarks.quality.expansion import alpha_query_expansion, database_augment
from landmarks.quality.local_features import LocalFeatureParams, LocalFeatures, LocalFeatureStore, extract
from landmarks.quality.multiscale import MultiScaleEmbedder
from landmarks.quality.spatial import count_inliers

log = logging.getLogger(__name__)

# The operating threshold on confidence when neither the operator nor a calibration sets one. None
# here (and as `SearchConfig.threshold`) means "the calibration's, else 0.5".
DEFAULT_THRESHOLD: float | None = None
# Without calibration, confidence is 0.5 at this cosine similarity of the best landmark: the measured
# point below which the dev distractors fall, with Lite0 and with the ensemble alike (README, quality
# table's first row: 100% refused).
UNCALIBRATED_SCORE_AT_HALF = 0.63
MULTISCALE_FILE = "multiscale_vectors.npz"
LOCAL_CACHE_SIZE = 256  # query photos whose local features wait between `embed` and `search`


@dataclass(frozen=True)
class SearchConfig:
    """Which quality stages run, and their parameters. Defaults are the measured default setup."""

    candidates: int = 100  # gallery photos ranked per query (more never hurts quality, only time)
    scales: tuple[float, ...] = (1.0,)  # multi-scale embedding, relative to the model's input size
    # Spatial verification of the top photos with local features. Off by default: on the dev
    # protocol it fixes no top-1 answer, adds ~130 ms of CPU per query, and chance inliers on
    # distractors lift their confidence (bench/quality.py). Switch on for galleries of larger photos.
    spatial: bool = False
    spatial_top: int = 10  # N: how many top photos are verified
    spatial_kind: str = LocalFeatureParams.kind  # sift | orb | delf
    # delf only: the DELF model (a registered name or a checkpoint from configs/delf.yaml)
    spatial_model: str = LocalFeatureParams.model
    # query cost: ~65 ms of SIFT at 480 px against ~115 ms at 640 px (one core)
    spatial_max_side: int = LocalFeatureParams.max_side
    spatial_max_features: int = LocalFeatureParams.max_features
    spatial_min_inliers: int = 12  # fewer inliers than this is chance, not a verified match
    spatial_weight: float = 0.15  # score added at spatial_saturation inliers and beyond
    spatial_saturation: int = 40
    qe_k: int = 0  # alpha-QE: how many top photos expand the query (0: off)
    qe_alpha: float = 3.0
    dba_k: int = 0  # DBA: how many neighbours augment each gallery vector (0: off)
    dba_alpha: float = 3.0
    aggregate_top: int = 2  # a landmark's score: the mean of its best this-many photo scores (1: max)
    group_matches: bool = True  # matches: best landmark's photos first
    calibrated: bool = True  # use INDEX_DIR/calibration.json when it has a model for this config
    threshold: float | None = DEFAULT_THRESHOLD  # operating threshold on confidence

    @property
    def local_params(self) -> LocalFeatureParams:
        return LocalFeatureParams(self.spatial_kind, self.spatial_max_side, self.spatial_max_features, self.spatial_model)

    @property
    def multiscale(self) -> bool:
        return tuple(self.scales) != (1.0,)

    def signature(self) -> str:
        """The stages and parameters that shape the calibration's features (threshold aside)."""
        keep = {k: v for k, v in asdict(self).items() if k not in {"threshold", "group_matches", "calibrated"}}
        if not self.spatial:
            keep = {k: v for k, v in keep.items() if not k.startswith("spatial_")}
        elif self.spatial_kind != "delf":
            keep.pop("spatial_model")  # only DELF reads it; SIFT/ORB calibrations stay valid
        keep["scales"] = [float(s) for s in self.scales]
        return json.dumps(keep, sort_keys=True, separators=(",", ":"))

    def describe(self) -> str:
        parts = [f"scales {','.join(f'{s:g}' for s in self.scales)}" if self.multiscale else "single-scale"]
        if self.dba_k:
            parts.append(f"DBA k={self.dba_k} a={self.dba_alpha:g}")
        if self.qe_k:
            parts.append(f"aQE k={self.qe_k} a={self.qe_alpha:g}")
        if self.spatial:
            kind = f"delf ({self.spatial_model})" if self.spatial_kind == "delf" else self.spatial_kind
            parts.append(f"spatial {kind} top {self.spatial_top}")
        parts.append(f"landmark = mean of top {self.aggregate_top}" if self.aggregate_top > 1 else "landmark = best photo")
        return ", ".join(parts)


@dataclass(frozen=True)
class LandmarkScore:
    landmark_id: str
    score: float  # the aggregated score of its best photos (with verification bonus)
    votes: int  # how many of the candidates belong to it


@dataclass(frozen=True)
class SearchResult:
    matches: list[Neighbour]
    landmarks: list[LandmarkScore]
    landmark: LandmarkScore | None
    confidence: float
    features: np.ndarray | None = None  # the calibration's inputs (score, margin, inliers)
    inliers: dict[int, int] = field(default_factory=dict)  # image_id -> verified inliers


def rank_landmarks(scored: Sequence[tuple[str, float]], aggregate_top: int) -> list[LandmarkScore]:
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


def confidence_from_score(score: float, threshold: float = UNCALIBRATED_SCORE_AT_HALF) -> float:
    """The uncalibrated confidence in [0, 1]: 0.5 at `threshold` similarity, rising with the score."""
    if score >= threshold:
        return float(np.clip(0.5 + (score - threshold) / (2 * max(1e-6, 1 - threshold)), 0.0, 1.0))
    return float(np.clip(0.5 * score / max(threshold, 1e-6), 0.0, 0.5))


@dataclass
class _Gallery:
    """The gallery as the configured stages search it, held in memory (only when a stage needs it)."""

    size: int
    ids: np.ndarray
    labels: np.ndarray
    raw: np.ndarray  # query-side vectors of the gallery photos (multi-scale when configured)
    searched: np.ndarray  # what queries are compared with (DBA-augmented when configured)
    rows: dict[int, int]
    counts: dict[str, int]


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
    ) -> None:
        config = config if config is not None else SearchConfig()
        if threshold is not None:
            config = replace(config, threshold=threshold)
        if candidates is not None:
            config = replace(config, candidates=candidates)
        self.extractor = extractor
        self.index = index
        self.config = config
        self._lock = threading.RLock()
        self._gallery: _Gallery | None = None
        self._warned: set[str] = set()
        self._local_by_vector: OrderedDict[bytes, LocalFeatures] = OrderedDict()
        self.multiscale = MultiScaleEmbedder(extractor, config.scales) if config.multiscale else None
        directory = getattr(index, "directory", None)
        self.local_store = LocalFeatureStore.open_existing(directory) if config.spatial and directory is not None else None
        if config.spatial and self.local_store is None:
            self._warn_once("spatial", "spatial verification is on, but the index has no local features (%s): "
                            "searching without it; rebuild the index with `landmarks index build` to add them", directory)
        elif self.local_store is not None and config.local_params.key not in self.local_store.params_keys():
            self._warn_once("spatial", "the index's local features were extracted with other parameters than %s: "
                            "searching without spatial verification", config.local_params.key)
            self.local_store = None
        if calibration is None and config.calibrated and directory is not None:
            calibration = Calibration.load_if_present(directory)
        self.calibration = calibration
        self.model: CalibrationModel | None = calibration.model_for(config.signature()) if calibration and config.calibrated else None
        if calibration is not None and self.model is None and config.calibrated:
            self._warn_once("calibration", "%s has no model for this search configuration; confidence stays uncalibrated "
                            "(run `landmarks calibrate` with the same LANDMARKS_* settings)", directory)

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

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(N, D) unit query vectors (multi-scale when configured).

        With spatial verification on, each photo's local features are extracted too and kept, keyed
        by its vector, for the `search` of that vector (a bounded cache: callers may split, copy or
        queue the vectors as they like between the two calls).
        """
        images = list(images)
        vectors = self.multiscale.embed_images(images) if self.multiscale else self.extractor.embed_images(images)
        if self.spatial_active:
            for vector, image in zip(vectors, images, strict=True):
                self._remember_local(vector, extract(image, self.config.local_params))
        return vectors

    def search(self, vectors: np.ndarray, k: int, *, local: Sequence[LocalFeatures | None] | None = None) -> list[SearchResult]:
        """One result per query row. Local features (given, or kept by `embed`) enable verification."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim == 1:
            vectors = vectors[None, :]
        results = []
        for row, vector in enumerate(vectors):
            features = local[row] if local is not None else self._recall_local(vector)
            results.append(self._search_one(vector, features, k))
        return results

    def search_images(self, images: Sequence[Image.Image], k: int) -> list[SearchResult]:
        return self.search(self.embed(images), k)

    def gallery_probe(self, image_id: int, *, leave_landmark_out: bool = False, k: int = 1) -> SearchResult | None:
        """Search with a gallery photo as the query, itself (or its whole landmark) left out.

        What `landmarks calibrate` learns from: nothing the evaluation queries is used.
        """
        gallery = self._gallery_state()
        row = gallery.rows.get(int(image_id))
        if row is None:
            return None
        label = gallery.labels[row]
        local = None
        if self.spatial_active:
            local = self.local_store.get_many([image_id], self.config.local_params.key).get(int(image_id))
        exclude_landmark = label if leave_landmark_out else None
        return self._search_one(gallery.raw[row], local, k, exclude_ids={int(image_id)}, exclude_landmark=exclude_landmark)

    def gallery_ids(self) -> list[tuple[int, str]]:
        gallery = self._gallery_state()
        return list(zip(gallery.ids.tolist(), gallery.labels.tolist(), strict=True))

    def close(self) -> None:
        if self.local_store is not None:
            self.local_store.close()

    # --- stages ------------------------------------------------------------------------------------
    @staticmethod
    def _vector_key(vector: np.ndarray) -> bytes:
        return hashlib.blake2b(np.ascontiguousarray(vector, dtype=np.float32).tobytes(), digest_size=16).digest()

    def _remember_local(self, vector: np.ndarray, features: LocalFeatures) -> None:
        with self._lock:
            self._local_by_vector[self._vector_key(vector)] = features
            while len(self._local_by_vector) > LOCAL_CACHE_SIZE:
                self._local_by_vector.popitem(last=False)

    def _recall_local(self, vector: np.ndarray) -> LocalFeatures | None:
        if not self.spatial_active:
            return None
        with self._lock:
            return self._local_by_vector.get(self._vector_key(vector))

    def _warn_once(self, key: str, message: str, *args) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)

    def _needs_memory(self) -> bool:
        return bool(self.config.multiscale or self.config.dba_k > 1 or self.config.qe_k > 0)

    def _gallery_state(self) -> _Gallery:
        """The in-memory gallery, rebuilt when the index changed size since it was made."""
        size = len(self.index)
        current = self._gallery
        if current is not None and current.size == size:
            return current
        with self._lock:
            if self._gallery is not None and self._gallery.size == len(self.index):
                return self._gallery
            ids, vectors, labels = self.index.store.vectors(self.index.vectors.dim)
            raw = self._multiscale_gallery(ids, vectors) if self.config.multiscale else vectors
            searched = database_augment(raw, self.config.dba_k, self.config.dba_alpha) if self.config.dba_k > 1 else raw
            labels_array = np.asarray(labels, dtype=object)
            counts: dict[str, int] = {}
            for label in labels:
                counts[label] = counts.get(label, 0) + 1
            self._gallery = _Gallery(size, ids, labels_array, raw, np.ascontiguousarray(searched), {int(i): r for r, i in enumerate(ids.tolist())}, counts)
            return self._gallery

    def _multiscale_gallery(self, ids: np.ndarray, single: np.ndarray) -> np.ndarray:
        """Multi-scale gallery vectors, from INDEX_DIR/multiscale_vectors.npz, embedding what is missing."""
        from landmarks.images import ImageError, decode_image

        key = json.dumps({"fingerprint": self.extractor.fingerprint, "scales": [float(s) for s in self.config.scales]})
        path = Path(self.index.directory) / MULTISCALE_FILE
        cached: dict[int, np.ndarray] = {}
        if path.exists():
            try:
                with np.load(path, allow_pickle=False) as data:
                    if str(data["key"]) == key:
                        cached = dict(zip(data["ids"].tolist(), data["vectors"], strict=True))
            except (OSError, ValueError, KeyError) as exc:
                log.warning("multi-scale cache %s unreadable (%s); recomputing", path, exc)
        out = np.empty_like(single)
        missing = [row for row, image_id in enumerate(ids.tolist()) if image_id not in cached]
        if missing:
            log.info("embedding %d gallery photos at scales %s (cached in %s)", len(missing), self.config.scales, path)
        for row, image_id in enumerate(ids.tolist()):
            if image_id in cached:
                out[row] = cached[image_id]
        for start in range(0, len(missing), 16):
            rows = missing[start : start + 16]
            images, good = [], []
            for row in rows:
                record = self.index.image(int(ids[row]))
                try:
                    images.append(decode_image(Path(record.path)))
                    good.append(row)
                except (ImageError, OSError, AttributeError) as exc:
                    log.warning("gallery photo %s unreadable for multi-scale (%s); using its single-scale vector", ids[row], exc)
                    out[row] = single[row]
            if images:
                out[good] = self.multiscale.embed_images(images)
        if missing:
            tmp = path.with_name(path.stem + ".tmp.npz")
            np.savez(tmp, key=np.array(key), ids=ids, vectors=out)
            tmp.replace(path)
        return out

    def _nearest(self, query: np.ndarray, n: int) -> list[tuple[int, str, float]]:
        if self._needs_memory():
            gallery = self._gallery_state()
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
    ) -> SearchResult:
        cfg = self.config
        extra = len(exclude_ids)
        if exclude_landmark is not None:
            extra += self._gallery_state().counts.get(exclude_landmark, 0)
        wanted = max(k, cfg.candidates)

        def nearest(vector: np.ndarray) -> list[tuple[int, str, float]]:
            found = self._nearest(vector, wanted + extra)
            return [c for c in found if c[0] not in exclude_ids and c[1] != exclude_landmark][:wanted]

        candidates = nearest(query)
        if cfg.qe_k > 0 and candidates:
            gallery = self._gallery_state()
            top = candidates[: cfg.qe_k]
            rows = [gallery.rows[c[0]] for c in top]
            expanded = alpha_query_expansion(query, gallery.searched[rows], np.array([c[2] for c in top]), cfg.qe_alpha)
            candidates = nearest(expanded)

        inliers: dict[int, int] = {}
        if local is not None and self.local_store is not None and candidates:
            top_ids = [c[0] for c in candidates[: cfg.spatial_top]]
            stored = self.local_store.get_many(top_ids, cfg.local_params.key)
            if len(stored) < len(top_ids):
                self._warn_once("spatial-missing", "%d of the top gallery photos have no local features; they go unverified "
                                "(rebuild the index to add them)", len(top_ids) - len(stored))
            inliers = {image_id: count_inliers(local, stored[image_id]) for image_id in top_ids if image_id in stored}

        def photo_score(candidate: tuple[int, str, float]) -> float:
            verified = inliers.get(candidate[0], 0)
            if verified < cfg.spatial_min_inliers:
                return candidate[2]
            return candidate[2] + cfg.spatial_weight * min(verified, cfg.spatial_saturation) / cfg.spatial_saturation

        scored = sorted(((photo_score(c), c) for c in candidates), key=lambda pair: -pair[0])
        landmarks = rank_landmarks([(c[1], score) for score, c in scored], cfg.aggregate_top)
        top = landmarks[0] if landmarks else None
        if top is None:
            return SearchResult([], [], None, 0.0, None, inliers)
        runner_up = landmarks[1].score if len(landmarks) > 1 else (scored[-1][0] if scored else 0.0)
        top_inliers = max((inliers.get(c[0], 0) for _, c in scored if c[1] == top.landmark_id), default=0)
        features = feature_vector(top.score, top.score - runner_up, top_inliers if self.spatial_active else 0)
        confidence = self.model.confidence(features) if self.model is not None else confidence_from_score(top.score)
        landmark = top if confidence >= self.threshold else None

        if cfg.group_matches:
            rank = {lm.landmark_id: position for position, lm in enumerate(landmarks)}
            ordered = sorted(scored, key=lambda pair: (rank[pair[1][1]], -pair[0]))
        else:
            ordered = scored
        matches = [Neighbour(c[0], c[1], float(c[2])) for _, c in ordered[:k]]
        return SearchResult(matches, landmarks, landmark, float(confidence), features, inliers)
