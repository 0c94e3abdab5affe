"""Training photos: which photos and labels, how they are augmented, and how batches are loaded.

Training data is any gallery `landmarks.gallery.scan_gallery` reads (a folder per landmark, or the
GLDv2 layout that `landmarks data gldv2` writes), optionally restricted to some landmarks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance
from torch.utils.data import Dataset

from landmarks.gallery import scan_gallery
from landmarks.images import Preprocessor, decode_image
from landmarks.models import ModelConfig
from landmarks.training.samplers import MPerClassBatchSampler

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingSet:
    photos: list[Path]
    labels: list[int]  # index into `classes`
    classes: list[str]  # landmark ids, sorted

    @classmethod
    def from_gallery(cls, root: Path, *, landmarks: Sequence[str] | None = None, min_photos: int = 2) -> TrainingSet:
        """The gallery's photos, only those of `landmarks` when given, without classes too small to rank.

        A landmark with a single photo has no positive to rank and cannot help a ranking loss.
        """
        gallery = scan_gallery(root)
        wanted = set(landmarks) if landmarks is not None else None
        if wanted is not None:
            unknown = wanted - set(gallery.landmarks)
            if unknown:
                raise ValueError(f"landmarks not in {root}: {', '.join(sorted(unknown))}")
        by_landmark: dict[str, list[Path]] = {}
        for image in gallery.images:
            if wanted is None or image.landmark_id in wanted:
                by_landmark.setdefault(image.landmark_id, []).append(image.path)
        small = sorted(lid for lid, paths in by_landmark.items() if len(paths) < min_photos)
        if small:
            log.info("left out %d landmarks with fewer than %d photos", len(small), min_photos)
        classes = sorted(lid for lid in by_landmark if lid not in small)
        photos, labels = [], []
        for label, landmark_id in enumerate(classes):
            photos.extend(by_landmark[landmark_id])
            labels.extend([label] * len(by_landmark[landmark_id]))
        return cls(photos, labels, classes)


class TrainTransform:
    """Decoded photo → normalised CHW array, with random crop, flip and colour changes when augmenting.

    The last step is the inference `Preprocessor` (whole photo squashed to a square), so training
    sees photos framed the way the index and the search will see them.
    """

    def __init__(self, config: ModelConfig, *, augment: bool = True, min_crop_area: float = 0.5) -> None:
        self.preprocess = Preprocessor(config.image_size, config.mean, config.std, config.interpolation)
        self.augment = augment
        self.min_crop_area = min_crop_area

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> np.ndarray:
        if self.augment:
            image = self._random_crop(image, rng)
            if rng.random() < 0.5:
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.75, 1.25))
            image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.75, 1.25))
            image = ImageEnhance.Color(image).enhance(rng.uniform(0.75, 1.25))
        return self.preprocess(image)

    def _random_crop(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        width, height = image.size
        area = rng.uniform(self.min_crop_area, 1.0) * width * height
        aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        crop_w = int(round(min(width, np.sqrt(area * aspect))))
        crop_h = int(round(min(height, np.sqrt(area / aspect))))
        left = int(rng.integers(0, width - crop_w + 1))
        top = int(rng.integers(0, height - crop_h + 1))
        return image.crop((left, top, left + crop_w, top + crop_h))


class PhotoDataset(Dataset):
    """Items are (position, seed) pairs: the seed drives that sample's augmentation.

    Seeding each sample from (run seed, epoch, step, slot) rather than a global generator makes a
    batch the same however many loader workers there are and whether the run was resumed.
    """

    def __init__(self, training_set: TrainingSet, transform: TrainTransform) -> None:
        self.training_set = training_set
        self.transform = transform

    def __len__(self) -> int:
        return len(self.training_set.photos)

    def __getitem__(self, item: tuple[int, tuple[int, ...]]) -> tuple[torch.Tensor, int]:
        position, seed = item
        image = decode_image(self.training_set.photos[position])
        array = self.transform(image, np.random.default_rng(seed))
        return torch.from_numpy(array), self.training_set.labels[position]


class SeededBatches:
    """One epoch of a batch sampler's batches from `start_step` on, each index paired with its seed."""

    def __init__(self, sampler: MPerClassBatchSampler, *, seed: int, epoch: int, start_step: int = 0) -> None:
        self.batches = sampler.batches(epoch)[start_step:]
        self.seed, self.epoch, self.start_step = seed, epoch, start_step

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[tuple[int, tuple[int, ...]]]]:
        for offset, batch in enumerate(self.batches):
            step = self.start_step + offset
            yield [(index, (self.seed, self.epoch, step, slot)) for slot, index in enumerate(batch)]
