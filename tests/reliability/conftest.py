"""Reliability fixtures: one real server over a throwaway copy of the dev index, shared by the
schema fuzzing, image fuzzing, load and log tests (a model load costs a minute on a busy machine)."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

import pytest

from tests.support import ApiServer

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
    with ApiServer(throwaway_index, env=env) as server:
        yield server


def copy_index(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target
