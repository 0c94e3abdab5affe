"""Several landmarks in one photo: regions of the photo searched as photos of their own.

1. Region proposals (`proposal_boxes`): full-height strips and full-width bands (two photos side by
   side or one above the other, a panorama of two buildings) and the region module's grid of squares
   (a landmark in a corner), about two dozen, embedded in one batch with the whole photo's answer
   already known.
2. Each region is searched as a photo is, so it is refused as a whole photo is (the landmark prior's
   gate: a region of sky, a crowd), and it names a landmark only when its confidence, a calibrated
   probability, says more likely right than wrong (`REGION_MIN_CONFIDENCE`, or the operating threshold
   if higher). The whole photo is one search and keeps the operating threshold, which answers 98% of
   the right answers; two dozen regions are two dozen draws, and a bar that permissive lets a stray crop
   name a look-alike.
3. A landmark is reported when at least `MIN_SUPPORT` searches (regions, or the whole photo) name it:
   a landmark that is really in the photo fills several overlapping regions (one in half the photo
   lies in a half strip, a wider strip and two or three squares), while one stray crop is chance.
   Measured in process on 160 side-by-side dev composites with the operator's calibration (two seeds):
   without the confidence bar, a third, wrong landmark came into 13-15% of them; with it, 7-8%, both
   landmarks still found in 82-83% (3 searches instead of the bar: 8-11% and 80%). Through the API
   (bench/detection.py, 100 other composites): both found in 81%, a third in 10%.
4. Each landmark once, with its most confident region as its box (the whole photo's answer counts, with
   the whole photo as its box). A landmark whose box lies mostly within the boxes of more confident
   ones is dropped: it is a crop of what they already explain, one of them seen again or a crop that
   straddles two of them (a mixture, which looks like a third landmark to the model). A whole-photo box
   contains everything, so it explains nothing away.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from landmarks.search.region import WHOLE, Box, crop, grid_boxes

# Strip widths (and band heights), as fractions of the photo's: half for two photos side by side, and
# wider for two of unequal size; stepped by half their side like the grid.
STRIP_SIZES = (0.5, 0.65)
MIN_SUPPORT = 2
REGION_MIN_CONFIDENCE = 0.5
MAX_DETECTIONS = 5
# A box with more than this share of its area inside more confident detections' boxes is explained by them.
CONTAINED = 0.7
COVERAGE_CELLS = 32


@dataclass(frozen=True)
class Detection:
    landmark_id: str
    confidence: float
    box: Box
    support: int  # how many searches (regions and the whole photo) named it


def strips(sizes: Sequence[float] = STRIP_SIZES) -> list[Box]:
    """Full-height strips and full-width bands of each size, stepped by half their side."""
    boxes = []
    for size in sizes:
        steps = max(1, round((1.0 - size) / (size / 2)))
        for i in range(steps + 1):
            start = i * (1.0 - size) / steps
            boxes += [(start, 0.0, start + size, 1.0), (0.0, start, 1.0, start + size)]
    return boxes


def proposal_boxes() -> list[Box]:
    return strips() + grid_boxes()


def covered(box: Box, others: Sequence[Box], cells: int = COVERAGE_CELLS) -> float:
    """The share of BOX's area inside the union of OTHERS, counted on a grid of CELLS x CELLS points
    spread over BOX (boxes are few and coarse: a grid is exact enough and simple)."""
    if not others:
        return 0.0
    steps = (np.arange(cells) + 0.5) / cells
    xs = box[0] + steps * (box[2] - box[0])
    ys = box[1] + steps * (box[3] - box[1])
    inside = np.zeros((cells, cells), dtype=bool)
    for x0, y0, x1, y1 in others:
        inside |= ((ys >= y0) & (ys <= y1))[:, None] & ((xs >= x0) & (xs <= x1))[None, :]
    return float(inside.mean())


def merge_detections(named: Sequence[tuple[Box, str, float]], floor: float = REGION_MIN_CONFIDENCE) -> list[Detection]:
    """Detections from (box, landmark named, confidence) of every search that named one (module docstring,
    steps 2 to 4: a region below FLOOR names nothing; the whole photo's answer stands as the search gave
    it), most confident first."""
    best: dict[str, Detection] = {}
    for box, landmark_id, confidence in named:
        if box != WHOLE and confidence < floor:
            continue
        held = best.get(landmark_id)
        support = 1 + (held.support if held else 0)
        if held is None or confidence > held.confidence:
            best[landmark_id] = Detection(landmark_id, confidence, box, support)
        else:
            best[landmark_id] = replace(held, support=support)
    kept: list[Detection] = []
    for detection in sorted(best.values(), key=lambda d: -d.confidence):
        if detection.support < MIN_SUPPORT:
            continue
        if covered(detection.box, [d.box for d in kept if d.box != WHOLE]) > CONTAINED:
            continue
        kept.append(detection)
    return kept[:MAX_DETECTIONS]


def detect(searcher, image: Image.Image, query, result) -> list[Detection]:
    """The landmarks in IMAGE (the photo of QUERY, upright as decoded, whose whole-photo answer is
    RESULT), each with its box: the steps of the module docstring, with the searcher's own embedding,
    gate and threshold."""
    boxes = proposal_boxes()
    regions = searcher.embed([crop(image, box) for box in boxes])
    # Where the photo was taken holds for each of its regions.
    regions = [replace(region, location=query.location) for region in regions]
    answers = searcher.search(regions, 1)
    named = [
        (box, answer.landmark.landmark_id, answer.confidence)
        for box, answer in zip(boxes, answers, strict=True)
        if answer.landmark is not None
    ]
    if result.landmark is not None:
        named.append((WHOLE, result.landmark.landmark_id, result.confidence))
    return merge_detections(named, max(REGION_MIN_CONFIDENCE, searcher.threshold))
