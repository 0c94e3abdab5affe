"""ArcFace (Deng et al., CVPR 2019), with optional sub-centres (Deng et al., ECCV 2020).

Each class has `sub_centers` learnable unit vectors; a photo's cosine to a class is its best cosine
to any of them, so a landmark photographed from several distinct sides need not collapse to one
direction. The true class's angle gets an additive margin m before the scaled softmax.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class SubCenterCosine(nn.Module):
    """Cosine of each embedding to each class: the best over the class's sub-centres, (B, C)."""

    def __init__(self, embedding_dim: int, num_classes: int, sub_centers: int = 1) -> None:
        super().__init__()
        self.num_classes, self.sub_centers = num_classes, sub_centers
        self.weight = nn.Parameter(torch.empty(num_classes * sub_centers, embedding_dim))
        nn.init.normal_(self.weight, std=0.01)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        cosine = F.normalize(embeddings, dim=1) @ F.normalize(self.weight, dim=1).T
        return cosine.view(-1, self.num_classes, self.sub_centers).amax(dim=2)


def additive_angular_margin(cosine: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """cos(θ + m) for each row's true class, cos θ elsewhere.

    Where θ + m would pass π, cos(θ + m) would rise again and reward a worse angle; there the
    penalty continues as cos θ − m·sin m, which keeps decreasing (the insightface convention).
    """
    cosine = cosine.clamp(-1 + 1e-7, 1 - 1e-7)
    sine = torch.sqrt(1.0 - cosine**2)
    with_margin = cosine * math.cos(margin) - sine * math.sin(margin)
    with_margin = torch.where(cosine > math.cos(math.pi - margin), with_margin, cosine - margin * math.sin(margin))
    target = F.one_hot(labels, cosine.shape[1]).bool()
    return torch.where(target, with_margin, cosine)


class ArcFaceLoss(nn.Module):
    def __init__(
        self, embedding_dim: int, num_classes: int, margin: float = 0.3, scale: float = 30.0, sub_centers: int = 1
    ) -> None:
        super().__init__()
        self.classifier = SubCenterCosine(embedding_dim, num_classes, sub_centers)
        self.margin, self.scale = margin, scale

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = self.scale * additive_angular_margin(self.classifier(embeddings), labels, self.margin)
        return F.cross_entropy(logits, labels)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, scale={self.scale}"
