"""The metrics against values worked out by hand on small cases."""

from __future__ import annotations

import numpy as np
import pytest

from landmarks.evaluation.metrics import (
    accuracy,
    average_precision_at_k,
    gap,
    map_at_k,
    recall_at_k,
    relevance_matrix,
    top_k,
)

RELEVANCE = np.array(
    [
        [False, True, False, True],  # first hit at rank 2
        [False, False, False, False],  # no hit
        [True, False, True, False],  # hits at ranks 1 and 3
    ]
)


def test_recall_at_k_counts_queries_with_a_hit_in_the_first_k():
    assert recall_at_k(RELEVANCE, 1) == pytest.approx(1 / 3)
    assert recall_at_k(RELEVANCE, 2) == pytest.approx(2 / 3)
    assert recall_at_k(RELEVANCE, 10) == pytest.approx(2 / 3)


def test_average_precision_divides_by_all_relevant_photos_up_to_k():
    # Hits at ranks 1 and 3: precisions 1/1 and 2/3; 3 relevant photos exist in the gallery.
    assert average_precision_at_k(RELEVANCE[2], num_relevant=3, k=4) == pytest.approx((1 + 2 / 3) / 3)
    # Only rank 1 is within k=2, and at most 2 relevant photos fit in the first 2.
    assert average_precision_at_k(RELEVANCE[2], num_relevant=3, k=2) == pytest.approx(1 / 2)
    # Every relevant photo retrieved first: perfect.
    assert average_precision_at_k([True, True, False], num_relevant=2, k=100) == pytest.approx(1.0)
    assert average_precision_at_k([False, False], num_relevant=0, k=100) == 0.0


def test_map_at_k_is_the_mean_over_queries():
    expected = np.mean([(1 / 2 + 2 / 4) / 2, 0.0, (1 + 2 / 3) / 3])
    assert map_at_k(RELEVANCE, [2, 1, 3], k=100) == pytest.approx(expected)


def test_gap_sorts_by_confidence_and_counts_distractor_predictions_as_wrong():
    truth = ["a", "b", "c", None, "d"]
    predicted = ["a", "x", "c", "y", "d"]
    confidence = [0.9, 0.8, 0.7, 0.95, 0.1]
    # Sorted: distractor (wrong), a (right), b (wrong), c (right), d (right).
    # P(i) at the right ones: 1/2, 2/4, 3/5; M = 4 queries that show a landmark.
    assert gap(predicted, confidence, truth) == pytest.approx((1 / 2 + 2 / 4 + 3 / 5) / 4)


def test_gap_a_confident_distractor_costs_more_than_a_doubtful_one():
    assert gap(["a", "b"], [0.9, 0.1], ["a", None]) == pytest.approx(1.0)
    assert gap(["a", "b"], [0.9, 0.95], ["a", None]) == pytest.approx(0.5)


def test_gap_missing_prediction_still_counts_in_the_denominator():
    assert gap(["a", None], [0.9, 0.0], ["a", "b"]) == pytest.approx(0.5)


def test_accuracy():
    assert accuracy(["a", "b", "c"], ["a", "x", "c"]) == pytest.approx(2 / 3)
    assert accuracy([None, "a"], [None, "b"]) == pytest.approx(0.5)


def test_top_k_and_relevance_rank_by_cosine():
    gallery = np.array([[1, 0], [0, 1], [0.6, 0.8], [-1, 0]], dtype=np.float32)
    queries = np.array([[0, 1], [1, 0]], dtype=np.float32)
    indices, scores = top_k(queries, gallery, 3)
    assert indices.tolist() == [[1, 2, 0], [0, 2, 1]]
    assert scores[0].tolist() == pytest.approx([1.0, 0.8, 0.0])
    labels = np.array(["n", "e", "e", "s"], dtype=object)
    assert relevance_matrix(labels[indices], ["e", "n"]).tolist() == [[True, True, False], [True, False, False]]
