"""Ensembles: several backbones look at the same photo and their descriptors are concatenated.

Each member's feature map is GeM-pooled and L2-normalised on its own, and the concatenation is
scaled by 1/sqrt(members), so it is unit length and the cosine between two photos is the mean of
the members' cosines. Members trained differently err on different photos: averaging their votes
is the cheapest gain in accuracy there is when no better single network can be had (the
README's "Why the ensemble is the default" gives the measured gain of the default ensemble).

`config.extra["members"]` names the member backbones (timm names); the registry's backbone factory
builds them with their pretrained weights, and `EnsembleNet(config)` alone builds them untrained for
a checkpoint to fill in.
"""

from __future__ import annotations

import math

import timm
import torch
from torch import nn

from landmarks.models.layers import GeM, L2Norm
from landmarks.models.network import ModelConfig


def members_of(config: ModelConfig) -> list[str]:
    members = list(config.extra.get("members", ()))
    if len(members) < 2:
        raise ValueError(f"an ensemble needs at least two members in extra['members'], got {members}")
    return members


class EnsembleNet(nn.Module):
    """Image batch (B, 3, H, W), normalised → unit-length concatenated descriptors (B, sum of widths)."""

    def __init__(self, config: ModelConfig, backbone: nn.ModuleList | None = None) -> None:
        super().__init__()
        members = members_of(config)
        if backbone is None:
            backbone = nn.ModuleList(
                timm.create_model(name, pretrained=False, num_classes=0, global_pool="") for name in members
            )
        if len(backbone) != len(members):
            raise ValueError(f"{len(backbone)} backbones for {len(members)} members")
        self.config = config
        self.backbone = backbone
        self.pools = nn.ModuleList(GeM(config.gem_p) for _ in members)
        self.norm = L2Norm()
        self.scale = 1.0 / math.sqrt(len(members))
        self.output_dim = sum(member.num_features for member in backbone)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        parts = [
            self.norm(pool(member.forward_features(images)))
            for member, pool in zip(self.backbone, self.pools, strict=True)
        ]
        return torch.cat(parts, dim=1) * self.scale
