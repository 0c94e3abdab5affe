"""`landmarks serve` as a real process on loopback, for the benchmarks and the tests (tests/support.py
re-exports it: bench never imports the tests)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_ok(url: str, timeout: float, *, interval: float = 0.3, alive: Callable[[], bool] = lambda: True) -> bool:
    """Whether GET URL answers 200 within TIMEOUT seconds, asked every INTERVAL while ALIVE() holds."""
    deadline = time.monotonic() + timeout
    while alive():
        try:
            if httpx.get(url, timeout=min(5.0, max(interval, 2.0))).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return False


class ApiServer:
    """`landmarks serve` as a real process on loopback."""

    def __init__(
        self, index_dir: Path, port: int | None = None, *, extra_args: tuple[str, ...] = (), env: dict | None = None
    ) -> None:
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
        """Ready within TIMEOUT seconds: loading torch and the model is slow on a busy 2-core machine."""
        import tempfile

        log = tempfile.NamedTemporaryFile(prefix="api-", suffix=".log", delete=False)
        self.log_path = Path(log.name)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cli",
                "serve",
                "--index",
                str(self.index_dir),
                "--port",
                str(self.port),
                *self.extra_args,
            ],
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
        )
        if wait_for_ok(f"{self.url}/ready", timeout, alive=lambda: self.process.poll() is None):
            return self
        if self.process.poll() is not None:
            raise RuntimeError(f"API exited with {self.process.returncode}:\n{self.log()}")
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
