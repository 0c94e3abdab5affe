"""Shared test support: the dev photos, the evaluation protocol, and a real API server process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from landmarks.evaluation.protocol import Protocol
from landmarks.evaluation.protocol import dev_protocol as _dev_protocol

REPO_ROOT = Path(__file__).resolve().parent.parent
DEV_DATA = (REPO_ROOT.parent / "shared" / "data" / "landmarks-dev").resolve()
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


class ApiServer:
    """`landmarks serve` as a real process on loopback."""

    def __init__(self, index_dir: Path, port: int | None = None, *, extra_args: tuple[str, ...] = (), env: dict | None = None) -> None:
        self.index_dir = Path(index_dir)
        self.port = port or free_port()
        self.extra_args = extra_args
        self.env = env or {}
        self.process: subprocess.Popen | None = None
        self.log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 300) -> ApiServer:
        import tempfile

        log = tempfile.NamedTemporaryFile(prefix="api-", suffix=".log", delete=False)
        self.log_path = Path(log.name)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", "--index", str(self.index_dir), "--port", str(self.port), *self.extra_args],
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"API exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"API not ready after {timeout}s:\n{self.log()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
