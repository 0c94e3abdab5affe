"""On the reliability server (debug logging, an API key, a bot token and a webhook secret in its
environment, one CORS origin): no secret ever reaches the log, CORS answers only the configured
origin, and without LANDMARKS_RATE_LIMIT nobody is throttled."""

from __future__ import annotations

import io
import json
import urllib.parse

import httpx
from PIL import Image

from tests.reliability.conftest import ALLOWED_ORIGIN
from tests.support import dev_protocol


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (40, 30), (200, 10, 10, 128)).save(out, format="PNG")
    return out.getvalue()


def test_no_secret_reaches_the_log_at_debug_level(reliable_server, secrets_in_env):
    url, key = reliable_server.url, secrets_in_env["LANDMARKS_API_KEY"]
    auth = {"X-API-Key": key}
    photo = dev_protocol().queries[0][0].read_bytes()
    # Every path that might log a request, its headers, a key or a failure, with the key on it.
    requests = [
        ("POST", "/landmarks", dict(json={"landmark_id": "log-probe", "name": "Log probe", "city": "Nowhere"})),
        ("POST", "/landmarks", dict(json={"landmark_id": "log-probe", "name": "Again"})),  # 409
        ("POST", "/landmarks", dict(content=b"{not json", headers={"content-type": "application/json"})),  # 422
        (
            "POST",
            "/landmarks/log-probe/images",
            dict(files=[("images", ("a.jpg", photo, "image/jpeg")), ("images", ("bad.png", b"nope", "image/png"))]),
        ),
        ("POST", "/landmarks/log-probe/images", dict(files=[("images", ("bad.png", b"nope", "image/png"))])),  # 400
        ("POST", "/search", dict(files={"image": ("a.png", png(), "image/png")})),
        ("POST", "/search", dict(files={"image": ("a.jpg", b"\xff\xd8broken", "image/jpeg")})),
        ("POST", "/index/reload", {}),
        ("DELETE", "/landmarks/log-probe", {}),
        ("DELETE", "/gallery/99999999", {}),
        ("GET", "/gallery/1?size=64", {}),
    ]
    statuses = []
    for method, path, options in requests:
        headers = {**auth, **options.pop("headers", {})}
        statuses.append(httpx.request(method, url + path, headers=headers, timeout=120, **options).status_code)
    assert statuses[:2] == [201, 409] and statuses[7] == 200, statuses  # the writes really ran
    httpx.post(f"{url}/landmarks", headers={"X-API-Key": key + "x"}, json={"landmark_id": "x", "name": "x"}, timeout=30)

    log = reliable_server.log()
    lines = [line for line in log.splitlines() if line.startswith("{")]
    assert any(json.loads(line)["level"] == "debug" for line in lines), (
        "debug logging is not on: the test proves nothing"
    )
    for name, secret in secrets_in_env.items():
        for form in {secret, urllib.parse.quote(secret), secret.encode().hex()}:
            assert form not in log, f"{name} appears in the server log"
        # nor a recognisable part of it (at least a third of its characters in a row)
        third = len(secret) // 3
        assert not any(secret[start : start + third] in log for start in range(len(secret) - third)), name


def test_cors_answers_the_configured_origin_only(reliable_server):
    url = f"{reliable_server.url}/landmarks"
    allowed = httpx.get(url, headers={"Origin": ALLOWED_ORIGIN}, timeout=30)
    assert allowed.status_code == 200 and allowed.headers.get("access-control-allow-origin") == ALLOWED_ORIGIN
    other = httpx.get(url, headers={"Origin": "https://evil.example"}, timeout=30)
    assert other.status_code == 200 and "access-control-allow-origin" not in other.headers
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    ok = httpx.options(f"{reliable_server.url}/search", headers={"Origin": ALLOWED_ORIGIN, **preflight}, timeout=30)
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "POST" in ok.headers["access-control-allow-methods"]
    refused = httpx.options(
        f"{reliable_server.url}/search", headers={"Origin": "https://evil.example", **preflight}, timeout=30
    )
    assert refused.status_code >= 400 and "access-control-allow-origin" not in refused.headers


def test_without_a_rate_limit_nobody_is_throttled(reliable_server):
    with httpx.Client(timeout=30) as client:
        statuses = {client.get(f"{reliable_server.url}/landmarks", params={"q": "zz"}).status_code for _ in range(80)}
    assert statuses == {200}
