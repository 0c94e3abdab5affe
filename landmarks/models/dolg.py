"""DOLG: a global descriptor that also carries local detail (Yang et al., ICCV 2021, "DOLG: Single-Stage
Image Retrieval with Deep Orthogonal Fusion of Local and Global Features").

Two branches share one backbone. The local branch reads the stride-16 feature map through
multi-atrous convolutions and a spatial attention; the global branch GeM-pools the last feature map.
Orthogonal fusion keeps, of each local feature, only the part orthogonal to the global descriptor
(what the global one does not already say), concatenates it with the global descriptor, and an
average pool and a linear layer make the final descriptor. One forward pass, one vector per photo:
it indexes, serves and trains (ArcFace) like any other embedding network.

Every layer beyond the backbone lives under `head`, so the trainer gives it the new layers' rate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from landmarks.models.layers import GeM, L2Norm
from landmarks.models.network import ModelConfig, feature_level, seeded_new_layers, timm_backbone

# The paper fuses at 1024 channels on ResNet's 1024/2048-channel maps; EfficientNet-Lite0's are 112 and
# 1280 wide, so half of that.
FUSION_WIDTH = 512
DEFAULT_EMBEDDING_DIM = 512  # the paper's descriptor size
# The paper's rates are 6, 12 and 18 on the 32×32 stride-16 maps of 512-px inputs; our 320-px inputs
# give 20×20 maps, on which rate 18 would see mostly padding: half the rates, the same coverage share.
ATROUS_RATES = (3, 6, 9)


class MultiAtrous(nn.Module):
    """Context at several ranges: a 1×1 convolution, three dilated 3×3 convolutions and an image-level
    branch, concatenated and mixed by a 1×1 convolution (the paper's multi-atrous module)."""

    def __init__(self, in_channels: int, out_channels: int, rates: tuple[int, ...] = ATROUS_RATES) -> None:
        super().__init__()
        branch = out_channels // 2
        self.branches = nn.ModuleList(
            [nn.Conv2d(in_channels, branch, 1)]
            + [nn.Conv2d(in_channels, branch, 3, padding=rate, dilation=rate) for rate in rates]
        )
        self.image_level = nn.Sequential(nn.Conv2d(in_channels, branch, 1), nn.ReLU())
        self.mix = nn.Sequential(nn.Conv2d(branch * (len(rates) + 2), out_channels, 1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [branch(x) for branch in self.branches]
        # expand_as, not interpolate: traces and exports with any input size.
        image_level = self.image_level(x.mean(dim=(2, 3), keepdim=True)).expand_as(outputs[0])
        return self.mix(torch.cat([*outputs, image_level], dim=1))


class SpatialAttention(nn.Module):
    """Local features, L2-normalised per position and weighted by a learnt softplus attention."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)
        self.bn = nn.BatchNorm2d(channels)
        self.score = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, 1, 1), nn.Softplus())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.normalize(x, dim=1) * self.score(x)


class OrthogonalFusion(nn.Module):
    """(local map (B, C, H, W), global vector (B, C)) → (B, 2C, H, W): at every position, the local
    feature minus its projection on the global vector, then the global vector itself."""

    def forward(self, local_map: torch.Tensor, global_vector: torch.Tensor) -> torch.Tensor:
        g = global_vector[:, :, None, None]
        along_global = (local_map * g).sum(dim=1, keepdim=True) / (g * g).sum(dim=1, keepdim=True).clamp(min=1e-12)
        orthogonal = local_map - along_global * g
        return torch.cat([orthogonal, g.expand_as(local_map)], dim=1)


class DolgHead(nn.Module):
    def __init__(self, local_channels: int, global_channels: int, embedding_dim: int, gem_p: float) -> None:
        super().__init__()
        self.local_branch = nn.Sequential(MultiAtrous(local_channels, FUSION_WIDTH), SpatialAttention(FUSION_WIDTH))
        self.global_pool = GeM(gem_p)
        self.global_projection = nn.Linear(global_channels, FUSION_WIDTH)
        self.fusion = OrthogonalFusion()
        self.projection = nn.Linear(2 * FUSION_WIDTH, embedding_dim)


class DolgNet(nn.Module):
    """Image batch (B, 3, H, W), normalised → unit-length DOLG descriptors (B, embedding_dim)."""

    def __init__(self, config: ModelConfig, backbone: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone or timm_backbone(config)
        self.local_level = feature_level(self.backbone, 16)
        self.output_dim = config.embedding_dim or DEFAULT_EMBEDDING_DIM
        with seeded_new_layers():
            self.head = DolgHead(
                self.backbone.feature_info[self.local_level]["num_chs"],
                self.backbone.num_features,
                self.output_dim,
                config.gem_p,
            )
        self.norm = L2Norm()

    def branches(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The local branch's map (B, C, H/16, W/16) and the global branch's vector (B, C)."""
        final, (stride16,) = self.backbone.forward_intermediates(images, indices=[self.local_level])
        return self.head.local_branch(stride16), self.head.global_projection(self.head.global_pool(final))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        fused = self.head.fusion(*self.branches(images))
        return self.norm(self.head.projection(fused.mean(dim=(2, 3))))
