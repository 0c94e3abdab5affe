"""ROADMAP (Ramzi et al., "Robust and Decomposable Average Precision for Image Retrieval", NeurIPS 2021).

    L = (1 − λ)·(1 − mean SupAP) + λ·L_calibration

SupAP is the batch AP with ranks counted through the SupRank step (an upper bound of the AP loss);
the calibration term asks positives above 0.9 and negatives below 0.6. Every item of the batch is a
query against all the others.
"""

from __future__ import annotations

import torch
from torch import nn

from landmarks.training.losses.calibration import CalibrationLoss
from landmarks.training.losses.pairs import label_masks, similarity_matrix
from landmarks.training.losses.smooth_ap import SmoothRankAP
from landmarks.training.losses.surrogates import SupRankStep


class RoadmapLoss(nn.Module):
    def __init__(
        self,
        tau: float = 0.01,
        rho: float = 100.0,
        delta: float = 0.05,
        pos_margin: float = 0.9,
        neg_margin: float = 0.6,
        lam: float = 0.5,
    ) -> None:
        super().__init__()
        self.smooth_ap = SmoothRankAP(SupRankStep(tau=tau, rho=rho, delta=delta))
        self.calibration = CalibrationLoss(pos_margin=pos_margin, neg_margin=neg_margin)
        self.lam = lam

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        scores = similarity_matrix(embeddings)
        positives, negatives = label_masks(labels)
        ap = self.smooth_ap(scores, positives, negatives)
        if len(ap) == 0:
            raise ValueError("a ROADMAP batch needs at least two photos of one landmark (use the M-per-class sampler)")
        return (1 - self.lam) * (1 - ap.mean()) + self.lam * self.calibration(scores, positives, negatives)

    def extra_repr(self) -> str:
        return f"lam={self.lam}"
