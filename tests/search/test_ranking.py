"""Landmark ranking: a landmark scores the mean of its best photos; the uncalibrated confidence."""

from __future__ import annotations

import pytest

from landmarks.search import UNCALIBRATED_SCORE_AT_HALF, confidence_from_score, rank_landmarks


def test_landmarks_rank_by_the_mean_of_their_best_photos():
    scored = [
        ("taj_mahal", 0.90),
        ("humayuns_tomb", 0.85),
        ("humayuns_tomb", 0.84),
        ("taj_mahal", 0.70),
        ("lotus_temple", 0.80),
    ]
    by_best_photo = rank_landmarks(scored, aggregate_top=1)
    assert [(lm.landmark_id, lm.score, lm.votes) for lm in by_best_photo] == [
        ("taj_mahal", 0.90, 2),
        ("humayuns_tomb", 0.85, 2),
        ("lotus_temple", 0.80, 1),
    ]
    by_two = rank_landmarks(scored, aggregate_top=2)
    assert [lm.landmark_id for lm in by_two] == ["humayuns_tomb", "taj_mahal", "lotus_temple"]
    assert by_two[0].score == pytest.approx(0.845) and by_two[1].score == pytest.approx(0.80)
    assert by_two[2].score == pytest.approx(0.80)  # one candidate photo: its score, not diluted
    assert rank_landmarks([], aggregate_top=2) == []


def test_uncalibrated_confidence_is_one_half_at_the_fixed_score():
    assert confidence_from_score(UNCALIBRATED_SCORE_AT_HALF) == pytest.approx(0.5)
    assert confidence_from_score(0.3) < 0.5 < confidence_from_score(0.8) <= 1.0
