"""An index keeps the model that built it: without --model or LANDMARKS_MODEL, the command line and the
service load that model, so an index built by an earlier default still serves after the default changes."""

from __future__ import annotations

import shutil

import httpx
import pytest

from landmarks.index import recorded_model
from tests.support import LITE_MODEL, ApiServer, dev_protocol, run_cli


@pytest.fixture(scope="module")
def lite0_index(lite_index, tmp_path_factory):
    """The shared Lite0 index (not the default model: the point of the tests), copied: a server may write."""
    return shutil.copytree(lite_index, tmp_path_factory.mktemp("lite0") / "index")


def test_the_index_records_its_model(lite0_index, tmp_path):
    assert recorded_model(lite0_index) == LITE_MODEL
    assert recorded_model(tmp_path / "nothing here") is None


def test_search_without_a_model_uses_the_one_that_built_the_index(lite0_index):
    query = next(path for path, lid in dev_protocol().queries if lid == "ajanta_caves")
    result = run_cli("search", str(query), "--index", str(lite0_index), "-k", "3", env={"LANDMARKS_MODEL": ""})
    assert result.returncode == 0, result.stderr + result.stdout
    assert ": Ajanta Caves (confidence" in result.stdout.splitlines()[0], result.stdout
    refused = run_cli("search", str(query), "--index", str(lite0_index), "--model", "efficientnet_lite1")
    assert refused.returncode == 2 and f"built by model {LITE_MODEL}" in refused.stderr


def test_the_service_serves_an_index_built_by_another_model_than_the_default(lite0_index):
    query = next(path for path, lid in dev_protocol().queries if lid == "charminar")
    with ApiServer(lite0_index, env={"LANDMARKS_MODEL": ""}) as server:
        health = httpx.get(f"{server.url}/health").json()
        assert health["model"].startswith(f"{LITE_MODEL} ("), health
        answer = httpx.post(
            f"{server.url}/search", files={"image": (query.name, query.read_bytes(), "image/jpeg")}, timeout=60
        ).json()
        assert answer["matches"][0]["landmark_id"] == "charminar"
