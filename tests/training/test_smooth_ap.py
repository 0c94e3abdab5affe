"""Smooth-rank AP, ROADMAP's step surrogate, calibration and ArcFace margins, checked by brute force or by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from landmarks.training.losses import (
    ArcFaceLoss,
    CalibrationLoss,
    RoadmapLoss,
    SigmoidStep,
    SmoothRankAP,
    SupRankStep,
    additive_angular_margin,
    heaviside,
    label_masks,
)


def brute_force_ap(scores: np.ndarray, relevant: np.ndarray) -> float:
    """AP by sorting: precision at each relevant item's position, averaged over the relevant items."""
    order = np.argsort(-scores, kind="stable")
    hits = relevant[order]
    precisions = np.cumsum(hits)[hits] / (np.flatnonzero(hits) + 1)
    return float(precisions.mean())


def random_queries(seed: int, queries: int = 12, items: int = 40):
    rng = np.random.default_rng(seed)
    scores = rng.uniform(-1, 1, size=(queries, items))
    relevant = rng.random((queries, items)) < 0.3
    relevant[:, 0] = True  # every query has at least one positive
    return scores, relevant


def smooth_ap(step, scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    module = SmoothRankAP(step)
    s = torch.from_numpy(scores)
    positives = torch.from_numpy(relevant)
    return module(s, positives, ~positives).numpy()


def test_smooth_ap_approaches_exact_ap_as_the_temperature_falls():
    scores, relevant = random_queries(0)
    exact = np.array([brute_force_ap(s, r) for s, r in zip(scores, relevant, strict=True)])
    errors = [
        np.abs(smooth_ap(SigmoidStep(tau), scores, relevant) - exact).max() for tau in (0.5, 0.1, 0.01, 1e-3, 1e-5)
    ]
    assert all(later < earlier for earlier, later in zip(errors, errors[1:], strict=False)), errors
    assert errors[0] > 0.05  # a warm sigmoid really is a rough approximation ...
    assert errors[-1] < 1e-6  # ... and a cold one is AP itself


def test_exact_step_gives_exact_ap():
    scores, relevant = random_queries(1)
    exact = np.array([brute_force_ap(s, r) for s, r in zip(scores, relevant, strict=True)])
    assert smooth_ap(heaviside, scores, relevant) == pytest.approx(exact, abs=1e-12)


def test_suprank_step_matches_the_paper_piecewise_definition():
    step = SupRankStep(tau=0.01, rho=100.0, delta=0.05)
    sigma = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    t = torch.tensor([-0.2, -0.01, 0.0, 0.02, 0.05, 0.1], dtype=torch.float64)
    expected = [sigma(-20), sigma(-1), 0.5, sigma(2) + 0.5, sigma(5) + 0.5, 100 * 0.05 + sigma(5) + 0.5]
    assert step(t).tolist() == pytest.approx(expected, rel=1e-9)


def test_suprank_bounds_the_ap_loss_from_above_at_every_temperature():
    scores, relevant = random_queries(2)
    exact = np.array([brute_force_ap(s, r) for s, r in zip(scores, relevant, strict=True)])
    t = torch.linspace(-1, 1, 2001, dtype=torch.float64)
    for tau in (0.1, 0.01, 1e-3):
        step = SupRankStep(tau=tau, rho=100.0, delta=0.05)
        assert bool((step(t) >= heaviside(t) - 0.5 * (t == 0)).all())  # above the step (t=0 is the tie)
        assert (smooth_ap(step, scores, relevant) <= exact + 1e-12).all()


def test_roadmap_is_zero_for_separated_calibrated_classes_and_high_when_mixed():
    directions = torch.eye(4, dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    separated = directions[labels]  # positives at cosine 1, negatives at 0
    assert RoadmapLoss()(separated, labels).item() == pytest.approx(0.0, abs=1e-9)
    mixed = directions[torch.tensor([0, 1, 1, 2, 2, 0])]  # each photo's twin is another landmark's
    mixed.requires_grad_()
    loss = RoadmapLoss()(mixed, labels)
    loss.backward()
    assert loss.item() > 0.5
    assert torch.isfinite(mixed.grad).all() and mixed.grad.abs().sum() > 0


def test_roadmap_gradient_signs_on_a_hand_made_ranking():
    # One query (row 0): its positive (item 1) at 0.5, a negative (item 2) above it at 0.53.
    scores = torch.tensor([[1.0, 0.5, 0.53]], dtype=torch.float64, requires_grad=True)
    positives = torch.tensor([[False, True, False]])
    ap = SmoothRankAP(SupRankStep())(scores, positives, ~positives & torch.tensor([[False, True, True]]))
    (1 - ap.mean()).backward()
    assert scores.grad[0, 2] > 0  # raising the negative would raise the loss
    assert scores.grad[0, 1] < 0  # raising the positive would lower it


def test_calibration_penalises_weak_positives_and_strong_negatives_only():
    labels = torch.tensor([0, 0, 1])
    positives, negatives = label_masks(labels)
    scores = torch.tensor([[1.0, 0.7, 0.65], [0.7, 1.0, 0.2], [0.65, 0.2, 1.0]])
    # Positive pairs (0,1),(1,0) at 0.7: 0.2 below 0.9 each. Negative pairs above 0.6: (0,2),(2,0) by 0.05.
    assert CalibrationLoss(0.9, 0.6)(scores, positives, negatives).item() == pytest.approx(0.2 + 0.05)
    calm = torch.tensor([[1.0, 0.95, 0.1], [0.95, 1.0, 0.2], [0.1, 0.2, 1.0]])
    assert CalibrationLoss(0.9, 0.6)(calm, positives, negatives).item() == 0.0


def test_arcface_margin_is_added_to_the_true_class_angle_only():
    cosine = torch.tensor([[0.5, 0.5]])
    out = additive_angular_margin(cosine, torch.tensor([0]), margin=0.5)
    assert out[0, 0].item() == pytest.approx(math.cos(math.acos(0.5) + 0.5), abs=1e-6)
    assert out[0, 1].item() == pytest.approx(0.5)


def test_arcface_sub_centres_take_the_best_centre():
    loss = ArcFaceLoss(embedding_dim=2, num_classes=2, margin=0.3, scale=30.0, sub_centers=2)
    with torch.no_grad():
        loss.classifier.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]))
    cosine = loss.classifier(torch.tensor([[0.0, 1.0]]))
    assert cosine[0].tolist() == pytest.approx([1.0, 0.0], abs=1e-6)
