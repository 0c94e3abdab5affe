"""ROADMAP's calibration term: a contrastive loss on absolute similarities.

AP only sees the order of the scores inside one batch. Asking every positive pair to reach
`pos_margin` and every negative pair to stay under `neg_margin` makes scores comparable across
batches and queries, which both narrows the gap between batch AP and whole-dataset AP and gives one
similarity threshold a meaning for "not a landmark I know".
"""

from __future__ import annotations

import torch
from torch import nn


def _mean_of_violations(losses: torch.Tensor) -> torch.Tensor:
    """Mean over the pairs that violate their margin: satisfied pairs do not dilute the signal."""
    violating = losses > 0
    return losses[violating].mean() if violating.any() else losses.sum() * 0.0


class CalibrationLoss(nn.Module):
    def __init__(self, pos_margin: float = 0.9, neg_margin: float = 0.6) -> None:
        super().__init__()
        self.pos_margin, self.neg_margin = pos_margin, neg_margin

    def forward(self, scores: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        positive_losses = torch.relu(self.pos_margin - scores[positives])
        negative_losses = torch.relu(scores[negatives] - self.neg_margin)
        return _mean_of_violations(positive_losses) + _mean_of_violations(negative_losses)

    def extra_repr(self) -> str:
        return f"pos_margin={self.pos_margin}, neg_margin={self.neg_margin}"
