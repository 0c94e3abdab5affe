"""Embedding models: a registry, one factory, and loaders for TorchScript and checkpoints."""

import importlib.util

if importlib.util.find_spec("torch") is None:
    # The slim API image: no torch, one model exported to ONNX at build time (landmarks/models/exported.py).
    from landmarks.models.exported import DEFAULT_MODEL, load_extractor, resolve_model
    from landmarks.models.exported import ExportedExtractor as Extractor
else:
    from landmarks.models.extractor import Extractor, export_torchscript, load_extractor
    from landmarks.models.network import EmbeddingNet, ModelConfig
    from landmarks.models.registry import DEFAULT_MODEL, create_model, list_models, register_model, resolve_model

__all__ = [
    "DEFAULT_MODEL",
    "EmbeddingNet",
    "Extractor",
    "ModelConfig",
    "create_model",
    "export_torchscript",
    "list_models",
    "load_extractor",
    "register_model",
    "resolve_model",
]
