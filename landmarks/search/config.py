"""SearchConfig: which search stages run, and their parameters (in the service, LANDMARKS_* variables
read by api/settings.py)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from landmarks.quality.local_features import LocalFeatureParams
from landmarks.search.ranking import DEFAULT_AGGREGATE_TOP

# The operating threshold on confidence when neither the operator nor a calibration sets one. None
# here (and as `SearchConfig.threshold`) means "the calibration's, else 0.5".
DEFAULT_THRESHOLD: float | None = None


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
    aggregate_top: int = (
        DEFAULT_AGGREGATE_TOP  # a landmark's score: the mean of its best this-many photo scores (1: max)
    )
    group_matches: bool = True  # matches: best landmark's photos first
    # The landmark prior's gate (landmarks.quality.prior): a query less landmark-like than all but this
    # share of the gallery's own photos is refused. The share is the calibration's DEFAULT_KEEP_RIGHT
    # (answer 98% of what the gallery shows). 0: no gate.
    prior_keep: float = 0.98
    # The photo's own GPS (EXIF), when it has one: landmarks near it gain up to geo_bonus of score,
    # fading over geo_scale_km (ranking.near_the_photo). bench/gps.py, dev queries: R@1 0.938 without
    # GPS, 0.993 with the true position (0.973 at a bonus of 0.03, 1.000 at 0.1), unchanged with a
    # position 500+ km away; a position exactly at a far look-alike gives 0.822 (0.932, 0.712). 0: ignore GPS.
    geo_bonus: float = 0.08
    geo_scale_km: float = 2.0
    calibrated: bool = True  # use INDEX_DIR/calibration.json when it has a model for this config
    threshold: float | None = DEFAULT_THRESHOLD  # operating threshold on confidence

    @property
    def local_params(self) -> LocalFeatureParams:
        return LocalFeatureParams(
            self.spatial_kind, self.spatial_max_side, self.spatial_max_features, self.spatial_model
        )

    @property
    def multiscale(self) -> bool:
        return tuple(self.scales) != (1.0,)

    def signature(self) -> str:
        """The stages and parameters that shape the calibration's features (threshold aside)."""
        keep = {
            k: v
            for k, v in asdict(self).items()
            if k not in {"threshold", "group_matches", "calibrated", "prior_keep", "geo_bonus", "geo_scale_km"}
        }
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
        if self.prior_keep:
            parts.append(f"landmark prior gate at {self.prior_keep:g} of the gallery")
        if self.geo_bonus:
            parts.append(f"photo GPS bonus {self.geo_bonus:g} over {self.geo_scale_km:g} km")
        parts.append(
            f"landmark = mean of top {self.aggregate_top}" if self.aggregate_top > 1 else "landmark = best photo"
        )
        return ", ".join(parts)
