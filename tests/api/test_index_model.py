"""An index keeps the model that built it: without --model or LANDMARKS_MODEL, the command line and the
service load that model, so an index built by an earlier default still serves after the default changes."""

from __future__ import annotations

import httpx
import pytest

from landmarks.evaluation.protocol import materialize_gallery
from landmarks.index import recorded_model
from tests.support import ApiServer, dev_protocol, run_cli

BUILT_BY = "efficientnet_lite0"  # not the default: the point of the test


@pytest.fixture(scope="module")
def lite0_index(tmp_path_factory):
    protocol = dev_protocol()
    photos = [item for lid in ("taj_mahal", "charminar") for item in [g for g in protocol.gallery if g[1] == lid][:4]]
    gallery = materialize_gallery(photos, tmp_path_factory.mktemp("gallery"))
    out = tmp_path_factory.mktemp("lite0") / "index"
    built = run_cli("index", "build", str(gallery), "--out", str(out), "--model", BUILT_BY, "--no-progress")
    assert built.returncode == 0, built.stderr + built.stdout
    return out


def test_the_index_records_its_model(lite0_index, tmp_path):
    assert recorded_model(lite0_index) == BUILT_BY
    assert recorded_model(tmp_path / "nothing here") is None


def test_search_without_a_model_uses_the_one_that_built_the_index(lite0_index):
    query = next(path for path, lid in dev_protocol().queries if lid == "taj_mahal")
    result = run_cli("search", str(query), "--index", str(lite0_index), "-k", "3", env={"LANDMARKS_MODEL": ""})
    assert result.returncode == 0, result.stderr + result.stdout
    assert ": Taj Mahal (confidence" in result.stdout.splitlines()[0], result.stdout
    refused = run_cli("search", str(query), "--index", str(lite0_index), "--model", "efficientnet_lite1")
    assert refused.returncode == 2 and f"built by model {BUILT_BY}" in refused.stderr


def test_the_service_serves_an_index_built_by_another_model_than_the_default(lite0_index):
    query = next(path for path, lid in dev_protocol().queries if lid == "charminar")
    with ApiServer(lite0_index, env={"LANDMARKS_MODEL": ""}) as server:
        health = httpx.get(f"{server.url}/health").json()
        assert health["model"].startswith(f"{BUILT_BY} ("), health
        answer = httpx.post(
            f"{server.url}/search", files={"image": (query.name, query.read_bytes(), "image/jpeg")}, timeout=60
        ).json()
        assert answer["matches"][0]["landmark_id"] == "charminar"
