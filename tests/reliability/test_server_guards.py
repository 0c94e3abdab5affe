"""Per-client rate limiting (LANDMARKS_RATE_LIMIT), CORS closed by default, and a graceful shutdown,
on one real server: started with a rate limit and no CORS origin, and stopped by the last test with
SIGTERM while searches are in flight."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import time

import httpx
import pytest

from api.ratelimit import TokenBuckets, parse_rate
from landmarks.images import decode_image
from tests.support import ApiServer, dev_protocol

RATE = "20/minute"  # bursts of 20, then one request every 3 s


# --- the token buckets on their own ----------------------------------------------------------------
@pytest.mark.parametrize(
    "text,expected",
    [
        ("60/minute", (60, 60.0)),
        ("10/s", (10, 1.0)),
        ("1000/hour", (1000, 3600.0)),
        ("5/10s", (5, 10.0)),
        ("100/day", (100, 86400.0)),
        (" 3 / min ", (3, 60.0)),
        ("60/Minutes", (60, 60.0)),
    ],
)
def test_rates_are_parsed(text, expected):
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["", "60", "0/minute", "60/fortnight", "x/m", "5/ms", "-1/s", "1.5/s"])
def test_bad_rates_are_refused(text):
    with pytest.raises(ValueError, match="rate limit"):
        parse_rate(text)


def test_a_bucket_allows_a_burst_then_refills_at_the_rate():
    now = [1000.0]
    buckets = TokenBuckets(3, 6.0, clock=lambda: now[0])  # 3 per 6 s: one token every 2 s
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(2.0)
    assert buckets.take("b") == 0.0  # another client has its own bucket
    now[0] += 1.0
    assert buckets.take("a") == pytest.approx(1.0)  # refused requests do not spend tokens
    now[0] += 1.0
    assert buckets.take("a") == 0.0
    now[0] += 600
    assert [buckets.take("a") for _ in range(4)][-1] > 0  # refills up to the burst, not beyond


def test_the_number_of_tracked_clients_is_bounded():
    now = [0.0]
    buckets = TokenBuckets(1, 60.0, max_clients=100, clock=lambda: now[0])
    for number in range(1000):
        buckets.take(f"10.0.{number // 256}.{number % 256}")
    assert len(buckets._buckets) == 100
    assert buckets.take("10.0.3.231") > 0  # recently seen: still throttled
    assert buckets.take("10.0.0.1") == 0.0  # forgotten: a fresh bucket


# --- a real server with LANDMARKS_RATE_LIMIT ------------------------------------------------------
@pytest.fixture(scope="module")
def guarded_server(dev_index):
    """Read-only use of the dev index: rate limited, no CORS origin, default log level."""
    with ApiServer(dev_index, env={"LANDMARKS_RATE_LIMIT": RATE, "LANDMARKS_CORS_ORIGINS": ""}) as server:
        yield server


def client_from(address: str) -> httpx.Client:
    """A client whose connections come from `address` (any 127.x.y.z reaches the loopback server)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=60)


def test_a_client_over_its_rate_gets_429_with_retry_after(guarded_server):
    with client_from("127.0.0.11") as client:
        answers = [client.get(f"{guarded_server.url}/landmarks") for _ in range(25)]
        statuses = [answer.status_code for answer in answers]
        assert statuses[:20] == [200] * 20 and statuses[20:] == [429] * 5, statuses
        refused = answers[-1]
        assert refused.headers["content-type"] == "application/json"
        assert set(refused.json()) == {"detail"} and "Too many requests" in refused.json()["detail"]
        retry_after = int(refused.headers["retry-after"])
        assert 1 <= retry_after <= 3
        # the probes an orchestrator polls are never limited
        assert client.get(f"{guarded_server.url}/health").status_code == 200
        assert client.get(f"{guarded_server.url}/ready").status_code == 200
        # and the limit is per client: another address is served meanwhile
        with client_from("127.0.0.12") as other:
            assert other.get(f"{guarded_server.url}/landmarks").status_code == 200
        # once Retry-After has passed, the client is served again
        time.sleep(retry_after + 0.2)
        assert client.get(f"{guarded_server.url}/landmarks").status_code == 200
        assert client.get(f"{guarded_server.url}/landmarks").status_code == 429


def test_searches_count_against_the_rate_too(guarded_server):
    photo = dev_protocol().queries[0][0].read_bytes()
    with client_from("127.0.0.13") as client:
        for _ in range(20):
            client.get(f"{guarded_server.url}/landmarks?q=zz")
        response = client.post(f"{guarded_server.url}/search", files={"image": ("q.jpg", photo, "image/jpeg")})
        assert response.status_code == 429 and response.headers["retry-after"].isdigit()


def test_a_forwarded_for_header_does_not_buy_a_fresh_bucket(guarded_server):
    """Without LANDMARKS_TRUSTED_PROXIES no client may name its own address for the rate limit."""
    with client_from("127.0.0.16") as client:
        for _ in range(20):
            client.get(f"{guarded_server.url}/landmarks?q=zz")
        spoofed = [
            client.get(f"{guarded_server.url}/landmarks", headers={"X-Forwarded-For": f"10.1.0.{n}"}).status_code
            for n in range(10)
        ]
    assert spoofed == [429] * 10, spoofed


# --- CORS: closed unless origins are configured ----------------------------------------------------
def test_cors_is_closed_by_default(guarded_server):
    origin = {"Origin": "https://somewhere.example"}
    with client_from("127.0.0.14") as client:
        simple = client.get(f"{guarded_server.url}/landmarks", headers=origin)
        assert simple.status_code == 200
        assert not any(name.startswith("access-control-") for name in simple.headers), dict(simple.headers)
        preflight = client.options(
            f"{guarded_server.url}/search",
            headers={
                **origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert preflight.status_code >= 400
        assert not any(name.startswith("access-control-") for name in preflight.headers), dict(preflight.headers)


# --- graceful shutdown: last, it stops the module's server -----------------------------------------
def slow_photo(path, side: int = 2400) -> bytes:
    """A dev query photo enlarged, so that decoding and resizing keep it in flight a while."""
    photo = decode_image(path).resize((side, side * 3 // 4))
    out = io.BytesIO()
    photo.save(out, format="JPEG", quality=95)
    return out.getvalue()


def trickled_upload(photo: bytes, seconds: float, pieces: int = 6) -> tuple[dict, object]:
    """A multipart search body sent in pieces over `seconds`: certainly in flight mid-way."""
    boundary = "reliability-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="slow.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    size = -(-len(photo) // pieces)

    async def body():
        yield head
        for start in range(0, len(photo), size):
            await asyncio.sleep(seconds / pieces)
            yield photo[start : start + size]
        yield tail

    return {"content-type": f"multipart/form-data; boundary={boundary}"}, body()


def test_sigterm_lets_in_flight_searches_finish_and_exits_cleanly(guarded_server):
    """Three searches still uploading and three just sent when SIGTERM comes: all six are answered
    in full, then the process exits with status 0 and stops listening."""
    photos = [slow_photo(path) for path, _ in dev_protocol().queries[:6]]
    process = guarded_server.process
    url = f"{guarded_server.url}/search"

    async def scenario():
        transport = httpx.AsyncHTTPTransport(local_address="127.0.0.15")
        async with httpx.AsyncClient(transport=transport, timeout=120) as client:
            uploading = []
            for photo in photos[:3]:
                headers, body = trickled_upload(photo, seconds=3.0)
                uploading.append(asyncio.create_task(client.post(url, headers=headers, content=body)))
            await asyncio.sleep(0.8)
            sent = [
                asyncio.create_task(client.post(url, files={"image": ("big.jpg", photo, "image/jpeg")}))
                for photo in photos[3:]
            ]
            await asyncio.sleep(0.2)
            assert not any(task.done() for task in uploading), [task.result() for task in uploading if task.done()]
            os.kill(process.pid, signal.SIGTERM)
            return await asyncio.gather(*uploading, *sent, return_exceptions=True)

    answers = asyncio.run(scenario())
    problems = [
        repr(answer) if isinstance(answer, Exception) else f"{answer.status_code}: {answer.text[:200]}"
        for answer in answers
        if isinstance(answer, Exception) or answer.status_code != 200
    ]
    assert not problems, f"in-flight searches lost on SIGTERM: {problems}\n{guarded_server.log()[-3000:]}"
    assert all(answer.json()["matches"] for answer in answers)
    returncode = process.wait(timeout=60)
    assert returncode == 0, f"exit status {returncode} after SIGTERM\n{guarded_server.log()[-3000:]}"
    with pytest.raises(httpx.ConnectError):  # and it is gone: nothing listens any more
        httpx.get(f"{guarded_server.url}/health", timeout=5)
