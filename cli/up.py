"""`landmarks up`: the whole product on this machine, without Docker.

Runs the HTTP API (`landmarks serve`), the web page (`streamlit run web/app.py`) and, when
TELEGRAM_BOT_TOKEN is set, the Telegram bot (`python -m bot`) as child processes, each with the
settings that make them talk to one another. It prints where each one listens, prefixes their
output with their name, stops them all on Ctrl-C or SIGTERM, and exits non-zero when one of them
dies on its own (after stopping the others).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

DEFAULT_API_PORT = 8000
DEFAULT_WEB_PORT = 8501
STOP_TIMEOUT = 15.0  # seconds a child gets to stop after SIGTERM before it is killed
WILDCARD_HOSTS = {"0.0.0.0", "::", ""}


def register(commands) -> None:
    up = commands.add_parser(
        "up",
        help="run the API and the web page (and the Telegram bot) on this machine",
        description="Run the API and the web page on this machine, and the Telegram bot too when "
        "TELEGRAM_BOT_TOKEN is set. Ctrl-C stops everything.",
    )
    up.add_argument(
        "--index", type=Path, default=None, metavar="INDEX_DIR", help="default: data/index (or LANDMARKS_INDEX_DIR)"
    )
    up.add_argument(
        "--host",
        default="127.0.0.1",
        help="address the API and the web page listen on (default: 127.0.0.1; 0.0.0.0 for every interface)",
    )
    up.add_argument(
        "--api-port", type=int, default=DEFAULT_API_PORT, metavar="PORT", help=f"default: {DEFAULT_API_PORT}"
    )
    up.add_argument(
        "--web-port", type=int, default=DEFAULT_WEB_PORT, metavar="PORT", help=f"default: {DEFAULT_WEB_PORT}"
    )
    up.add_argument("--no-web", action="store_true", help="do not start the web page")
    up.add_argument(
        "--no-bot", action="store_true", help="do not start the Telegram bot, even with TELEGRAM_BOT_TOKEN set"
    )
    up.set_defaults(func=run)


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    url: str | None = None  # where people reach it, printed at start
    ready_url: str | None = None  # answers 200 once it is usable
    process: subprocess.Popen | None = field(default=None, repr=False)


def _browser_host(host: str) -> str:
    """The host to put in a URL: loopback for a wildcard bind, IPv6 in brackets."""
    if host in WILDCARD_HOSTS:
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _check_port(host: str, port: int, flag: str) -> None:
    from cli import CommandError

    if not 0 < port < 65536:
        raise CommandError(f"{flag} {port} is not a port number (1..65535)")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise CommandError(
                f"cannot listen on {host}:{port} ({exc.strerror or exc}); is `landmarks up` already running? Pick another port with {flag}"
            ) from None


def _require(modules: tuple[str, ...], what: str, fix: str) -> None:
    from cli import CommandError

    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise CommandError(f"{what} needs {', '.join(missing)}, which is not installed in this environment: {fix}")


def _web_app() -> Path:
    from cli import CommandError

    spec = importlib.util.find_spec("web")
    app = Path(spec.origin).parent / "app.py" if spec and spec.origin else None
    if app is None or not app.is_file():
        raise CommandError("the web page (web/app.py) is not in this checkout; pass --no-web to run without it")
    return app


def plan(args) -> tuple[list[Child], Path]:
    """What to run and the index it serves, after checking that it can run: a failure here starts nothing."""
    from cli import CommandError

    index = args.index or args.settings.index_dir
    web = not args.no_web
    token = os.environ.get("TELEGRAM_BOT_TOKEN", "").strip()
    bot = bool(token) and not args.no_bot
    if web and args.api_port == args.web_port:
        raise CommandError(f"--api-port and --web-port are both {args.api_port}")

    _require(("torch", "faiss", "fastapi", "uvicorn"), "the API", "run `uv sync` (all groups) or `uv sync --group api`")
    if web:
        _require(("streamlit",), "the web page", "run `uv sync` or `uv sync --group web`, or pass --no-web")
        app = _web_app()
    if bot:
        _require(("aiogram",), "the Telegram bot", "run `uv sync` or `uv sync --group bot`, or pass --no-bot")
    _check_port(args.host, args.api_port, "--api-port")
    if web:
        _check_port(args.host, args.web_port, "--web-port")

    host = _browser_host(args.host)
    api_url = f"http://{host}:{args.api_port}"
    base_env = {"PYTHONUNBUFFERED": "1"}
    log_level = ["--log-level", args.log_level] if getattr(args, "log_level", None) else []
    children = [
        Child(
            "api",
            [
                sys.executable,
                "-m",
                "cli",
                *log_level,
                "serve",
                "--index",
                str(index),
                "--host",
                args.host,
                "--port",
                str(args.api_port),
            ],
            base_env,
            url=api_url,
            ready_url=f"{api_url}/ready",
        )
    ]
    # The web page and the bot find the API through LANDMARKS_API_URL: point them at this one.
    if web:
        web_url = f"http://{host}:{args.web_port}"
        children.append(
            Child(
                "web",
                [
                    sys.executable,
                    "-m",
                    "streamlit",
                    "run",
                    str(app),
                    "--server.address",
                    args.host,
                    "--server.port",
                    str(args.web_port),
                    "--server.headless",
                    "true",
                    "--server.fileWatcherType",
                    "none",
                    "--browser.gatherUsageStats",
                    "false",
                ],
                {**base_env, "LANDMARKS_API_URL": api_url},
                url=web_url,
                ready_url=f"{web_url}/_stcore/health",
            )
        )
    if bot:
        children.append(Child("bot", [sys.executable, "-m", "bot"], {**base_env, "LANDMARKS_API_URL": api_url}))
    return children, index


class Console:
    """One writer for our lines and the children's, so lines never interleave mid-way."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.lock = threading.Lock()

    def say(self, text: str) -> None:
        with self.lock:
            try:
                self.out.write(text if text.endswith("\n") else text + "\n")
                self.out.flush()
            except (OSError, ValueError):
                pass

    def relay(self, name: str, stream: IO[str]) -> None:
        for line in stream:
            self.say(f"{name} | {line.rstrip()}")


def _die_with_parent() -> None:
    """Runs in each child before exec: SIGTERM it if `landmarks up` itself is killed (Linux only)."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _load_prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def _watch_ready(child: Child, console: Console, stop: threading.Event, index: Path) -> None:
    """Announce when a child starts answering; for the API, say plainly when its gallery is empty."""
    while not stop.is_set() and child.process and child.process.poll() is None:
        try:
            status, _ = _get(child.ready_url)
        except (OSError, ValueError):
            status = 0
        if status == 200:
            break
        stop.wait(0.5)
    else:
        return
    line = f"{child.name} ready: {child.url}"
    if child.name != "api":
        console.say(line)
        return
    try:
        import json

        health = json.loads(_get(f"{child.url}/health")[1] or b"{}")
    except (OSError, ValueError):
        health = {}
    size = health.get("gallery_size")
    console.say(
        f"{line} (docs {child.url}/docs; {size if size is not None else '?'} gallery photos, {health.get('device', '?')})"
    )
    if size == 0:
        console.say(
            "The gallery is empty, so searches match nothing yet. To get one: put photos in "
            "data/gallery/<landmark_id>/*.jpg (or make a gallery from Google Landmarks v2: `landmarks data gldv2 --help`), "
            f"run `landmarks index build data/gallery --out {index}`, and start `landmarks up` again."
        )


def _stop(children: list[Child], console: Console) -> None:
    alive = [c for c in children if c.process and c.process.poll() is None]
    for child in alive:
        try:
            child.process.terminate()
        except OSError:
            pass
    deadline = time.monotonic() + STOP_TIMEOUT
    for child in alive:
        try:
            child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            console.say(f"{child.name} did not stop within {STOP_TIMEOUT:g}s; killing it")
            child.process.kill()
            child.process.wait()


def run(args) -> int:
    children, index = plan(args)
    console = Console(sys.stdout)

    console.say("Landmark Search on this machine (Ctrl-C stops everything):")
    for child in children:
        label = {"api": "API", "web": "web", "bot": "bot"}[child.name]
        detail = f"  (index {index})" if child.name == "api" else ""
        console.say(f"  {label:<4}{child.url or 'running (Telegram, polling)'}{detail}")
    if not any(c.name == "bot" for c in children):
        why = (
            "--no-bot"
            if args.no_bot and os.environ.get("TELEGRAM_BOT_TOKEN", "").strip()
            else "set TELEGRAM_BOT_TOKEN to run the Telegram bot too"
        )
        console.say(f"  bot off ({why})")

    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum, _frame) -> None:
        received.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    died: Child | None = None
    relays: list[threading.Thread] = []
    try:
        # Start every process first, then the threads: forking while threads run is best avoided.
        for child in children:
            child.process = subprocess.Popen(
                child.argv,
                env={**os.environ, **child.env},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                encoding="utf-8",
                errors="replace",
                bufsize=1,
                preexec_fn=_die_with_parent if _PRCTL is not None else None,
            )
        relays = [
            threading.Thread(target=console.relay, args=(c.name, c.process.stdout), daemon=True) for c in children
        ]
        watchers = [
            threading.Thread(target=_watch_ready, args=(c, console, stop, index), daemon=True)
            for c in children
            if c.ready_url
        ]
        for thread in relays + watchers:
            thread.start()
        while died is None and not stop.wait(0.2):
            died = next((c for c in children if c.process.poll() is not None), None)
    finally:
        stop.set()
        _stop(children, console)
        for thread in relays:  # the children's last words, before ours
            thread.join(timeout=2)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if died is not None and not received:
        code = died.process.returncode
        console.say(f"{died.name} exited with code {code}; stopped the others.")
        return code if code and code > 0 else 1
    console.say("Stopped.")
    return 0
