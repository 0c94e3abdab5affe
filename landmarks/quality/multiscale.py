"""Multi-scale descriptors: embed a photo at several input sizes and average the unit descriptors.

GeM pooling works at any input size, so one network gives a descriptor per scale; their normalised sum
is less sensitive to how large the landmark appears in the frame. Scales are relative to the
model's input size (1.0 = the model's own size, what the index was built with).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from landmarks.images import Preprocessor
from landmarks.models import Extractor


def scale_sizes(extractor: Extractor, scales: Sequence[float]) -> list[int]:
    base = extractor.config.image_size
    # Multiples of 32 keep every stride of the network aligned.
    return [max(32, int(round(base * s / 32)) * 32) for s in scales]


class MultiScaleEmbedder:
    def __init__(self, extractor: Extractor, scales: Sequence[float]) -> None:
        self.extractor = extractor
        self.scales = tuple(scales)
        cfg = extractor.config
        self.preprocessors = [
            extractor.preprocess if size == cfg.image_size else Preprocessor(size, cfg.mean, cfg.std, cfg.interpolation)
            for size in scale_sizes(extractor, self.scales)
        ]

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.extractor.dim), np.float32)
        total = np.zeros((len(images), self.extractor.dim), np.float32)
        for preprocess in self.preprocessors:
            total += self.extractor.embed_arrays([preprocess(image) for image in images])
        return (total / np.maximum(np.linalg.norm(total, axis=1, keepdims=True), 1e-12)).astype(np.float32)
