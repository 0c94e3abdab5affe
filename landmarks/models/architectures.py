"""Every network architecture, by the name a ModelConfig gives (`config.architecture`), and the one
function that builds a network from its config."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from landmarks.models.clip import ClipImageNet
from landmarks.models.delf import DelfNet
from landmarks.models.dolg import DolgNet
from landmarks.models.ensemble import EnsembleNet
from landmarks.models.network import EmbeddingNet, ModelConfig

# builder(config, backbone or None) -> network. A builder given no backbone makes an untrained one
# (the checkpoint loader then fills in the weights). A new architecture is a new row.
NetworkBuilder = Callable[[ModelConfig, "nn.Module | None"], nn.Module]
ARCHITECTURES: dict[str, NetworkBuilder] = {
    "gem": EmbeddingNet,
    "dolg": DolgNet,
    "delf": DelfNet,
    "clip": ClipImageNet,
    "ensemble": EnsembleNet,
}


def build_network(config: ModelConfig, backbone: nn.Module | None = None) -> nn.Module:
    """The network `config` describes, around `backbone` (untrained when None)."""
    try:
        builder = ARCHITECTURES[config.architecture]
    except KeyError:
        raise ValueError(
            f"unknown architecture {config.architecture!r}; known: {', '.join(sorted(ARCHITECTURES))}"
        ) from None
    return builder(config, backbone)
