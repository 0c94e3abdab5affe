"""DELF: attention-weighted local features for spatial re-ranking (Noh et al., ICCV 2017, "Large-Scale
Image Retrieval with Attentive Deep Local Features").

Every position of the backbone's stride-16 feature map is a local descriptor: projected by a 1×1
convolution and L2-normalised. A small attention network scores how useful each position is for
recognising the landmark. The paper trains the attention with a classification loss on the
attention-weighted sum of the descriptors; here `forward` returns exactly that sum, L2-normalised, so
`landmarks train` with ArcFace trains the attention and the projection (set `model.train_from: head.`
to keep the backbone fixed, as the paper's attention stage does). That vector also serves as a
(modest) global descriptor, so the network indexes and serves like any other.

`extract_local` gives the dense local features for the re-ranking stage: every position's keypoint
(in input pixels), descriptor and attention score. `landmarks.quality.delf_features` picks the best
ones over an image pyramid.

The layers after the stride-16 stage are dropped from the backbone: DELF never runs them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from landmarks.models.layers import L2Norm
from landmarks.models.network import ModelConfig, feature_level, seeded_new_layers, timm_backbone

FEATURE_STRIDE = 16  # the paper's conv4 level: fine enough to localise, deep enough to be distinctive
DEFAULT_DESCRIPTOR_DIM = 128  # DELG's local descriptor size (DELF's PCA kept 40)
ATTENTION_HIDDEN = 512  # the paper's attention network: 1×1 conv to 512, ReLU, 1×1 conv to 1, softplus


class DelfHead(nn.Module):
    def __init__(self, in_channels: int, descriptor_dim: int) -> None:
        super().__init__()
        self.projection = nn.Conv2d(in_channels, descriptor_dim, 1)
        self.attention = nn.Sequential(
            nn.Conv2d(in_channels, ATTENTION_HIDDEN, 1), nn.ReLU(), nn.Conv2d(ATTENTION_HIDDEN, 1, 1), nn.Softplus()
        )
        # Untrained, the projection should keep the backbone's geometry: an orthogonal map (an isometry
        # when widening) makes the descriptors' similarities those of the ImageNet features.
        nn.init.orthogonal_(self.projection.weight)
        nn.init.zeros_(self.projection.bias)


class DelfNet(nn.Module):
    """Image batch (B, 3, H, W), normalised → unit-length attention-pooled descriptors (B, D)."""

    def __init__(self, config: ModelConfig, backbone: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone or timm_backbone(config)
        level = feature_level(self.backbone, FEATURE_STRIDE)
        in_channels = self.backbone.feature_info[level]["num_chs"]
        self.backbone.prune_intermediate_layers([level], prune_head=True)
        self.level = level
        self.output_dim = config.embedding_dim or DEFAULT_DESCRIPTOR_DIM
        with seeded_new_layers():
            self.head = DelfHead(in_channels, self.output_dim)
        self.norm = L2Norm()

    def dense(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit descriptors (B, D, H/16, W/16) and attention scores (B, 1, H/16, W/16)."""
        (features,) = self.backbone.forward_intermediates(
            images, indices=[self.level], intermediates_only=True, stop_early=True
        )
        return F.normalize(self.head.projection(features), dim=1), self.head.attention(features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        descriptors, attention = self.dense(images)
        return self.norm((descriptors * attention).sum(dim=(2, 3)))

    @torch.no_grad()
    def extract_local(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every position's keypoint xy in input pixels (B, N, 2), unit descriptor (B, N, D) and
        attention score (B, N), with N = (H/16)·(W/16), row by row."""
        descriptors, attention = self.dense(images)
        batch, _, rows, cols = descriptors.shape
        # A position's effective receptive field centres near stride × index (measured on
        # EfficientNet-Lite0: 2 to 6 px before it, well inside the RANSAC tolerance).
        ys, xs = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
        xy = torch.stack([xs, ys], dim=-1).reshape(1, rows * cols, 2).to(descriptors) * FEATURE_STRIDE
        return (
            xy.expand(batch, -1, -1),
            descriptors.flatten(2).transpose(1, 2),
            attention.flatten(1),
        )
