"""web.client against real sockets: how every way the API can fail maps to an error class.

The happy path and the 4xx answers run against the real API; failures the real API cannot be
made to produce on demand (a hang, a 5xx, a proxy's HTML error page) come from small local
servers that speak real HTTP.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from web.client import (
    ApiClientError,
    ApiServerError,
    ApiTimeout,
    ApiUnavailable,
    LandmarksClient,
)
from web.components import api_error_message

from tests.support import landmark_names
from tests.web.helpers import closed_port_url, dev_query


class _ScriptedHandler(BaseHTTPRequestHandler):
    """Answers GET /<status>?body=<kind> with that status: kind=json gives the API's documented
    error shape, kind=html what a reverse proxy sends."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        status = int(self.path.strip("/").split("?")[0])
        if "body=html" in self.path:
            body, ctype = b"<html><body>Bad Gateway</body></html>", "text/html"
        else:
            body, ctype = json.dumps({"detail": f"Scripted failure {status}."}).encode(), "application/json"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
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


def test_stopped_api_is_unavailable() -> None:
    url = closed_port_url()
    with pytest.raises(ApiUnavailable) as caught:
        LandmarksClient(url, timeout_s=5).health()
    assert url in api_error_message(caught.value, url)


def test_silent_api_times_out(silent_url: str) -> None:
    with pytest.raises(ApiTimeout):
        LandmarksClient(silent_url, timeout_s=0.5).health()


def test_server_errors_carry_the_detail(scripted_url: str) -> None:
    with pytest.raises(ApiServerError) as caught:
        LandmarksClient(scripted_url).image(f"{scripted_url}/500", 64)
    assert (caught.value.status, caught.value.detail) == (500, "Scripted failure 500.")
    assert "Scripted failure 500." in api_error_message(caught.value, scripted_url)


def test_loading_api_says_so(scripted_url: str) -> None:
    with pytest.raises(ApiServerError) as caught:
        LandmarksClient(scripted_url).image(f"{scripted_url}/503", 64)
    assert "still loading" in api_error_message(caught.value, scripted_url)


def test_non_json_error_page_still_reads(scripted_url: str) -> None:
    with pytest.raises(ApiServerError) as caught:
        LandmarksClient(scripted_url).image(f"{scripted_url}/502?body=html", 64)
    assert caught.value.detail == "Bad Gateway"


def test_not_an_image_is_a_client_error(api_server) -> None:
    client = LandmarksClient(api_server.url)
    with pytest.raises(ApiClientError) as caught:
        client.search(b"just some text, not a photo", "notes.txt", "text/plain", k=3)
    assert caught.value.status in (400, 415)
    assert caught.value.detail  # the API's own sentence, shown to the visitor


def test_k_out_of_range_is_a_client_error(api_server) -> None:
    path, _ = dev_query()
    with pytest.raises(ApiClientError) as caught:
        LandmarksClient(api_server.url).search(path.read_bytes(), path.name, "image/jpeg", k=0)
    assert caught.value.status == 422


def test_search_and_listing_parse(api_server) -> None:
    client = LandmarksClient(api_server.url)
    path, landmark_id = dev_query()
    result = client.search(path.read_bytes(), path.name, "image/jpeg", k=4)
    assert result.landmark is not None and result.landmark.landmark_id == landmark_id
    assert result.landmark.name == landmark_names()[landmark_id]
    assert 0.0 <= result.landmark.confidence <= 1.0
    assert len(result.matches) == 4
    # Matches come grouped by landmark, in the landmarks' rank order, best photo first in each group.
    rank = {lm.landmark_id: position for position, lm in enumerate(result.landmarks)}
    keys = [(rank[m.landmark_id], -m.score) for m in result.matches]
    assert keys == sorted(keys) and result.matches[0].landmark_id == landmark_id
    # The dev landmarks.csv gives every landmark coordinates, which the map needs.
    assert all(lm.has_coordinates and lm.place for lm in result.landmarks)

    listing = client.landmarks("")
    assert listing.total == len(listing.landmarks) == len(landmark_names())
    word = landmark_names()[landmark_id].split()[0].lower()
    filtered = client.landmarks(word)
    assert landmark_id in {lm.landmark_id for lm in filtered.landmarks}
    assert 0 < filtered.total < listing.total

    photo = client.image(result.matches[0].image_url, 64)
    assert photo[:3] == b"\xff\xd8\xff"  # a JPEG
