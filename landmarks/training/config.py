"""Training configuration: a YAML file with run_dir, seed and four sections (model, data, loss, optim).

Relative paths (run_dir, data.root, model.weights_file) are taken from the current directory, the
way the command line takes every other path. Unknown keys are errors: a typo must not silently fall
back to a default. See configs/*.yaml for complete examples.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from landmarks.training.losses import LOSSES


class ConfigError(ValueError):
    """A configuration file that cannot be used, with a message that says where and why."""


@dataclass(frozen=True)
class ModelSection:
    backbone: str = "efficientnet_lite0"  # a registered model or any timm backbone
    pretrained: bool = True  # ImageNet weights (offline for efficientnet_lite0, the hub for others)
    weights_file: str | None = None  # local backbone weights in timm format, for hub models offline
    image_size: int | None = None  # the input side the model embeds at (index, search, eval); None: the model's default
    embedding_dim: int | None = None  # a linear projection to this width; None: the backbone's width
    gem_p: float | None = None
    # Freeze every parameter registered before the first one whose name starts with this prefix
    # (e.g. "backbone.blocks.5"): early layers hold generic features and cost most of the compute.
    train_from: str | None = None


@dataclass(frozen=True)
class DataSection:
    root: str = ""  # a gallery folder (a folder per landmark, or GLDv2 train.csv layout)
    landmarks: list[str] | None = None  # train on these landmark ids only
    # Training input side; None: model.image_size. Training below the embedding size is cheaper
    # and costs little: CNNs trained on smaller crops do well, often better, at a larger test size.
    image_size: int | None = None
    min_photos: int = 2
    classes_per_batch: int = 8
    samples_per_class: int = 4
    batches_per_epoch: int | None = None  # None: about one pass over the photos
    workers: int = 2
    augment: bool = True


@dataclass(frozen=True)
class LossSection:
    name: str = "roadmap"
    params: dict = field(default_factory=dict)  # every other key of the section, for the loss


@dataclass(frozen=True)
class OptimSection:
    epochs: int = 10
    lr: float = 1e-4
    head_lr: float | None = None  # the new projection head (model.embedding_dim); None: 10 × lr
    loss_lr: float | None = None  # the loss's own parameters (ArcFace class centres); None: 10 × lr
    weight_decay: float = 1e-4
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0  # the cosine schedule ends at lr × min_lr_ratio
    grad_clip_norm: float | None = 10.0
    amp: bool = True  # mixed precision, on a GPU only
    freeze_batchnorm: bool = True  # small M-per-class batches make poor batch statistics


@dataclass(frozen=True)
class TrainConfig:
    run_dir: str
    seed: int = 0
    checkpoint_every_steps: int = 0  # besides every epoch; 0: at the end of each epoch only
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    loss: LossSection = field(default_factory=LossSection)
    optim: OptimSection = field(default_factory=OptimSection)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict, where: str = "config") -> TrainConfig:
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected a mapping at the top level")
        raw = dict(raw)
        sections = {
            "model": _section(ModelSection, raw.pop("model", {}), f"{where}: model"),
            "data": _section(DataSection, raw.pop("data", {}), f"{where}: data"),
            "loss": _loss_section(raw.pop("loss", {}), f"{where}: loss"),
            "optim": _section(OptimSection, raw.pop("optim", {}), f"{where}: optim"),
        }
        if "run_dir" not in raw:
            raise ConfigError(f"{where}: run_dir is required (where checkpoints and the log go)")
        config = _section(cls, raw, where, nested=sections)
        if not config.data.root:
            raise ConfigError(f"{where}: data.root is required (the training gallery folder)")
        return config

    @property
    def run_path(self) -> Path:
        return Path(self.run_dir)


def load_config(path: Path) -> TrainConfig:
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"no config file at {path}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    return TrainConfig.from_dict(raw or {}, where=str(path))


def _loss_section(raw, where: str) -> LossSection:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping")
    params = dict(raw)
    name = params.pop("name", "roadmap")
    if name not in LOSSES:
        raise ConfigError(f"{where}: unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return LossSection(name=name, params=params)


def _section(cls, raw, where: str, nested: dict | None = None):
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping")
    nested = nested or {}
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)} - set(nested)
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    values = {key: _coerce(value, hints[key], f"{where}.{key}") for key, value in raw.items()}
    return cls(**values, **nested)


def _coerce(value, hint, where: str):
    """YAML reads `1e-4` as a string and `3` as an int: bring scalars to the declared type."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise ConfigError(f"{where}: a value is required")
    target = next((option for option in options if option is not type(None)), hint)
    origin = typing.get_origin(target) or target
    try:
        if origin is bool:
            if isinstance(value, bool):
                return value
            raise ValueError
        if origin in (int, float, str):
            if origin is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            return origin(value)
        if origin is list:
            if not isinstance(value, list):
                raise ValueError
            return [str(item) for item in value]
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {value!r} is not a valid {getattr(origin, '__name__', origin)}") from exc
    return value
