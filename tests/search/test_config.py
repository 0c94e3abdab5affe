"""SearchConfig: LANDMARKS_* variables, signatures, and the service's threshold rules."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from landmarks.search import SearchConfig


def test_from_env_reads_every_stage_switch():
    config = SearchConfig.from_env({
        "LANDMARKS_SPATIAL": "0", "LANDMARKS_SCALES": "1, 0.75", "LANDMARKS_QE_K": "3", "LANDMARKS_QE_ALPHA": "2.5",
        "LANDMARKS_DBA_K": "4", "LANDMARKS_AGGREGATE_TOP": "1", "LANDMARKS_SPATIAL_TOP": "20", "LANDMARKS_THRESHOLD": "0.7",
        "LANDMARKS_GROUP_MATCHES": "false", "LANDMARKS_CANDIDATES": "50",
    })
    assert config == SearchConfig(spatial=False, scales=(1.0, 0.75), qe_k=3, qe_alpha=2.5, dba_k=4, aggregate_top=1,
                                  spatial_top=20, threshold=0.7, group_matches=False, candidates=50)
    assert SearchConfig.from_env({}) == SearchConfig()
    assert SearchConfig.from_env({"LANDMARKS_THRESHOLD": "0.7"}, threshold=None).threshold == 0.7  # None does not erase


def test_from_env_rejects_nonsense():
    with pytest.raises(ValueError, match="LANDMARKS_SPATIAL"):
        SearchConfig.from_env({"LANDMARKS_SPATIAL": "maybe"})
    with pytest.raises(ValueError, match="LANDMARKS_QE_K"):
        SearchConfig.from_env({"LANDMARKS_QE_K": "two"})


def test_signature_follows_the_stages_not_the_threshold():
    base = SearchConfig()
    assert base.signature() == SearchConfig(threshold=0.9, group_matches=False).signature()
    assert base.signature() != SearchConfig(spatial=True).signature()
    assert base.signature() != SearchConfig(qe_k=2).signature()
    # With spatial verification off, its parameters do not matter.
    assert SearchConfig(spatial=False).signature() == SearchConfig(spatial=False, spatial_top=50).signature()


def test_service_threshold_default_means_the_calibrations(monkeypatch):
    monkeypatch.delenv("LANDMARKS_THRESHOLD", raising=False)
    assert SearchConfig.from_settings(SimpleNamespace(threshold=0.63)).threshold is None
    assert SearchConfig.from_settings(SimpleNamespace(threshold=0.8)).threshold == 0.8
    monkeypatch.setenv("LANDMARKS_THRESHOLD", "0.63")
    assert SearchConfig.from_settings(SimpleNamespace(threshold=0.63)).threshold == 0.63
