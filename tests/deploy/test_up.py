"""`landmarks up` as a user runs it: real processes on loopback, stopped by a signal."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.support import REPO_ROOT, free_port, run_cli

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds child processes through /proc")

START_TIMEOUT = 180  # the API loads a real model; a busy 2-core machine can take a minute
STOP_TIMEOUT = 40


def children_of(pid: int) -> dict[int, str]:
    """pid -> command line of the live children of `pid`."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out[int(entry.name)] = cmdline
    return out


def alive(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
    except OSError:
        return False


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Up:
    """`python -m cli up ...` in a subprocess, its output in a file."""

    def __init__(self, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.log_path = tmp_path / "up.log"
        environ = {k: v for k, v in os.environ.items() if k not in ("TELEGRAM_BOT_TOKEN", "LANDMARKS_INDEX_DIR")}
        environ.update(env or {})
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cli", "up", *args],
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environ,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, condition, what: str, timeout: float = START_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            if self.process.poll() is not None:
                pytest.fail(f"`landmarks up` exited with {self.process.returncode} before {what}:\n{self.log()}")
            time.sleep(0.3)
        pytest.fail(f"no {what} after {timeout}s:\n{self.log()}")

    def children(self, count: int) -> dict[int, str]:
        return self.wait_for(
            lambda: (found := children_of(self.process.pid)) and len(found) == count and found, f"{count} children", 60
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def up_runner(tmp_path):
    runs: list[Up] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Up:
        runs.append(Up(tmp_path, *args, env=env))
        return runs[-1]

    yield start
    for run in runs:  # a failed test must not leave servers behind (children die with their parent)
        run.stop()


class FakeTelegram(BaseHTTPRequestHandler):
    """Just enough of the Bot API for a bot to start polling."""

    calls: list[tuple[str, str]] = []
    BOT = {"id": 42, "is_bot": True, "first_name": "Test", "username": "test_bot"}

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        _, token, method = self.path.split("/", 2)
        self.calls.append((token.removeprefix("bot"), method))
        if method == "getUpdates":
            time.sleep(0.5)
        result = {"getMe": self.BOT, "getUpdates": []}.get(method, True)
        body = json.dumps({"ok": True, "result": result}).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the bot stopped mid-poll

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def telegram():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeTelegram)
    FakeTelegram.calls = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def test_up_serves_api_web_and_bot_and_stops_them_all_on_sigterm(up_runner, tmp_path, telegram):
    api_port, web_port = free_port(), free_port()
    index = tmp_path / "index"  # does not exist yet: a fresh machine
    token = "123456:fake-token-for-up"
    # The bot talks to a fake Telegram on loopback; the caller's LANDMARKS_API_URL must not leak through.
    up = up_runner(
        "--index",
        str(index),
        "--api-port",
        str(api_port),
        "--web-port",
        str(web_port),
        env={"TELEGRAM_BOT_TOKEN": token, "TELEGRAM_API_BASE": telegram, "LANDMARKS_API_URL": "http://elsewhere:1"},
    )
    api, web = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{web_port}"
    up.wait_for(lambda: answers(f"{web}/_stcore/health"), "web page health")
    up.wait_for(lambda: (token, "getUpdates") in FakeTelegram.calls, "the bot polling Telegram")
    up.wait_for(lambda: answers(f"{api}/ready"), "API ready")

    children = up.children(3)
    by_role = {}
    for pid, command in children.items():
        if " -m cli serve " in command:
            by_role["api"] = pid
            assert f"--port {api_port}" in command and str(index) in command, command
        elif " streamlit run " in command:
            by_role["web"] = pid
            assert "web/app.py" in command and f"--server.port {web_port}" in command, command
        elif command.split()[1:3] == ["-m", "bot"]:
            by_role["bot"] = pid
    assert set(by_role) == {"api", "web", "bot"}, children
    # The page and the bot find this API.
    assert environ_of(by_role["web"])["LANDMARKS_API_URL"] == api
    assert environ_of(by_role["bot"])["LANDMARKS_API_URL"] == api
    health = httpx.get(f"{api}/health", timeout=5).json()
    assert health["gallery_size"] == 0 and (index / "gallery.sqlite").is_file()
    # Where each listens, readiness, and plain words about the empty gallery.
    up.wait_for(lambda: "api ready" in up.log() and "web ready" in up.log(), "ready lines", 30)
    out = up.log()
    assert f"API http://127.0.0.1:{api_port}" in out and f"web http://127.0.0.1:{web_port}" in out
    assert "bot off" not in out
    assert "gallery is empty" in out and f"landmarks index build data/gallery --out {index}" in out

    up.process.send_signal(signal.SIGTERM)
    assert up.process.wait(timeout=STOP_TIMEOUT) == 0, up.log()
    assert not [pid for pid in children if alive(pid)], f"children left running:\n{up.log()}"
    assert not listening(api_port) and not listening(web_port)
    assert up.log().rstrip().endswith("Stopped.")
    assert "did not stop" not in up.log(), "a child ignored SIGTERM and had to be killed"


def test_up_stops_the_rest_and_fails_when_one_child_dies(up_runner, tmp_path):
    api_port, web_port = free_port(), free_port()
    # A token, but --no-bot: no bot process.
    up = up_runner(
        "--index",
        str(tmp_path / "index"),
        "--api-port",
        str(api_port),
        "--web-port",
        str(web_port),
        "--no-bot",
        env={"TELEGRAM_BOT_TOKEN": "123:not-used"},
    )
    up.wait_for(lambda: answers(f"http://127.0.0.1:{web_port}/_stcore/health"), "web page health")
    children = up.children(2)
    assert "bot off (--no-bot)" in up.log()
    api_pid = next(pid for pid, c in children.items() if " serve " in c)
    os.kill(api_pid, signal.SIGKILL)  # the API dies (here, while it may still be loading)

    code = up.process.wait(timeout=STOP_TIMEOUT)
    assert code != 0, up.log()
    assert not [pid for pid in children if alive(pid)], f"children left running:\n{up.log()}"
    assert not listening(web_port)
    assert "api exited" in up.log()


def test_up_refuses_a_busy_port_or_one_port_twice_before_starting_anything():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        started = time.monotonic()
        result = run_cli("up", "--api-port", str(port), "--no-bot", timeout=60)
        assert result.returncode == 2, result.stdout + result.stderr
        assert f"127.0.0.1:{port}" in result.stderr and "--api-port" in result.stderr
        assert time.monotonic() - started < 30, "it must fail before loading anything"
        assert "Landmark Search on this machine" not in result.stdout
    same = free_port()
    result = run_cli("up", "--api-port", str(same), "--web-port", str(same), timeout=60)
    assert result.returncode == 2 and "both" in result.stderr
