"""The service's settings: every LANDMARKS_* variable read once (api/settings.py), with one parser per type."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.settings import Settings
from landmarks.search import SearchConfig


def test_from_env_reads_every_stage_switch():
    config = Settings.from_env(
        {
            "LANDMARKS_SPATIAL": "0",
            "LANDMARKS_SCALES": "1, 0.75",
            "LANDMARKS_QE_K": "3",
            "LANDMARKS_QE_ALPHA": "2.5",
            "LANDMARKS_DBA_K": "4",
            "LANDMARKS_AGGREGATE_TOP": "1",
            "LANDMARKS_SPATIAL_TOP": "20",
            "LANDMARKS_THRESHOLD": "0.7",
            "LANDMARKS_GROUP_MATCHES": "false",
            "LANDMARKS_CANDIDATES": "50",
        }
    ).search_config()
    assert config == SearchConfig(
        spatial=False,
        scales=(1.0, 0.75),
        qe_k=3,
        qe_alpha=2.5,
        dba_k=4,
        aggregate_top=1,
        spatial_top=20,
        threshold=0.7,
        group_matches=False,
        candidates=50,
    )
    assert Settings.from_env({}).search_config() == SearchConfig()
    assert Settings.from_env({"LANDMARKS_SPATIAL": "on"}).search_config(qe_k=2) == SearchConfig(spatial=True, qe_k=2)


def test_from_env_rejects_nonsense():
    with pytest.raises(ValueError, match="LANDMARKS_SPATIAL"):
        Settings.from_env({"LANDMARKS_SPATIAL": "maybe"}).search_config()
    with pytest.raises(ValueError, match="LANDMARKS_QE_K"):
        Settings.from_env({"LANDMARKS_QE_K": "two"}).search_config()
    with pytest.raises(ValueError, match="LANDMARKS_BATCHING"):
        Settings.from_env({"LANDMARKS_BATCHING": "maybe"})


def test_settings_read_each_variable_once_with_one_parser_per_type():
    settings = Settings.from_env(
        {
            "LANDMARKS_INDEX_DIR": "/srv/index",
            "LANDMARKS_BATCHING": "off",
            "LANDMARKS_PROTECT_READS": "yes",
            "LANDMARKS_BATCH_MAX_SIZE": "8",
            "LANDMARKS_CORS_ORIGINS": "https://a.org, ,https://b.org",
            "LANDMARKS_PUBLIC_URL": "https://landmarks.example.org/",
            "LANDMARKS_LOG_LEVEL": "debug",
            "XDG_CACHE_HOME": "/xdg",
            "OMP_NUM_THREADS": "3",
            "LANDMARKS_LOCAL_FEATURES": "0",
            "LANDMARKS_EXPORTED_MODELS": "/models",
            "LANDMARKS_DEVICE": "",
        }
    )
    assert settings.index_dir == Path("/srv/index") and settings.batching is False and settings.protect_reads is True
    assert settings.batch_max_size == 8 and settings.cors_origins == ("https://a.org", "https://b.org")
    assert settings.public_url == "https://landmarks.example.org" and settings.log_level == "debug"
    assert settings.cache_dir == Path("/xdg/landmarks") and settings.onnx_threads == 3 and settings.device is None
    assert settings.local_feature_params() is None and settings.exported_dir == Path("/models")
    assert Settings.from_env({"XDG_CACHE_HOME": "/xdg", "LANDMARKS_CACHE_DIR": "/cache"}).cache_dir == Path("/cache")
    assert Settings.from_env({}) == Settings()


def test_the_threshold_is_the_calibrations_unless_the_operator_sets_one():
    assert Settings.from_env({}).search_config().threshold is None
    assert Settings.from_env({"LANDMARKS_THRESHOLD": "0.63"}).search_config().threshold == 0.63
    assert Settings(threshold=0.8).search_config().threshold == 0.8


def test_local_features_are_extracted_when_spatial_verification_is_on():
    """They cost a build a second decode and SIFT per photo: only for the stage that uses them, unless asked."""
    local = SearchConfig().local_params
    assert Settings.from_env({}).local_feature_params() is None
    assert Settings.from_env({"LANDMARKS_SPATIAL": "1"}).local_feature_params() == local
    assert Settings.from_env({"LANDMARKS_LOCAL_FEATURES": "1"}).local_feature_params() == local
    assert Settings.from_env({"LANDMARKS_SPATIAL": "1", "LANDMARKS_LOCAL_FEATURES": "0"}).local_feature_params() is None
