"""The M-per-class batch sampler."""

from __future__ import annotations

from collections import Counter

import pytest

from landmarks.training.samplers import MPerClassBatchSampler

# Seven classes of very different sizes, one smaller than M.
LABELS = [0] * 30 + [1] * 12 + [2] * 9 + [3] * 5 + [4] * 4 + [5] * 3 + [6] * 2


def test_every_batch_holds_m_photos_of_each_of_c_distinct_classes():
    sampler = MPerClassBatchSampler(LABELS, classes_per_batch=3, samples_per_class=4, batches_per_epoch=20, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 20
    for batch in batches:
        per_class = Counter(LABELS[index] for index in batch)
        assert len(per_class) == 3
        assert set(per_class.values()) == {4}
        for label in per_class:
            members = [index for index in batch if LABELS[index] == label]
            if LABELS.count(label) >= 4:  # enough photos: no repeats
                assert len(set(members)) == 4


def test_classes_are_visited_evenly_whatever_their_size():
    sampler = MPerClassBatchSampler(LABELS, classes_per_batch=3, samples_per_class=2, batches_per_epoch=70, seed=0)
    visits = Counter(LABELS[batch[slot]] for batch in sampler for slot in range(0, len(batch), 2))
    assert max(visits.values()) - min(visits.values()) <= 1  # 70·3 visits over 7 classes: 30 each


def test_batches_depend_only_on_seed_and_epoch():
    make = lambda seed: MPerClassBatchSampler(LABELS, 3, 4, seed=seed)  # noqa: E731
    assert make(0).batches(2) == make(0).batches(2)
    assert make(0).batches(2) != make(0).batches(3)
    assert make(0).batches(2) != make(1).batches(2)
    assert list(make(0)) == make(0).batches(0)


def test_default_epoch_is_about_one_pass_over_the_photos():
    assert len(MPerClassBatchSampler(LABELS, 3, 4)) == len(LABELS) // 12


def test_more_classes_per_batch_than_classes_is_an_error():
    with pytest.raises(ValueError, match="only 7 classes"):
        MPerClassBatchSampler(LABELS, classes_per_batch=8, samples_per_class=2)
