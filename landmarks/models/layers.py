"""Small building blocks of an embedding network: pooling and normalisation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GeM(nn.Module):
    """Generalised-mean pooling (Radenović et al.): p=1 is average, p→∞ is max pooling.

    Retrieval works best somewhere in between (p≈3), and p is learnable so fine-tuning can move it.
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-6, learnable: bool = True) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)), requires_grad=learnable)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C, H, W) -> (B, C)
        pooled = F.avg_pool2d(x.clamp(min=self.eps).pow(self.p), kernel_size=x.shape[-2:])
        return pooled.pow(1.0 / self.p).flatten(1)

    def extra_repr(self) -> str:
        return f"p={self.p.item():.2f}, eps={self.eps}"


class TokenPool(nn.Module):
    """Pooling for transformer token maps (B, N, C): the class token, as DeiT/ROADMAP use it."""

    def __init__(self, num_prefix_tokens: int = 1) -> None:
        super().__init__()
        self.num_prefix_tokens = num_prefix_tokens

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.num_prefix_tokens > 0:
            return x[:, 0]
        return x.mean(dim=1)


class L2Norm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, p=2.0, dim=-1)
