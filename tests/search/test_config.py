"""SearchConfig: the stages' signature, which ties a calibration to the stages it was fitted for."""

from __future__ import annotations

from landmarks.search import SearchConfig


def test_signature_follows_the_stages_not_the_threshold():
    base = SearchConfig()
    assert base.signature() == SearchConfig(threshold=0.9, group_matches=False).signature()
    assert base.signature() != SearchConfig(spatial=True).signature()
    assert base.signature() != SearchConfig(qe_k=2).signature()
    # With spatial verification off, its parameters do not matter.
    assert SearchConfig(spatial=False).signature() == SearchConfig(spatial=False, spatial_top=50).signature()
