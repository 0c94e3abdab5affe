"""A loaded embedding model ready to embed photos: device, precision, batching and fingerprint.

`load_extractor` accepts a registered or timm model name, a TorchScript file (such as the original
app's `extractor.torchscript`, or one exported by `landmarks export`), or a training checkpoint /
state-dict file. Everything downstream (indexing, serving, evaluation) sees one `Extractor`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from landmarks.images import Preprocessor, embed_in_batches
from landmarks.models.architectures import build_network
from landmarks.models.network import ModelConfig
from landmarks.models.registry import DEFAULT_MODEL, create_model
from landmarks.models.runtime import OnnxEmbedder, resolve_runtime

log = logging.getLogger(__name__)

TORCHSCRIPT_CONFIG_FILE = "landmarks_config.json"


def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def model_fingerprint(module: nn.Module, config: ModelConfig) -> str:
    """A digest of the weights and of the preprocessing: equal fingerprints embed identically.

    Key names are left out so an exported TorchScript copy of a model keeps its fingerprint.
    """
    digest = hashlib.sha256()
    relevant = {k: config.to_dict()[k] for k in ("image_size", "mean", "std", "interpolation")}
    digest.update(json.dumps(relevant, sort_keys=True).encode())
    for tensor in module.state_dict().values():
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


class Extractor:
    """Embeds RGB photos into unit-length float32 vectors, in batches, on the best device."""

    def __init__(
        self,
        module: nn.Module,
        config: ModelConfig,
        *,
        source: str,
        device: torch.device | str | None = None,
        half: bool | None = None,
        runtime: str = "eager",
        cache_dir: Path | None = None,
        threads: int | None = None,
    ) -> None:
        self.config = config
        self.source = source
        self.fingerprint = model_fingerprint(module, config)
        self.device = torch.device(device) if device is not None else default_device()
        # Half precision only where it is fast and safe: CUDA.
        self.half = (self.device.type == "cuda") if half is None else half
        module = module.eval().to(self.device)
        if self.half:
            module = module.half()
        # See landmarks/models/runtime.py; `module` stays the PyTorch network whatever the runtime.
        self.runtime = resolve_runtime(runtime, self.device, module)
        if self.runtime == "bf16":
            module = module.to(memory_format=torch.channels_last)  # oneDNN's bf16 kernels want NHWC
        self.module = module
        self._onnx: OnnxEmbedder | None = None
        if self.runtime == "onnx":
            try:
                self._onnx = OnnxEmbedder.for_model(
                    module,
                    config.image_size,
                    f"{config.backbone}-{self.fingerprint}",
                    cache_dir=cache_dir,
                    threads=threads,
                )
            except Exception:
                if runtime != "auto":
                    raise
                log.warning("ONNX export failed; embedding with eager PyTorch", exc_info=True)
                self.runtime = "eager"
        self.preprocess = Preprocessor(config.image_size, config.mean, config.std, config.interpolation)
        self.dim = self._probe_dim()

    def _probe_dim(self) -> int:
        blank = np.zeros((3, self.config.image_size, self.config.image_size), dtype=np.float32)
        return int(self.embed_arrays([blank]).shape[1])

    @torch.inference_mode()
    def embed_arrays(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        """Preprocessed CHW arrays → (N, D) float32 unit vectors."""
        stacked = np.stack(arrays)
        # The ONNX graph is exported at the model's own input size; other sizes (multi-scale search)
        # run through the eager module, which gives the same vectors (tests/perf/test_runtimes.py).
        if self._onnx is not None and stacked.shape[-1] == stacked.shape[-2] == self.config.image_size:
            vectors = torch.from_numpy(self._onnx(stacked))
        else:
            batch = torch.from_numpy(stacked).to(self.device)
            if self.half:
                batch = batch.half()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.runtime == "bf16"):
                vectors = self.module(batch).float()
        # Re-normalise: TorchScript extractors from elsewhere may not end with an L2 norm.
        vectors = torch.nn.functional.normalize(vectors, dim=-1)
        return vectors.cpu().numpy().astype(np.float32)

    def embed_images(self, images: Iterable[Image.Image], batch_size: int = 16) -> np.ndarray:
        return embed_in_batches(images, self.preprocess, self.embed_arrays, self.dim, batch_size)

    def describe(self) -> str:
        precision = "fp16" if self.half else "bf16" if self.runtime == "bf16" else "fp32"
        if self.runtime == "onnx":
            precision += " onnxruntime"
        return f"{self.source} ({self.config.backbone}@{self.config.image_size}, {self.dim}-d, {self.device.type} {precision})"


def is_torchscript(path: Path) -> bool:
    """TorchScript archives carry a code/ folder; torch.save archives do not."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name or name.startswith("code/") for name in archive.namelist())


def load_checkpoint_model(path: Path, base: str = DEFAULT_MODEL) -> nn.Module:
    """A training checkpoint ({"model_config", "state_dict"}) or a bare state dict of the default model."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(payload, dict) and "state_dict" in payload:
        config = ModelConfig.from_dict(payload.get("model_config", {"backbone": base}))
        state_dict = payload["state_dict"]
    elif isinstance(payload, dict):
        config, state_dict = create_model(base, pretrained=False).config, payload
    else:
        raise ValueError(f"{path} holds neither a checkpoint nor a state dict")
    model = build_network(config)
    model.load_state_dict(state_dict, strict=True)
    return model


def load_extractor(
    spec: str | Path = DEFAULT_MODEL,
    *,
    device: torch.device | str | None = None,
    half: bool | None = None,
    image_size: int | None = None,
    weights_file: str | Path | None = None,
    runtime: str = "eager",
    cache_dir: Path | None = None,
    threads: int | None = None,
    exported_dir: Path | None = None,
) -> Extractor:
    """Load a model from a name, a TorchScript file or a checkpoint file.

    runtime: "eager", "onnx", "bf16" or "auto" (ONNX Runtime on CPU); see landmarks/models/runtime.py.
    cache_dir: where ONNX exports are cached (default: runtime.DEFAULT_CACHE_DIR); threads: ONNX
    Runtime's (default: PyTorch's). exported_dir is the slim image's (landmarks/models/exported.py),
    unused where torch is.
    """
    path = Path(spec)
    if path.suffix and path.exists():
        if is_torchscript(path):
            files = {TORCHSCRIPT_CONFIG_FILE: ""}
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=files)
            config = (
                ModelConfig.from_dict(json.loads(files[TORCHSCRIPT_CONFIG_FILE]))
                if files[TORCHSCRIPT_CONFIG_FILE]
                else ModelConfig(backbone="torchscript", image_size=224)
            )
        else:
            module = load_checkpoint_model(path)
            config = module.config
        source = path.name
    elif path.suffix in {".pt", ".pth", ".ckpt", ".torchscript", ".ts"}:
        raise FileNotFoundError(f"model file {path} does not exist")
    else:
        module = create_model(
            str(spec), weights_file=weights_file, **({"image_size": image_size} if image_size else {})
        )
        config, source = module.config, str(spec)
    if image_size and config.image_size != image_size:
        config = replace(config, image_size=image_size)
    return Extractor(
        module, config, source=source, device=device, half=half, runtime=runtime, cache_dir=cache_dir, threads=threads
    )


def export_torchscript(model: nn.Module, path: Path) -> Path:
    """Trace the network to TorchScript, with its config inside, loadable by `load_extractor`."""
    model = model.eval().cpu()
    example = torch.zeros(1, 3, model.config.image_size, model.config.image_size)
    with torch.no_grad():
        traced = torch.jit.trace(model, example, check_trace=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(traced, str(path), _extra_files={TORCHSCRIPT_CONFIG_FILE: json.dumps(model.config.to_dict())})
    return path
