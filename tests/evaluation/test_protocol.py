"""The dev protocol's split, and its folds: every photo is a query exactly once across them."""

from __future__ import annotations

import pytest

from landmarks.evaluation.protocol import dev_protocol
from tests.support import require_dev_data


def test_the_reported_split_is_fold_zero():
    root = require_dev_data()
    protocol = dev_protocol(root)
    assert (len(protocol.gallery), len(protocol.queries), len(protocol.distractors)) == (530, 146, 47)
    assert dev_protocol(root, fold=0) == protocol
    assert all(int(path.stem) % 5 == 0 for path, _ in protocol.queries if path.stem.isdigit())


def test_folds_make_every_photo_a_query_once():
    root = require_dev_data()
    folds = [dev_protocol(root, fold=fold) for fold in range(5)]
    everything = {path for path, _ in folds[0].gallery + folds[0].queries}
    queried = [path for protocol in folds for path, _ in protocol.queries]
    assert len(queried) == len(set(queried)) == len(everything) == 676
    assert set(queried) == everything
    for protocol in folds:
        assert not {p for p, _ in protocol.queries} & {p for p, _ in protocol.gallery}
        assert {label for _, label in protocol.queries} == {
            label for _, label in protocol.gallery
        }  # every landmark on both sides


def test_a_fold_outside_the_split_is_refused():
    with pytest.raises(ValueError, match="fold 5"):
        dev_protocol(require_dev_data(), fold=5)
