"""Reliability fixtures: one real server over a throwaway copy of the dev index, shared by the
schema fuzzing, image fuzzing, load and log tests (a model load costs a minute on a busy machine)."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

import pytest

from tests.support import ApiServer

START_TIMEOUT = 300  # the shared 2-core machine can be slow to load torch and the model
ALLOWED_ORIGIN = "https://landmarks.example.org"


def rss_mb(pid: int | str) -> float:
    """Resident memory of a process (a pid, or "self"), in MiB, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@pytest.fixture(scope="session")
def secrets_in_env() -> dict[str, str]:
    """Secrets the reliability server gets in its environment; none may ever reach its log."""
    return {
        "LANDMARKS_API_KEY": "lk-" + secrets.token_urlsafe(24),
        "TELEGRAM_BOT_TOKEN": f"{secrets.randbelow(10**9)}:{secrets.token_urlsafe(26)}",
        "BOT_WEBHOOK_SECRET": "wh-" + secrets.token_urlsafe(16),
    }


@pytest.fixture(scope="session")
def throwaway_index(dev_index, tmp_path_factory) -> Path:
    """A private copy of the dev index: write endpoints may change or delete anything in it."""
    target = tmp_path_factory.mktemp("reliability") / "index"
    shutil.copytree(dev_index, target)
    return target


@pytest.fixture(scope="session")
def reliable_server(throwaway_index, secrets_in_env):
    """The API with an API key, a CORS origin and debug logging, over the throwaway index."""
    env = {**secrets_in_env, "LANDMARKS_LOG_LEVEL": "debug", "LANDMARKS_CORS_ORIGINS": ALLOWED_ORIGIN}
    server = ApiServer(throwaway_index, env=env)
    server.start(timeout=START_TIMEOUT)
    try:
        yield server
    finally:
        server.stop()


# The write and abuse tests restart servers and embed many photos: they run on Lite0, one network
# (the fastest to load and embed), over a small gallery. What they test does not depend on the model.
LITE_MODEL = "efficientnet_lite0"
LITE_LANDMARKS = 6
LITE_PHOTOS_PER_LANDMARK = 5


@pytest.fixture(scope="session")
def lite_index(tmp_path_factory) -> Path:
    """A small index built by the real CLI with Lite0 (a pristine copy: tests copy it before writing)."""
    from landmarks.evaluation.protocol import materialize_gallery
    from tests.support import dev_protocol, require_dev_data, run_cli

    protocol = dev_protocol()
    chosen = protocol.landmark_ids[:LITE_LANDMARKS]
    photos = [
        (path, label)
        for label in chosen
        for path, _ in [p for p in protocol.gallery if p[1] == label][:LITE_PHOTOS_PER_LANDMARK]
    ]
    gallery = materialize_gallery(
        photos, tmp_path_factory.mktemp("lite-gallery"), require_dev_data() / "images" / "landmarks.csv"
    )
    out = tmp_path_factory.mktemp("lite-index") / "index"
    result = run_cli("index", "build", str(gallery), "--out", str(out), "--model", LITE_MODEL, "--no-progress")
    assert result.returncode == 0, result.stderr + result.stdout
    return out


def copy_index(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target
