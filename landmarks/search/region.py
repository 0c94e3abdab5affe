"""Where the answered landmark is in the query photo: a box, from the query regions that match it.

Without spatial verification the box comes from a multi-crop search, coarse to fine:

1. a grid of crops (each `GRID_SIZES` of the photo's width and height, stepped by half a crop) is
   embedded in one batch and each crop scored against the answered landmark's gallery vectors (the
   landmark's score rule: the mean of its best photos). The best crop, or the whole photo when no
   crop beats it, is the first box: a crop with less of anything else in it matches better;
2. each edge of that box is then moved in and out by `EDGE_STEPS` of the box's side, the 4 x 2
   moved boxes embedded in a second batch, and every edge goes where its box scored best (edges are
   refined independently: the grid's step of half a crop leaves each true edge about a quarter of a
   crop from the best crop's, which the move covers).

bench/region.py's composites (a dev query pasted at 35-60% of a distractor's width), in process, 15
named right of 60: IoU >= 0.5 for 8 of 15 boxes with the grid alone (13 crops), 15 of 15 with edges
moved by a quarter (21 crops), 14 of 15 with moves of an eighth and a quarter (29 crops).

With spatial verification, the box is the bounding box of the query's RANSAC inliers against the
landmark's best verified gallery photo (`landmarks.quality.spatial`): geometry, not appearance.

Boxes are (x0, y0, x1, y1) in [0, 1] of the photo as it was decoded: upright (EXIF orientation
applied by `landmarks.images.decode_image`), x to the right, y down.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

Box = tuple[float, float, float, float]
WHOLE: Box = (0.0, 0.0, 1.0, 1.0)

# Crop sides, as fractions of the photo's: a landmark filling three quarters of the frame down to a
# quarter of its area; stepped by half a crop, 2 x 2 + 3 x 3 = 13 crops in the first batch.
GRID_SIZES = (0.75, 0.5)
# How far each edge of the best crop moves, as fractions of its side: half the grid's step, either way.
EDGE_STEPS = (-0.25, 0.25)
# A crop narrower than this (of the photo's side) says too little to the model to be scored.
MIN_SIDE = 0.15


@dataclass(frozen=True)
class Region:
    box: Box
    source: str  # "crops" (the multi-crop search) or "inliers" (spatial verification's inliers)
    score: float | None = None  # the best crop's score against the landmark (crops only)


def photo_for_crops(photo: Image.Image, model_side: int) -> Image.Image:
    """A copy of PHOTO with its longest side at most twice MODEL_SIDE (the model's input): a crop of half
    the photo still has the model's resolution, and the aspect ratio, so normalised boxes, stay the same."""
    copy = photo.copy()
    copy.thumbnail((2 * model_side, 2 * model_side), Image.Resampling.BICUBIC)
    return copy


def grid_boxes(sizes: Sequence[float] = GRID_SIZES) -> list[Box]:
    """Crops of each size, stepped by half their side, covering the photo."""
    boxes = []
    for size in sizes:
        steps = max(1, round((1.0 - size) / (size / 2))) if size < 1 else 0
        starts = [i * (1.0 - size) / steps for i in range(steps + 1)] if steps else [0.0]
        boxes += [(x, y, x + size, y + size) for y in starts for x in starts]
    return boxes


def moved_edges(box: Box, steps: Sequence[float] = EDGE_STEPS) -> list[tuple[int, Box]]:
    """(edge index, box) for each edge of BOX moved by each step of its side, clipped to the photo; a
    move that would leave the box narrower than MIN_SIDE is left out."""
    out = []
    for edge in range(4):
        side = box[2] - box[0] if edge in (0, 2) else box[3] - box[1]
        for step in steps:
            moved = list(box)
            moved[edge] = float(np.clip(box[edge] + step * side, 0.0, 1.0))
            if moved[2] - moved[0] >= MIN_SIDE and moved[3] - moved[1] >= MIN_SIDE:
                out.append((edge, tuple(moved)))
    return out


def crop(image: Image.Image, box: Box) -> Image.Image:
    """The part of IMAGE inside the normalised BOX (at least one pixel a side)."""
    width, height = image.size
    x0, y0 = int(round(box[0] * width)), int(round(box[1] * height))
    x1, y1 = max(x0 + 1, int(round(box[2] * width))), max(y0 + 1, int(round(box[3] * height)))
    return image.crop((x0, y0, x1, y1))


def normalised(box_px: Sequence[float], size: tuple[int, int]) -> Box:
    """A box in pixels of a photo of SIZE (width, height) → (x0, y0, x1, y1) in [0, 1], ordered, clipped."""
    width, height = size
    x0, x1 = sorted((box_px[0] / width, box_px[2] / width))
    y0, y1 = sorted((box_px[1] / height, box_px[3] / height))
    return tuple(float(np.clip(v, 0.0, 1.0)) for v in (x0, y0, x1, y1))  # type: ignore[return-value]


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def locate_by_crops(
    image: Image.Image,
    whole_score: float,
    embed: Callable[[list[Image.Image]], np.ndarray],
    score: Callable[[np.ndarray], np.ndarray],
    *,
    sizes: Sequence[float] = GRID_SIZES,
    steps: Sequence[float] = EDGE_STEPS,
) -> Region:
    """The box of the landmark in IMAGE by the multi-crop search (module docstring).

    whole_score: the whole photo's score against the landmark (the search's own); embed: crops → (N, D)
    unit vectors; score: (N, D) vectors → (N,) scores against the landmark's gallery photos.
    """
    boxes = grid_boxes(sizes)
    scores = score(embed([crop(image, box) for box in boxes]))
    best = int(np.argmax(scores))
    if scores[best] <= whole_score:
        return Region(WHOLE, "crops", float(whole_score))
    box, best_score = boxes[best], float(scores[best])
    candidates = moved_edges(box, steps)
    if not candidates:
        return Region(box, "crops", best_score)
    moved_scores = score(embed([crop(image, moved) for _, moved in candidates]))
    refined = list(box)
    for edge in range(4):
        options = [(s, moved[edge]) for (e, moved), s in zip(candidates, moved_scores, strict=True) if e == edge]
        top_score, top_edge = max(options, default=(-np.inf, box[edge]))
        if top_score > best_score:
            refined[edge] = top_edge
    if refined[2] - refined[0] < MIN_SIDE or refined[3] - refined[1] < MIN_SIDE:
        refined = list(box)  # edges moved towards each other past a usable box: keep the crop
    return Region(tuple(refined), "crops", max(best_score, float(np.max(moved_scores, initial=-np.inf))))


def locate_by_inliers(points: np.ndarray, size: tuple[int, int]) -> Region | None:
    """The bounding box of the query's inlier keypoints POINTS ((N, 2) x, y pixels of a photo of SIZE)."""
    if len(points) == 0:
        return None
    low, high = points.min(axis=0), points.max(axis=0)
    return Region(normalised((low[0], low[1], high[0], high[1]), size), "inliers")
