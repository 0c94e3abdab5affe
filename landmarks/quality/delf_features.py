"""DELF local features of a photo (`LocalFeatureParams(kind="delf")`): the DELF network's dense features
over a small image pyramid, the positions with the highest attention kept.

The DELF model is a registered name (`delf_efficientnet_lite0`: ImageNet backbone, untrained
attention) or a training checkpoint of a DELF network (`landmarks train configs/delf.yaml`). It is
loaded once per process and shared by every thread: index build and search extract with the same one.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if (
    TYPE_CHECKING
):  # imported where used: landmarks/search/config.py reads DEFAULT_DELF_MODEL in the slim image, which has no torch
    import torch

DEFAULT_DELF_MODEL = "delf_efficientnet_lite0"
# The paper's pyramid spans 0.25–2 on full-size photos; ours start from the `max_side` photo (480 px
# by default), so fewer, closer scales cover the same sizes of detail at a CPU-friendly cost.
PYRAMID_SCALES = (0.7071, 1.0, 1.4142)

_models: dict[str, tuple[torch.nn.Module, str]] = {}
_models_lock = threading.Lock()


def delf_model(spec: str) -> tuple[torch.nn.Module, str]:
    """The DELF network `spec` names (eval mode, on the default device) and its fingerprint."""
    with _models_lock:
        if spec not in _models:
            from landmarks.models import create_model
            from landmarks.models.delf import DelfNet
            from landmarks.models.extractor import default_device, load_checkpoint_model, model_fingerprint

            path = Path(spec)
            model = load_checkpoint_model(path) if path.suffix and path.exists() else create_model(spec)
            if not isinstance(model, DelfNet):
                raise ValueError(
                    f"{spec} is not a DELF model (architecture {model.config.architecture!r}); "
                    f"use {DEFAULT_DELF_MODEL} or a checkpoint trained from configs/delf.yaml"
                )
            _models[spec] = (model.eval().to(default_device()), model_fingerprint(model, model.config))
        return _models[spec]


def _normalised(image: Image.Image, size: tuple[int, int], model: torch.nn.Module) -> torch.Tensor:
    import torch

    resized = np.asarray(image.resize(size, Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    mean, std = np.asarray(model.config.mean, np.float32), np.asarray(model.config.std, np.float32)
    return torch.from_numpy(((resized - mean) / std).transpose(2, 0, 1).copy())[None]


def extract_delf(
    image: Image.Image, *, model_spec: str, max_side: int, max_features: int
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """(xy (n, 2) float32, descriptors (n, D) float16 unit vectors, (width, height)) of an RGB photo.

    Positions refer to the photo shrunk to `max_side` (never enlarged), like SIFT's; at most
    `max_features` are kept, the highest attention first.
    """
    import torch

    with torch.inference_mode():
        return _extract_delf(image, model_spec=model_spec, max_side=max_side, max_features=max_features)


def _extract_delf(
    image: Image.Image, *, model_spec: str, max_side: int, max_features: int
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    import torch

    model, _ = delf_model(model_spec)
    device = next(model.parameters()).device
    image = image.convert("RGB")
    scale = min(1.0, max_side / max(image.size))
    width, height = max(1, round(image.width * scale)), max(1, round(image.height * scale))
    image = image.resize((width, height), Image.Resampling.BILINEAR) if scale < 1 else image
    points, descriptors, scores = [], [], []
    for level in PYRAMID_SCALES:
        size = (max(16, round(width * level)), max(16, round(height * level)))
        xy, desc, attention = model.extract_local(_normalised(image, size, model).to(device))
        points.append(xy[0].cpu() * torch.tensor([width / size[0], height / size[1]]))
        descriptors.append(desc[0].cpu())
        scores.append(attention[0].cpu())
    xy, desc, attention = torch.cat(points), torch.cat(descriptors), torch.cat(scores)
    keep = torch.argsort(attention, descending=True)[:max_features]
    return xy[keep].numpy().astype(np.float32), desc[keep].numpy().astype(np.float16), (width, height)
