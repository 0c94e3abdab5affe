"""Which pairs of a batch share a label: the masks every pair-based loss starts from."""

from __future__ import annotations

import torch


def label_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(positives, negatives), each (B, B) bool: same label and not itself, different label."""
    same = labels.view(-1, 1) == labels.view(1, -1)
    itself = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~itself, ~same


def similarity_matrix(embeddings: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every pair of a batch of unit-length embeddings (B, B)."""
    return embeddings @ embeddings.T
