"""Client test fixtures: either client behind one blocking interface, a write-enabled real API, and
small local servers for the failures the real API cannot be made to produce on demand."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from client import AsyncLandmarksClient, LandmarksClient
from tests.support import ApiServer

API_KEY = "client-test-key"
# The Retry-After the scripted server advises with 429 and 503.
RETRY_AFTER_S = 7
# How long a scripted search takes: long enough for concurrent ones to overlap.
SEARCH_S = 0.5


class Blocking:
    """The sync or the async client behind blocking calls, so that one test covers both. The async
    client runs each call in its own event loop, opened and closed around it."""

    def __init__(self, kind: str, base_url: str, **options: Any) -> None:
        self.kind = kind
        self.base_url = base_url
        self.options = options

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if self.kind == "sync":
                with LandmarksClient(self.base_url, **self.options) as api:
                    return getattr(api, name)(*args, **kwargs)

            async def run() -> Any:
                async with AsyncLandmarksClient(self.base_url, **self.options) as api:
                    return await getattr(api, name)(*args, **kwargs)

            return asyncio.run(run())

        return call


@pytest.fixture(params=["sync", "async"])
def connect(request) -> Callable[..., Blocking]:
    """connect(url, **options): the client under test (each test runs once per client)."""
    return lambda base_url, **options: Blocking(request.param, base_url, **options)


@pytest.fixture(scope="session")
def write_api(dev_index, tmp_path_factory) -> Iterator[ApiServer]:
    """The real API over a copy of the dev index (the write tests change the gallery), with a key."""
    copy = tmp_path_factory.mktemp("client-writes") / "index"
    shutil.copytree(dev_index, copy)
    with ApiServer(copy, env={"LANDMARKS_API_KEY": API_KEY}) as server:
        yield server


class ScriptedServer(ThreadingHTTPServer):
    """Real HTTP on loopback, scripted by `_ScriptedHandler`; counts the searches in flight."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ScriptedHandler)
        self.lock = threading.Lock()
        self.searches_in_flight = 0
        self.most_searches_at_once = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ScriptedHandler(BaseHTTPRequestHandler):
    """GET /<status> answers with that status and the API's documented error body (`?body=html`:
    a reverse proxy's HTML page instead); 429 and 503 advise a Retry-After. GET /health answers 200
    with a body that is not JSON. POST /search takes SEARCH_S and answers an empty gallery's result."""

    server: ScriptedServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?")[0].strip("/")
        status = 200 if path == "health" else int(path)
        if path == "health" or "body=html" in self.path:
            body, ctype = b"<html><body>Bad Gateway</body></html>", "text/html"
        else:
            body, ctype = json.dumps({"detail": f"Scripted failure {status}."}).encode(), "application/json"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if status in (429, 503):
            self.send_header("Retry-After", str(RETRY_AFTER_S))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.lock:
            self.server.searches_in_flight += 1
            self.server.most_searches_at_once = max(self.server.most_searches_at_once, self.server.searches_in_flight)
        time.sleep(SEARCH_S)
        with self.server.lock:
            self.server.searches_in_flight -= 1
        body = json.dumps({"landmark": None, "landmarks": [], "matches": [], "gallery_size": 0}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A server that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()
