"""A model exported to ONNX, served without PyTorch: the slim CPU API image.

The slim image ships ONNX Runtime and one exported model instead of torch (whose PyPI wheel carries
gigabytes of CUDA libraries). The export runs where torch is, at image build time:

    landmarks export-onnx efficientnet_lite_ensemble /opt/landmarks/models

It writes NAME/model.onnx, the very graph `runtime="onnx"` runs in the full image, and NAME/model.json
with the preprocessing and the weights' fingerprint, so an index built by the full image (the `index`
job) opens here unchanged and both images give the same answers. Models that need torch at run time
(TorchScript files, checkpoints, DeiT, CLIP) need the full image.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import Image

from landmarks.images import Preprocessor, embed_in_batches
from landmarks.models.ort_session import cpu_session

# Equal to landmarks.models.registry.DEFAULT_MODEL (which imports torch; tests/deploy keeps them equal).
DEFAULT_MODEL = "efficientnet_lite_ensemble"
# Where the slim image holds its exported models when the caller names no folder (the service
# names LANDMARKS_EXPORTED_MODELS when it is set).
DEFAULT_EXPORTED_DIR = Path("/app/models")
GRAPH_FILE, META_FILE = "model.onnx", "model.json"


def exported_models(root: Path) -> list[str]:
    return sorted(p.parent.name for p in root.glob(f"*/{META_FILE}")) if root.is_dir() else []


def resolve_model(requested: str | None, built_by: str | None, *, exported_dir: Path | None = None) -> str:
    """As landmarks.models.registry.resolve_model, over the models exported into `exported_dir`."""
    if requested:
        return requested
    if built_by in exported_models(exported_dir or DEFAULT_EXPORTED_DIR):
        return built_by
    return DEFAULT_MODEL


@dataclass(frozen=True)
class CpuDevice:
    """Stands in for torch.device("cpu") where callers ask `extractor.device.type`."""

    type: str = "cpu"


class ExportedExtractor:
    """The torch-free twin of landmarks.models.Extractor (runtime "onnx"): same fingerprint, same vectors."""

    def __init__(self, directory: Path, threads: int | None = None) -> None:
        meta = json.loads((directory / META_FILE).read_text())
        self.source = meta["source"]
        self.fingerprint = meta["fingerprint"]
        self.config = SimpleNamespace(**meta["config"])
        self.device = CpuDevice()
        self.half = False
        self.runtime = "onnx"
        # Threads: PyTorch's default in the full image, OMP_NUM_THREADS (the caller passes it), else one per core.
        self.session = cpu_session(directory / GRAPH_FILE, threads)
        self.input_name = self.session.get_inputs()[0].name
        self.preprocess = Preprocessor(
            self.config.image_size, self.config.mean, self.config.std, self.config.interpolation
        )
        self.dim = int(meta["dim"])

    def embed_arrays(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        vectors = self.session.run(None, {self.input_name: np.ascontiguousarray(np.stack(arrays), dtype=np.float32)})[0]
        # As torch.nn.functional.normalize in Extractor.embed_arrays.
        norms = np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)
        return (vectors / norms).astype(np.float32)

    def embed_images(self, images: Iterable[Image.Image], batch_size: int = 16) -> np.ndarray:
        return embed_in_batches(images, self.preprocess, self.embed_arrays, self.dim, batch_size)

    def describe(self) -> str:
        return f"{self.source} ({self.config.backbone}@{self.config.image_size}, {self.dim}-d, cpu fp32 onnxruntime, exported)"


def load_extractor(
    spec: str | Path = DEFAULT_MODEL,
    *,
    device: str | None = None,
    half: bool | None = None,
    image_size: int | None = None,
    weights_file: str | Path | None = None,
    runtime: str = "auto",
    cache_dir: Path | None = None,
    threads: int | None = None,
    exported_dir: Path | None = None,
) -> ExportedExtractor:
    """landmarks.models.load_extractor's signature, for the models exported into `exported_dir` only
    (cache_dir is the full image's: an exported model needs no export cache)."""
    name = str(spec)
    root = exported_dir or DEFAULT_EXPORTED_DIR
    directory = root / name
    if not (directory / META_FILE).is_file():
        raise FileNotFoundError(
            f"model {name!r} is not exported into this image (exported: {', '.join(exported_models(root)) or 'none'} "
            f"under {root}); models that need PyTorch run in the full API image (build target `full`)"
        )
    if device not in (None, "cpu", "auto") or half or weights_file is not None or runtime not in ("auto", "onnx"):
        raise ValueError(
            "an exported model runs on the CPU with ONNX Runtime only (device cpu, runtime onnx, its own "
            "weights); for other settings use the full API image (build target `full`)"
        )
    extractor = ExportedExtractor(directory, threads)
    if image_size and image_size != extractor.config.image_size:
        raise ValueError(f"{name} was exported at {extractor.config.image_size} px, not {image_size}")
    return extractor


def export(name: str, out: Path, *, cache_dir: Path | None = None) -> Path:
    """Export a registered model for the slim image (needs torch): OUT/NAME/model.onnx + model.json."""
    from landmarks.models.extractor import load_extractor as load_torch_extractor

    extractor = load_torch_extractor(name, device="cpu", runtime="onnx", cache_dir=cache_dir)
    directory = out / name
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(extractor._onnx.path, directory / GRAPH_FILE)
    meta = {
        "source": extractor.source,
        "fingerprint": extractor.fingerprint,
        "dim": extractor.dim,
        "config": extractor.config.to_dict(),
    }
    (directory / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    # The exported graph must give the eager network's vectors (a wrong export fails the build, not a search).
    check = ExportedExtractor(directory)
    probe = (
        np.random.default_rng(0)
        .standard_normal((2, 3, check.config.image_size, check.config.image_size))
        .astype(np.float32)
    )
    extractor.runtime, onnx = "eager", extractor._onnx
    extractor._onnx = None
    eager = extractor.embed_arrays(list(probe))
    extractor._onnx = onnx
    gap = float(np.abs(check.embed_arrays(list(probe)) - eager).max())
    if gap > 1e-3:
        raise RuntimeError(f"the ONNX export of {name} differs from PyTorch by {gap:.2e}")
    print(
        f"exported {name} ({extractor.fingerprint}, {extractor.dim}-d) to {directory}; max |onnx - eager| = {gap:.1e}"
    )
    return directory
