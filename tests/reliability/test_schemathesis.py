"""Schemathesis against the running service's own OpenAPI schema: every operation, generated valid
and invalid requests (examples, coverage, fuzzing and stateful phases), with and without the
operator's key, on a throwaway copy of the index. No 5xx; every answer matches the schema.

Runs the Schemathesis command line: its pytest plugin does not work with pytest 9.2 yet.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

MAX_EXAMPLES = 12
WRITE_OPERATIONS = {
    ("post", "/landmarks"),
    ("post", "/landmarks/{landmark_id}/images"),
    ("delete", "/landmarks/{landmark_id}"),
    ("delete", "/gallery/{image_id}"),
    ("post", "/index/reload"),
}
# Checks left out, and why:
# - positive_data_acceptance: "a valid image" cannot be said in OpenAPI, so schema-valid random bytes
#   rightly get 400/415;
# - allow_header_conformance: a 405's Allow header lists one route's methods (Starlette routes
#   GET /landmarks and POST /landmarks separately); cosmetic, not a contract break;
# - object_level_authorization: there are no per-user objects.
EXCLUDED_CHECKS = ("positive_data_acceptance", "allow_header_conformance", "object_level_authorization")


def schemathesis(url: str, *extra: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--exclude-checks",
        ",".join(EXCLUDED_CHECKS),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--workers",
        "1",
        "--request-timeout",
        "60",
        "--generation-database",
        "none",
        "--no-color",
        *extra,
    ]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=240)


def assert_clean_run(result: subprocess.CompletedProcess, operations: int) -> None:
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-12_000:]
    assert re.search(rf"Selected: {operations}/{operations}\b", report), report[-3000:]
    assert re.search(rf"Tested: {operations}\b", report), report[-3000:]


@pytest.fixture(scope="module")
def operations(reliable_server) -> set[tuple[str, str]]:
    schema = httpx.get(f"{reliable_server.url}/openapi.json", timeout=30).json()
    return {
        (method, path)
        for path, item in schema["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }


def test_the_schema_declares_the_write_operations_with_the_api_key(reliable_server, operations):
    assert WRITE_OPERATIONS <= operations
    schema = httpx.get(f"{reliable_server.url}/openapi.json", timeout=30).json()
    for method, path in WRITE_OPERATIONS:
        security = schema["paths"][path][method].get("security")
        assert security and any("APIKeyHeader" in entry for entry in security), (method, path, security)


def test_every_operation_with_the_key(reliable_server, secrets_in_env, operations, tmp_path):
    # With the key the writes really run (create, add photos, delete, reload); the ignored_auth check
    # also replays them without it and fails if they still succeed.
    key = secrets_in_env["LANDMARKS_API_KEY"]
    assert_clean_run(schemathesis(reliable_server.url, "--header", f"X-API-Key: {key}", cwd=tmp_path), len(operations))
    assert httpx.get(f"{reliable_server.url}/ready", timeout=30).status_code == 200


def test_every_operation_without_the_key(reliable_server, operations, tmp_path):
    assert_clean_run(schemathesis(reliable_server.url, cwd=tmp_path), len(operations))
    for method, path in WRITE_OPERATIONS:  # no write gets through without the right key
        url = reliable_server.url + path.replace("{landmark_id}", "taj_mahal").replace("{image_id}", "1")
        for headers, status in (({}, 401), ({"X-API-Key": "not-the-key"}, 403)):
            response = httpx.request(method, url, headers=headers, timeout=30)
            assert response.status_code == status, (method, path, headers, response.text)
            assert set(response.json()) == {"detail"}


def test_photo_ids_beyond_64_bits_get_a_4xx(reliable_server, secrets_in_env):
    """Found by the fuzzing above (a 500: SQLite integers are 64-bit); pinned here for every run."""
    auth = {"X-API-Key": secrets_in_env["LANDMARKS_API_KEY"]}
    for image_id in (2**63, 2**64 + 5, 10**30, -(2**63) - 1):
        for method, headers in (("GET", {}), ("DELETE", auth)):
            response = httpx.request(method, f"{reliable_server.url}/gallery/{image_id}", headers=headers, timeout=30)
            assert response.status_code in (404, 422), (method, image_id, response.status_code, response.text[:200])
            assert set(response.json()) == {"detail"}
