"""The command line finds the service's index: LANDMARKS_INDEX_DIR, else the one default."""

from __future__ import annotations

import pytest

from api.settings import DEFAULT_INDEX_DIR


@pytest.mark.parametrize("command", ["search", "calibrate"])
def test_search_and_calibrate_default_to_the_services_index(command, monkeypatch, tmp_path):
    """LANDMARKS_INDEX_DIR is the index of `landmarks search` and `calibrate` too (no model is loaded here)."""
    import importlib

    import cli

    seen = []

    def load_model(args, index_dir):
        seen.append(index_dir)
        raise cli.CommandError("stop before loading a model")

    monkeypatch.setattr(importlib.import_module(f"cli.{command}"), "load_model", load_model)
    monkeypatch.setenv("LANDMARKS_INDEX_DIR", str(tmp_path))
    assert cli.main([command, *(["photo.jpg"] if command == "search" else [])]) == 2
    monkeypatch.delenv("LANDMARKS_INDEX_DIR")
    assert cli.main([command, *(["photo.jpg"] if command == "search" else [])]) == 2
    assert seen == [tmp_path, DEFAULT_INDEX_DIR]
