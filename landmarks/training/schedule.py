"""Learning-rate schedule: linear warmup, then a cosine decay, as a pure function of the step.

A function of the global step (not a stateful scheduler object) means a resumed run needs nothing
but the step number to continue on the same curve.
"""

from __future__ import annotations

import math


def warmup_cosine(step: int, *, total_steps: int, warmup_steps: int = 0, min_ratio: float = 0.0) -> float:
    """The multiplier of the base learning rate at `step` (0-based): 1/W ... 1 over the warmup, then
    a half cosine from 1 down to `min_ratio` at the last step."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps - 1)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
