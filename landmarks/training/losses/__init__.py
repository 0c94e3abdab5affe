"""Metric-learning losses built from small parts: pair masks, step surrogates, smooth-rank AP,
calibration, angular margins. `build_loss` makes one from a config's `loss` section."""

from __future__ import annotations

from torch import nn

from landmarks.training.losses.arcface import ArcFaceLoss, SubCenterCosine, additive_angular_margin
from landmarks.training.losses.calibration import CalibrationLoss
from landmarks.training.losses.pairs import label_masks, similarity_matrix
from landmarks.training.losses.roadmap import RoadmapLoss
from landmarks.training.losses.smooth_ap import SmoothRankAP
from landmarks.training.losses.surrogates import SigmoidStep, SupRankStep, heaviside

LOSSES = ("roadmap", "arcface")


def build_loss(name: str, params: dict, *, embedding_dim: int, num_classes: int) -> nn.Module:
    """A loss by name; `params` are its keyword arguments (see each loss for their meaning).

    ROADMAP's λ may be spelt `lambda`, as in the paper (a Python keyword, so the argument is `lam`).
    """
    if name == "roadmap":
        return RoadmapLoss(**{("lam" if key == "lambda" else key): value for key, value in params.items()})
    if name == "arcface":
        return ArcFaceLoss(embedding_dim, num_classes, **params)
    raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")


__all__ = [
    "LOSSES",
    "ArcFaceLoss",
    "CalibrationLoss",
    "RoadmapLoss",
    "SigmoidStep",
    "SmoothRankAP",
    "SubCenterCosine",
    "SupRankStep",
    "additive_angular_margin",
    "build_loss",
    "heaviside",
    "label_masks",
    "similarity_matrix",
]
