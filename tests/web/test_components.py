"""The page's building blocks that decide what a person reads: percentages and map labels."""

from __future__ import annotations

import pytest

from web.components import GLYPH_WIDTH, confidence_percent, place_labels, to_pixels


@pytest.mark.parametrize(
    ("confidence", "shown"),
    [(0.998, "over 99%"), (0.876, "87%"), (0.29, "29%"), (0.01, "1%"), (0.004, "under 1%"), (0.0, "under 1%")],
)
def test_a_confidence_is_never_shown_as_certain_or_impossible(confidence, shown):
    assert confidence_percent(confidence) == shown


def label_box(point, label, zoom):
    """The label's rectangle in pixels, as deck.gl draws it for that anchor, baseline and offset."""
    lat, lon, text, _, size = point
    x, y = to_pixels(lat, lon, zoom)
    width, height = len(text) * size * GLYPH_WIDTH + 8, size + 4
    left = {"start": x + label.offset[0], "end": x + label.offset[0] - width, "middle": x - width / 2}[label.anchor]
    top = {"center": y - height / 2, "bottom": y + label.offset[1] - height, "top": y + label.offset[1]}[label.baseline]
    return left, top, left + width, top + height


def overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_labels_of_landmarks_far_apart_all_sit_right_of_their_dots():
    points = [(27.1751, 78.0421, "Taj Mahal", 8, 15), (28.6129, 77.2295, "India Gate", 5, 12)]
    labels = place_labels(points, zoom=6)
    assert [label.anchor for label in labels] == ["start", "start"]
    assert labels[0].offset == (8 + 5, 0)


def test_labels_of_landmarks_standing_together_do_not_cover_each_other():
    # The Qutub complex: Qutub Minar, the Iron Pillar and Alai Minar stand within 100 m, a few pixels
    # apart at the map's closest zoom; a fourth landmark 1.5 km away.
    points = [
        (28.5245, 77.1855, "Qutub Minar", 8, 15),
        (28.5246, 77.1852, "Iron Pillar", 5, 12),
        (28.5249, 77.1850, "Alai Minar", 5, 12),
        (28.5280, 77.2000, "Jamali Kamali", 5, 12),
    ]
    labels = place_labels(points, zoom=13)
    assert all(labels), labels
    assert labels[0].anchor == "start"  # the answer keeps the first place, right of its dot
    boxes = [label_box(point, label, 13) for point, label in zip(points, labels, strict=True)]
    for i, box in enumerate(boxes):
        assert not any(overlap(box, other) for other in boxes[i + 1 :]), (i, boxes)


def test_a_pile_of_landmarks_at_one_spot_keeps_only_the_labels_that_fit():
    points = [(48.8584, 2.2945, f"Landmark {i}", 8 if i == 0 else 5, 15 if i == 0 else 12) for i in range(6)]
    labels = place_labels(points, zoom=13)
    assert labels[0] is not None and labels[0].anchor == "start"
    assert 1 <= sum(label is None for label in labels) <= 4  # four sides at most, and the dots block some
