"""Shared test support: the dev photos, the evaluation protocol, and a real API server process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.common import composite, scaled_to, with_gps  # noqa: F401  (phone-size photos, EXIF positions, composites)
from bench.server import ApiServer, free_port, wait_for_ok  # noqa: F401  (the tests' server and ports come from bench/)
from landmarks.evaluation.protocol import Protocol
from landmarks.evaluation.protocol import dev_protocol as _dev_protocol

REPO_ROOT = Path(__file__).resolve().parent.parent
DEV_DATA = (REPO_ROOT.parent / "shared" / "data" / "landmarks-dev").resolve()
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


# Tests of writes, abuse and recorded models restart servers and embed many photos: they run on Lite0, one network
# (the fastest to load and embed), over a small gallery. What they test does not depend on the model.
LITE_MODEL = "efficientnet_lite0"
LITE_LANDMARKS = 6
LITE_PHOTOS_PER_LANDMARK = 5


def require_dev_data() -> Path:
    """The dev photos, or a loud failure in CI (a skipped test there would hide a broken setup)."""
    if not (DEV_DATA / "images").is_dir():
        message = f"dev photos not found at {DEV_DATA}: the tests read ../shared/data/landmarks-dev beside the repo"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return DEV_DATA


def dev_protocol() -> Protocol:
    return _dev_protocol(require_dev_data())


def landmark_names() -> dict[str, str]:
    import csv

    with (require_dev_data() / "images" / "landmarks.csv").open(newline="", encoding="utf-8") as handle:
        return {row["landmark_id"]: row["name"] for row in csv.DictReader(handle)}


def run_cli(*args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real `landmarks` command line in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
