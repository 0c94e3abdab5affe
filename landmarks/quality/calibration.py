"""Calibrated confidence: the probability that the top landmark is right, from the search's evidence.

A logistic model over a few features of one search (the top landmark's aggregated score, its margin
over the runner-up, and the spatially verified inliers when that stage is on), with non-negative
weights so confidence never drops when the evidence grows. It is fitted by `landmarks calibrate` on
labelled photos that are not queries of any evaluation:

- every gallery photo searched against the rest of the gallery (leave-one-out): positive when the
  top landmark is its own, negative otherwise;
- gallery photos searched with their whole landmark left out ("a landmark we do not know"): always
  negative;
- optional folders of photos that show no landmark (distractors): always negative.

Negatives are weighted to `negative_share` (default 0.1) of the fit, the share of photos without a
known landmark the service expects, so that confidence is a probability for that traffic. The stored
operating threshold (below which `landmark` is null) is by default the highest that still answers 98%
of the right leave-one-out answers; the operator can override it (LANDMARKS_THRESHOLD).

It lives in INDEX_DIR/calibration.json with one model per search configuration (the features'
distribution depends on the stages).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

CALIBRATION_FILE = "calibration.json"
FEATURES = ("score", "margin", "inliers")
DEFAULT_OPERATING_THRESHOLD = 0.5  # when nothing else sets one
DEFAULT_NEGATIVE_SHARE = 0.1  # the share of searched photos expected to show no known landmark
DEFAULT_KEEP_RIGHT = 0.98  # the operating threshold answers this share of the right answers


def feature_vector(score: float, margin: float, inliers: int | None) -> np.ndarray:
    """The model's inputs. Inliers saturate: 30 or 300 both mean "verified"."""
    return np.array([score, margin, math.log1p(min(max(inliers or 0, 0), 100))], dtype=np.float64)


@dataclass
class CalibrationModel:
    features: tuple[str, ...]
    weights: list[float]
    bias: float
    threshold: float = DEFAULT_OPERATING_THRESHOLD
    report: dict = field(default_factory=dict)

    def _mask(self) -> np.ndarray:
        return np.array([name in self.features for name in FEATURES])

    def confidence(self, features: np.ndarray) -> float:
        x = np.asarray(features, np.float64)[self._mask()]
        z = float(self.bias + np.dot(self.weights, x))
        return float(1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0))))


@dataclass
class Calibration:
    """Every model fitted for an index, by the signature of the search configuration it fits."""

    models: dict[str, CalibrationModel] = field(default_factory=dict)

    def model_for(self, signature: str) -> CalibrationModel | None:
        return self.models.get(signature)

    def save(self, path: Path) -> None:
        payload = {"version": 1, "models": {sig: asdict(model) for sig, model in self.models.items()}}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Calibration:
        payload = json.loads(Path(path).read_text())
        models = {}
        for sig, raw in payload.get("models", {}).items():
            models[sig] = CalibrationModel(
                tuple(raw["features"]),
                list(raw["weights"]),
                float(raw["bias"]),
                float(raw.get("threshold", DEFAULT_OPERATING_THRESHOLD)),
                raw.get("report", {}),
            )
        return cls(models)

    @classmethod
    def load_if_present(cls, index_dir: Path) -> Calibration | None:
        path = Path(index_dir) / CALIBRATION_FILE
        if not path.exists():
            return None
        try:
            return cls.load(path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("calibration file %s unreadable (%s); confidence stays uncalibrated", path, exc)
            return None


def fit_logistic(
    x: np.ndarray, y: np.ndarray, *, sample_weight: np.ndarray | None = None, l2: float = 1e-3, iterations: int = 50
) -> tuple[np.ndarray, float]:
    """Logistic regression by Newton's method with non-negative weights (active set).

    A feature whose weight would go negative is dropped and the rest refitted, so the fitted
    probability is monotone non-decreasing in every feature.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    sw = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    active = list(range(x.shape[1]))
    while True:
        w, b = _newton(x[:, active], y, sw, l2, iterations)
        if (w >= 0).all() or not active:
            full = np.zeros(x.shape[1])
            full[active] = w
            return full, b
        del active[int(np.argmin(w))]


def _newton(x: np.ndarray, y: np.ndarray, sw: np.ndarray, l2: float, iterations: int) -> tuple[np.ndarray, float]:
    n, d = x.shape
    # Standardise for conditioning, then map back.
    mean = x.mean(axis=0) if d else np.zeros(0)
    std = x.std(axis=0) + 1e-9 if d else np.ones(0)
    z = np.hstack([(x - mean) / std, np.ones((n, 1))])
    theta = np.zeros(d + 1)
    reg = np.full(d + 1, l2 * n)
    reg[-1] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ theta, -50, 50)))
        gradient = z.T @ (sw * (p - y)) + reg * theta
        hessian = (z * (sw * p * (1 - p))[:, None]).T @ z + np.diag(reg) + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if np.abs(step).max() < 1e-8:
            break
    w = theta[:d] / std
    b = float(theta[d] - np.dot(w, mean))
    return w, b


def fit_model(
    features: np.ndarray,
    labels: np.ndarray,
    names: tuple[str, ...],
    *,
    negative: np.ndarray | None = None,
    negative_share: float = DEFAULT_NEGATIVE_SHARE,
    keep_right: float = DEFAULT_KEEP_RIGHT,
    threshold: float | None = None,
    sources: dict | None = None,
) -> CalibrationModel:
    """Fit on (n, len(FEATURES)) feature rows, keeping only the named features.

    negative: which rows are negatives by construction (unknown landmark, no landmark); they are
    weighted to `negative_share` of the total, the share of photos without a known landmark that
    the service expects, so that confidence is a probability for that traffic, not for the fitting
    mix. The operating threshold (unless given) is the highest that still answers `keep_right` of
    the right answers among the other rows.
    """
    mask = np.array([name in names for name in FEATURES])
    features = np.asarray(features, np.float64)
    labels = np.asarray(labels, bool)
    if labels.all() or not labels.any():
        raise ValueError("calibration needs both right and wrong answers among the labelled photos")
    negative = np.zeros(len(labels), bool) if negative is None else np.asarray(negative, bool)
    weights_per_row = np.ones(len(labels))
    if negative.any() and (~negative).any():
        weights_per_row[negative] = negative_share / negative.sum()
        weights_per_row[~negative] = (1 - negative_share) / (~negative).sum()
        weights_per_row *= len(labels)
    weights, bias = fit_logistic(features[:, mask], labels.astype(float), sample_weight=weights_per_row)
    model = CalibrationModel(
        tuple(n for n in FEATURES if n in names), [float(w) for w in weights[: mask.sum()]], float(bias)
    )
    confidences = np.array([model.confidence(row) for row in features])
    right_known = confidences[labels & ~negative]
    if threshold is None:
        threshold = float(np.quantile(right_known, 1 - keep_right)) if len(right_known) else DEFAULT_OPERATING_THRESHOLD
    model.threshold = float(np.clip(threshold, 0.0, 1.0))
    answered = confidences >= model.threshold
    model.report = {
        "fitted_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "samples": int(len(labels)),
        "right": int(labels.sum()),
        "wrong": int((~labels).sum()),
        "sources": sources or {},
        "negative_share": negative_share,
        "keep_right": keep_right,
        "at_threshold": {
            "right_answered": float(answered[labels].mean()),
            "wrong_refused": float((~answered[~labels]).mean()),
            "negatives_refused": float((~answered[negative]).mean()) if negative.any() else None,
        },
        "brier": float(np.mean((confidences - labels) ** 2)),
    }
    return model


def fit_searcher(
    searcher,
    *,
    negatives: list = (),
    unknown_every: int = 2,
    sample: int | None = None,
    progress: bool = False,
    threshold: float | None = None,
    **shares: float,
) -> CalibrationModel:
    """What `landmarks calibrate` fits for a searcher's configuration (uncalibrated `Searcher`): samples
    from its gallery (collect_samples) and NEGATIVES, then the model and its operating threshold.
    shares: keep_right, negative_share (fit_model's)."""
    samples = collect_samples(
        searcher, negatives=negatives, unknown_every=unknown_every, sample=sample, progress=progress
    )
    return fit_from_samples(samples, spatial=searcher.spatial_active, threshold=threshold, **shares)


@dataclass
class Samples:
    features: list[np.ndarray] = field(default_factory=list)
    right: list[bool] = field(default_factory=list)
    source: list[str] = field(default_factory=list)

    def add(self, result, truth: str | None, source: str) -> None:
        if result is None or result.features is None:
            return
        self.features.append(result.features)
        self.right.append(truth is not None and bool(result.landmarks) and result.landmarks[0].landmark_id == truth)
        self.source.append(source)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for source in self.source:
            out[source] = out.get(source, 0) + 1
        return out


def collect_samples(
    searcher, *, negatives: list = (), unknown_every: int = 2, sample: int | None = None, progress: bool = False
) -> Samples:
    """Labelled evidence for fitting, none of it from evaluation queries.

    searcher: a `landmarks.search.Searcher` (uncalibrated). negatives: PIL images that show no
    landmark. unknown_every: every n-th gallery photo is also searched with its landmark left out
    (0: never). sample: probe at most this many gallery photos, drawn at random (seeded): a
    million-photo gallery would otherwise take a million and a half searches.
    """
    samples = Samples()
    photos = searcher.gallery_ids()
    if sample is not None and sample < len(photos):
        chosen = np.sort(np.random.default_rng(0).choice(len(photos), sample, replace=False))
        photos = [photos[i] for i in chosen]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            total=len(photos) + (len(photos) // unknown_every if unknown_every else 0) + len(negatives),
            desc="calibrating",
            unit="photo",
            dynamic_ncols=True,
        )
    for position, (image_id, label) in enumerate(photos):
        samples.add(searcher.gallery_probe(image_id), label, "gallery_leave_one_out")
        if bar is not None:
            bar.update()
        if unknown_every and position % unknown_every == 0:
            samples.add(searcher.gallery_probe(image_id, leave_landmark_out=True), None, "gallery_unknown_landmark")
            if bar is not None:
                bar.update()
    for image in negatives:
        samples.add(searcher.search_images([image], 1)[0], None, "negatives")
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    return samples


def fit_from_samples(
    samples: Samples,
    *,
    spatial: bool,
    threshold: float | None = None,
    negative_share: float = DEFAULT_NEGATIVE_SHARE,
    keep_right: float = DEFAULT_KEEP_RIGHT,
) -> CalibrationModel:
    names = FEATURES if spatial else tuple(n for n in FEATURES if n != "inliers")
    negative = np.array([source != "gallery_leave_one_out" for source in samples.source])
    return fit_model(
        np.array(samples.features),
        np.array(samples.right),
        names,
        negative=negative,
        negative_share=negative_share,
        keep_right=keep_right,
        threshold=threshold,
        sources=samples.counts(),
    )
