"""Faster CPU inference for an embedding network: ONNX Runtime (fp32) and bfloat16 autocast.

Eager PyTorch runs EfficientNet's depthwise convolutions slowly on CPU; ONNX Runtime fuses each
convolution with its batch norm and activation and runs the very same fp32 weights several times faster
(bench/embedding.py measures every option, with its quality on the dev protocol). Exporting the graph
takes tens of seconds, so it happens once per model fingerprint and is cached on disk: later starts only
open the file. The fingerprint stays that of the weights, so an index built eagerly serves with ONNX.

Runtimes: "eager" (PyTorch as is), "onnx" (ONNX Runtime, CPU, fp32), "bf16" (PyTorch autocast to
bfloat16 with channels-last memory, for CPUs with AMX / AVX512-BF16; lossy, see the bench), and
"auto": "onnx" on CPU for networks with depthwise convolutions (the default EfficientNet-Lite0) when
onnxruntime is installed and the model can be exported, else "eager".
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from functools import cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from landmarks.models.ort_session import cpu_session

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "eager", "onnx", "bf16")


def onnx_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


@cache
def cpu_has_bf16() -> bool:
    """Native bfloat16 matrix units: elsewhere PyTorch emulates bf16 and it is slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def has_depthwise_convolutions(module: nn.Module) -> bool:
    """Grouped convolutions (EfficientNet, MobileNet) are where eager PyTorch is slow on CPU and ONNX
    Runtime's fused kernels win several-fold; transformers (DeiT, CLIP) are matrix products that
    eager PyTorch already runs well, and their export is slow and large, so "auto" keeps them eager."""
    return any(isinstance(layer, nn.Conv2d) and layer.groups > 1 for layer in module.modules())


def resolve_runtime(runtime: str, device: torch.device, module: nn.Module) -> str:
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if runtime == "auto":
        # TorchScript files cannot go through torch.export: they keep running eagerly.
        exportable = not isinstance(module, torch.jit.ScriptModule)
        return (
            "onnx"
            if device.type == "cpu" and exportable and has_depthwise_convolutions(module) and onnx_available()
            else "eager"
        )
    if runtime in ("onnx", "bf16") and device.type != "cpu":
        raise ValueError(f"runtime {runtime!r} is a CPU runtime; on {device.type} use 'eager' (fp16 on CUDA)")
    return runtime


# Where ONNX exports are cached when the caller names no folder (the service and the command line
# name one: LANDMARKS_CACHE_DIR, else XDG_CACHE_HOME/landmarks).
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "landmarks"


def export_onnx(module: nn.Module, image_size: int, path: Path) -> Path:
    """The network as an ONNX graph with a dynamic batch dimension, written atomically."""
    example = torch.zeros(2, 3, image_size, image_size)
    # The exporter prints its progress on stdout: keep it out of the service's output.
    with contextlib.redirect_stdout(io.StringIO()):
        program = torch.onnx.export(
            module,
            (example,),
            None,
            input_names=["images"],
            output_names=["embeddings"],
            dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),  # by position: any forward arg name
            dynamo=True,
            verbose=False,
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    program.save(str(tmp))
    tmp.replace(path)  # atomic: two processes exporting at once both end with a whole file
    return path


class OnnxEmbedder:
    """An ONNX Runtime CPU session that maps (B, 3, H, W) float32 arrays to (B, D) embeddings.

    InferenceSession.run is thread-safe, so concurrent searches may share one embedder.
    """

    def __init__(self, path: Path, threads: int | None = None) -> None:
        # As many threads as PyTorch would use (OMP_NUM_THREADS, or the cores), so both compare fairly.
        self.path = path
        self.session = cpu_session(path, threads or torch.get_num_threads())
        self.input_name = self.session.get_inputs()[0].name

    @classmethod
    def for_model(
        cls, module: nn.Module, image_size: int, key: str, *, cache_dir: Path | None = None, threads: int | None = None
    ) -> OnnxEmbedder:
        """Open the cached export named `key` (the model's fingerprint) under `cache_dir`/onnx, exporting
        it on first use."""
        path = (cache_dir or DEFAULT_CACHE_DIR) / "onnx" / f"{key}.onnx"
        if not path.is_file():
            log.info("exporting the model to ONNX (once per model) at %s", path)
            export_onnx(module, image_size, path)
        return cls(path, threads)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]
