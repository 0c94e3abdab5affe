"""Average precision of every query of a batch, with ranks counted through a step surrogate."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from landmarks.training.losses.surrogates import heaviside

Step = Callable[[torch.Tensor], torch.Tensor]


class SmoothRankAP(nn.Module):
    """AP of each query (row) over the other items of its row, ranking them by score.

    For query i and one of its positives k:
        rank⁺(k) = 1 + Σ_{j positive, j≠k} H(s_ij − s_ik)          (exact step, as in ROADMAP)
        rank(k)  = rank⁺(k) + Σ_{j negative} step(s_ij − s_ik)     (the surrogate)
        AP_i     = mean over positives k of rank⁺(k) / rank(k)
    With `positive_step` left exact, only the negatives outranking a positive carry gradient: moving
    a positive above other positives changes nothing in the true AP, so it should cost nothing here.
    """

    def __init__(self, negative_step: Step, positive_step: Step = heaviside) -> None:
        super().__init__()
        self.negative_step = negative_step
        self.positive_step = positive_step

    def forward(self, scores: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        """scores, positives, negatives: (Q, N); returns the AP of each query that has a positive (≤ Q,)."""
        has_positive = positives.any(dim=1)
        scores, positives, negatives = scores[has_positive], positives[has_positive], negatives[has_positive]
        # difference[q, k, j] = s_qj − s_qk: how far item j sits above positive k in query q's ranking.
        difference = scores.unsqueeze(1) - scores.unsqueeze(2)
        others_positive = positives.unsqueeze(1) & ~torch.eye(scores.shape[1], dtype=torch.bool, device=scores.device)
        rank_positive = 1 + (self.positive_step(difference) * others_positive).sum(dim=2)
        rank_negative = (self.negative_step(difference) * negatives.unsqueeze(1)).sum(dim=2)
        precision = rank_positive / (rank_positive + rank_negative)
        return (precision * positives).sum(dim=1) / positives.sum(dim=1)
