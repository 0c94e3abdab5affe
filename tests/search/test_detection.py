"""Several landmarks in one photo: the region proposals and how region answers become detections."""

from __future__ import annotations

import pytest

from landmarks.search.detection import (
    MAX_DETECTIONS,
    MIN_SUPPORT,
    REGION_MIN_CONFIDENCE,
    covered,
    merge_detections,
    proposal_boxes,
)
from landmarks.search.region import WHOLE

LEFT, RIGHT = (0.0, 0.0, 0.5, 1.0), (0.5, 0.0, 1.0, 1.0)
LEFT_SQUARE, MIDDLE = (0.0, 0.25, 0.5, 0.75), (0.25, 0.0, 0.75, 1.0)


def test_proposals_lie_in_the_photo_and_include_both_halves_each_way():
    boxes = proposal_boxes()
    assert all(0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1 for x0, y0, x1, y1 in boxes)
    assert {LEFT, RIGHT, (0.0, 0.0, 1.0, 0.5), (0.0, 0.5, 1.0, 1.0)} <= set(boxes)
    assert len(set(boxes)) == len(boxes) and 15 <= len(boxes) <= 30  # one batch, a few dozen crops at most


@pytest.mark.parametrize(
    ("box", "others", "share"),
    [(LEFT, [], 0.0), (LEFT, [LEFT], 1.0), (WHOLE, [LEFT], 0.5), (MIDDLE, [LEFT, RIGHT], 1.0), (MIDDLE, [LEFT], 0.5)],
)
def test_covered_share(box, others, share):
    assert covered(box, others) == pytest.approx(share, abs=0.02)


RIGHT_SQUARE, RIGHT_WIDE = (0.5, 0.25, 1.0, 0.75), (0.35, 0.0, 1.0, 1.0)


def test_two_landmarks_side_by_side_are_both_found_each_with_its_best_region():
    named = [(LEFT, "taj_mahal", 0.8), (LEFT_SQUARE, "taj_mahal", 0.7), (RIGHT, "india_gate", 0.75)]
    named += [(RIGHT_SQUARE, "india_gate", 0.6), (RIGHT_WIDE, "india_gate", 0.65), (WHOLE, "taj_mahal", 0.55)]
    found = merge_detections(named)
    assert [(d.landmark_id, d.box, d.support) for d in found] == [("taj_mahal", LEFT, 3), ("india_gate", RIGHT, 3)]


def test_a_landmark_named_by_fewer_than_min_support_searches_is_chance():
    named = [(WHOLE, "taj_mahal", 0.9), (LEFT, "taj_mahal", 0.8), (LEFT_SQUARE, "taj_mahal", 0.8)]
    named += [((0.5, 0.5, 1.0, 1.0), "humayuns_tomb", 0.7)] * (MIN_SUPPORT - 1)
    assert [d.landmark_id for d in merge_detections(named)] == ["taj_mahal"]


def test_a_region_less_sure_than_the_bar_names_nothing_but_the_whole_photo_stands():
    # Two regions agree on a look-alike, each less likely right than wrong: chance among two dozen draws.
    named = [(WHOLE, "taj_mahal", 0.4), (LEFT, "taj_mahal", 0.45), (LEFT_SQUARE, "taj_mahal", 0.7)]
    named += [(RIGHT, "humayuns_tomb", 0.45), (RIGHT_SQUARE, "humayuns_tomb", 0.42)]
    assert REGION_MIN_CONFIDENCE == 0.5
    found = merge_detections(named)
    assert [(d.landmark_id, d.support) for d in found] == [("taj_mahal", 2)]  # the whole photo and one region
    assert [d.landmark_id for d in merge_detections(named, floor=0.4)] == ["taj_mahal", "humayuns_tomb"]


def test_a_crop_across_two_detections_is_explained_by_them():
    # The middle strip straddles both photos: what it names (a mixture) is neither of them.
    named = [(LEFT, "taj_mahal", 0.8), (LEFT_SQUARE, "taj_mahal", 0.7), (WHOLE, "taj_mahal", 0.6)]
    named += [(RIGHT, "india_gate", 0.75), (RIGHT_SQUARE, "india_gate", 0.7), (RIGHT_WIDE, "india_gate", 0.6)]
    named += [(MIDDLE, "golden_temple", 0.6), ((0.25, 0.25, 0.75, 0.75), "golden_temple", 0.55)]
    named += [((0.25, 0.0, 0.75, 0.5), "golden_temple", 0.55)]
    assert [d.landmark_id for d in merge_detections(named)] == ["taj_mahal", "india_gate"]


def test_a_whole_photo_box_explains_nothing_away():
    named = [(WHOLE, "taj_mahal", 0.9), (LEFT, "taj_mahal", 0.6), (LEFT_SQUARE, "taj_mahal", 0.6)]
    named += [(RIGHT, "india_gate", 0.7), (RIGHT_SQUARE, "india_gate", 0.65), (RIGHT_WIDE, "india_gate", 0.6)]
    assert [d.landmark_id for d in merge_detections(named)] == ["taj_mahal", "india_gate"]
    assert merge_detections(named)[0].box == WHOLE  # its most confident search was the whole photo


def test_at_most_max_detections_most_confident_first():
    named = []
    for i in range(MAX_DETECTIONS + 3):
        box = (i / 10, 0.0, i / 10 + 0.1, 0.1)  # small boxes apart: none explains another
        named += [(box, f"landmark_{i}", 0.5 + i / 100)] * MIN_SUPPORT
    found = merge_detections(named)
    assert len(found) == MAX_DETECTIONS
    assert [d.confidence for d in found] == sorted((d.confidence for d in found), reverse=True)
