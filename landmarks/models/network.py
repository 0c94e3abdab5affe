"""Embedding networks. The common one is a timm backbone, a pooling layer, an optional projection and
L2 normalisation; other architectures (DOLG, DELF, CLIP, the ensemble) have modules of their own, and
landmarks/models/architectures.py names them all.

Every network has `config`, `backbone` and `output_dim`, and maps a normalised image batch
(B, 3, H, W) to unit-length descriptors (B, D).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import timm
import torch
from torch import nn

from landmarks.models.layers import GeM, L2Norm, TokenPool


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild an embedding network (weights aside)."""

    backbone: str = "efficientnet_lite0"
    architecture: str = "gem"  # a key of architectures.ARCHITECTURES: how the backbone's features become a descriptor
    image_size: int = 320
    embedding_dim: int | None = None  # None: no projection head, the backbone's width
    gem_p: float = 3.0
    # Preprocessing, filled from the backbone's timm config when not given.
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bicubic"
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("mean", "std"):
            if key in known:
                known[key] = tuple(known[key])
        return cls(**known)


class EmbeddingNet(nn.Module):
    """Image batch (B, 3, H, W), normalised → unit-length descriptors (B, D)."""

    def __init__(self, config: ModelConfig, backbone: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone or timm.create_model(config.backbone, pretrained=False, num_classes=0, global_pool="")
        width = self.backbone.num_features
        is_transformer = getattr(self.backbone, "num_prefix_tokens", None) is not None
        self.pool: nn.Module = TokenPool(self.backbone.num_prefix_tokens) if is_transformer else GeM(config.gem_p)
        self.head: nn.Module = nn.Linear(width, config.embedding_dim) if config.embedding_dim else nn.Identity()
        self.norm = L2Norm()
        self.output_dim = config.embedding_dim or width

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.backbone.forward_features(images)
        return self.norm(self.head(self.pool(features)))


def timm_backbone(config: ModelConfig) -> nn.Module:
    """The untrained timm backbone `config` names, as `create_model` builds it (no classifier, no pooling)."""
    return timm.create_model(config.backbone, pretrained=False, num_classes=0, global_pool="")


def feature_level(backbone: nn.Module, reduction: int) -> int:
    """The index, for `forward_intermediates(indices=...)`, of the backbone's feature map at this stride."""
    for index, info in enumerate(backbone.feature_info):
        if info["reduction"] == reduction:
            return index
    strides = [info["reduction"] for info in backbone.feature_info]
    raise ValueError(f"backbone has no feature map at stride {reduction} (it has {strides})")


@contextlib.contextmanager
def seeded_new_layers(seed: int = 0) -> Iterator[None]:
    """Initialise the layers built inside with a fixed seed, leaving the global RNG as it was.

    A registered model with new layers is used untrained too (index build and serve each create it
    in their own process): its new layers must come out identical every time, or the index's
    fingerprint check rejects the serving model.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
