"""Step functions for ranking: the exact Heaviside step and smooth stand-ins for it.

The rank of a positive among the results is 1 + Σ H(s_j − s_k) over the other results j. The
Heaviside step H has no useful gradient, so smooth-rank losses replace it by a surrogate where it
matters. Each surrogate maps a tensor of score differences t = s_j − s_k to step values.
"""

from __future__ import annotations

import math

import torch


def heaviside(t: torch.Tensor) -> torch.Tensor:
    """The exact step: 1 where t ≥ 0 (a tie ranks j ahead of k), 0 elsewhere. No gradient."""
    return (t >= 0).to(t.dtype)


class SigmoidStep:
    """Smooth-AP's step (Brown et al., 2020): σ(t/τ). Tends to the Heaviside step as τ → 0."""

    def __init__(self, tau: float = 0.01) -> None:
        self.tau = tau

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(t / self.tau)

    def __repr__(self) -> str:
        return f"SigmoidStep(tau={self.tau})"


class SupRankStep:
    """ROADMAP's step for negatives (Ramzi et al., NeurIPS 2021, SupRank):

        H⁻(t) = σ(t/τ)                      t ≤ 0
                σ(t/τ) + 1/2                0 < t ≤ δ
                ρ·(t − δ) + σ(δ/τ) + 1/2    t > δ

    It is never below the Heaviside step, so the rank it gives is an upper bound of the true rank
    and 1 − AP computed with it an upper bound of the true AP loss. Unlike a sigmoid it does not
    flatten out for a negative far above a positive: the linear part keeps pushing it down.
    """

    def __init__(self, tau: float = 0.01, rho: float = 100.0, delta: float = 0.05) -> None:
        self.tau, self.rho, self.delta = tau, rho, delta
        self._value_at_delta = 1.0 / (1.0 + math.exp(-delta / tau)) + 0.5

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        sigmoid = torch.sigmoid(t / self.tau)
        near = sigmoid + 0.5
        beyond = self.rho * (t - self.delta) + self._value_at_delta
        return torch.where(t <= 0, sigmoid, torch.where(t <= self.delta, near, beyond))

    def __repr__(self) -> str:
        return f"SupRankStep(tau={self.tau}, rho={self.rho}, delta={self.delta})"
