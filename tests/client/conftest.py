"""Client test fixtures: either client behind one blocking interface, a write-enabled real API, and
small local servers for the failures the real API cannot be made to produce on demand."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from client import AsyncLandmarksClient, LandmarksClient
from tests.support import ApiServer

API_KEY = "client-test-key"
# The Retry-After the scripted server advises with 429 and 503.
RETRY_AFTER_S = 7


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


class _ScriptedHandler(BaseHTTPRequestHandler):
    """GET /<status> answers with that status and the API's documented error body (`?body=html`:
    a reverse proxy's HTML page instead); 429 and 503 advise a Retry-After. GET /health answers 200
    with a body that is not JSON."""

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

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def scripted_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ScriptedHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
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
