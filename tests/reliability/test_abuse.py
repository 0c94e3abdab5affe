"""No cheap request exhausts the service: slow or stalled connections, floods of idle connections,
and small uploads that declare huge images, against a real `landmarks serve` (Lite0, small index)
with short connection deadlines so that the tests finish quickly."""

from __future__ import annotations

import asyncio
import io
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.reliability.conftest import copy_index
from tests.support import ApiServer, dev_protocol, wait_for_ok

KEY = "reliability-abuse-key"
HEADER_TIMEOUT = 3
BODY_TIMEOUT = 3
MAX_CONNECTIONS = 3500  # above the flood below, which the deadlines shed; the cap test goes past it


@pytest.fixture(scope="module")
def abuse_server(lite_index, tmp_path_factory):
    index = copy_index(lite_index, tmp_path_factory.mktemp("abuse") / "index")
    env = {
        "LANDMARKS_API_KEY": KEY,
        "LANDMARKS_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
        "LANDMARKS_BODY_TIMEOUT": str(BODY_TIMEOUT),
        "LANDMARKS_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
    }
    with ApiServer(index, env=env) as server:
        yield server


def closed_within(sock: socket.socket, seconds: float, trickle: bytes = b"") -> float | None:
    """Seconds until the server closes SOCK (sending TRICKLE a byte at a time meanwhile), or None."""
    started = time.monotonic()
    sock.settimeout(0.5)
    position = 0
    while time.monotonic() - started < seconds:
        if position < len(trickle):
            try:
                sock.send(trickle[position : position + 1])
            except OSError:
                return time.monotonic() - started
            position += 1
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - started
    return None


def test_headers_trickled_a_byte_at_a_time_are_dropped_at_the_deadline(abuse_server):
    with socket.create_connection(("127.0.0.1", abuse_server.port)) as sock:
        trickle = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 200
        closed = closed_within(sock, HEADER_TIMEOUT + 10, trickle)
    assert closed is not None and closed < HEADER_TIMEOUT + 2.5, closed


def test_a_stalled_body_is_dropped(abuse_server):
    with socket.create_connection(("127.0.0.1", abuse_server.port)) as sock:
        sock.sendall(
            b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 100000\r\n\r\n--b\r\n"
        )
        closed = closed_within(sock, BODY_TIMEOUT + 10)
    assert closed is not None and closed < BODY_TIMEOUT + 2.5, closed


async def slow_flood(port: int, seconds: float, connections: int, stop: asyncio.Event) -> int:
    """Keep CONNECTIONS half-sent requests open for SECONDS, reopening any the server drops."""
    opened = 0

    async def one() -> None:
        nonlocal opened
        while not stop.is_set():
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            opened += 1
            try:
                writer.write(b"POST /search HTTP/1.1\r\nHost: x\r\n")  # then a byte every 2 s
                while not stop.is_set() and not writer.is_closing():
                    await asyncio.sleep(2.0)
                    writer.write(b"X")
                    await writer.drain()
            except OSError:
                pass
            finally:
                writer.close()
            await asyncio.sleep(0.05)

    tasks = [asyncio.create_task(one()) for _ in range(connections)]
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return opened


def test_thousands_of_slow_connections_leave_health_answering(abuse_server):
    log_before = abuse_server.log_path.stat().st_size

    timings: list[tuple[int, float]] = []
    polling = threading.Event()

    def poll_health() -> None:
        # Its own thread and connections: the flood's 3,000 tasks on the test's event loop must not
        # delay the probe's own requests.
        while not polling.wait(0.3):
            started = time.monotonic()
            try:
                status = httpx.get(f"{abuse_server.url}/health", timeout=10).status_code
            except httpx.HTTPError as exc:
                status = repr(exc)
            timings.append((status, time.monotonic() - started))

    async def scenario():
        stop = asyncio.Event()
        flood = asyncio.create_task(slow_flood(abuse_server.port, 15, 3000, stop))
        await asyncio.sleep(2)  # the flood is in full swing
        poller = threading.Thread(target=poll_health)
        poller.start()
        opened = await flood
        polling.set()
        poller.join()
        return opened, timings

    opened, timings = asyncio.run(scenario())
    assert opened >= 3000 and len(timings) >= 10, (opened, len(timings))
    print(f"/health during the flood: {len(timings)} probes, slowest {max(t for _, t in timings):.2f} s")
    slow = [timing for timing in timings if timing[0] != 200 or timing[1] > 2.0]
    assert not slow, f"/health during the flood: {slow} of {len(timings)}"
    assert wait_for_ok(f"{abuse_server.url}/health", 10), "/health not answering 10 s after the flood"
    assert abuse_server.process.poll() is None
    assert abuse_server.log_path.stat().st_size - log_before < 64 * 1024, "the flood filled the log"


def test_connections_past_the_cap_get_a_quick_503(abuse_server):
    async def scenario():
        held = []
        for _ in range(MAX_CONNECTIONS + 100):
            held.append(await asyncio.open_connection("127.0.0.1", abuse_server.port))
        answers = []
        for reader, _ in held[-50:]:
            try:
                answers.append(await asyncio.wait_for(reader.read(4096), 5))
            except (TimeoutError, OSError) as exc:
                answers.append(repr(exc).encode())
        for _, writer in held:
            writer.close()
        return answers

    started = time.monotonic()
    answers = asyncio.run(scenario())
    assert all(answer.startswith(b"HTTP/1.1 503") and b"too many open connections" in answer for answer in answers), (
        answers[:3]
    )
    assert time.monotonic() - started < 30
    deadline = time.monotonic() + 10
    while httpx.get(f"{abuse_server.url}/health", timeout=5).status_code != 200:
        assert time.monotonic() < deadline


def huge_image(format: str, side: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (side, side), (90, 140, 200)).save(
        out, format=format, **({"quality": 10} if format == "WEBP" else {})
    )
    return out.getvalue()


def peak_growth_mb(pid: int, action) -> float:
    """Peak resident memory of PID during ACTION above its resident memory before it, in MiB."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS

    def field(name: str) -> float:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name):
                return int(line.split()[1]) / 1024
        raise RuntimeError(name)

    before = field("VmRSS:")
    action()
    return field("VmHWM:") - before


def test_small_uploads_declaring_huge_images_share_one_decode_budget(abuse_server):
    webp = huge_image("WEBP", 6000)
    assert len(webp) < 200 * 1024  # the attack: a small file, 36 MP of pixels

    async def eight_searches():
        async with httpx.AsyncClient(timeout=180) as client:
            return await asyncio.gather(
                *(
                    client.post(f"{abuse_server.url}/search", files={"image": ("x.webp", webp, "image/webp")})
                    for _ in range(8)
                )
            )

    answers = []
    growth = peak_growth_mb(abuse_server.process.pid, lambda: answers.extend(asyncio.run(eight_searches())))
    assert [answer.status_code for answer in answers] == [200] * 8, [answer.text[:200] for answer in answers]
    print(f"8 WebP searches: peak RSS growth {growth:.0f} MiB")
    assert growth < 1024, f"8 concurrent 6000x6000 WebP searches grew peak RSS by {growth:.0f} MiB"


def test_a_batch_upload_decodes_one_photo_at_a_time(abuse_server):
    url = abuse_server.url
    headers = {"X-API-Key": KEY}
    assert (
        httpx.post(f"{url}/landmarks", headers=headers, json={"landmark_id": "huge", "name": "Huge"}).status_code == 201
    )
    base = huge_image("PNG", 6300)
    # ten different photos (a different corner pixel each), each 39.7 MP
    photos = []
    for number in range(10):
        image = Image.open(io.BytesIO(base)).convert("RGB")
        image.putpixel((number, 0), (number, number, number))
        out = io.BytesIO()
        image.save(out, format="PNG")
        photos.append(out.getvalue())
    files = [("images", (f"{n}.png", data, "image/png")) for n, data in enumerate(photos)]
    answers = []
    growth = peak_growth_mb(
        abuse_server.process.pid,
        lambda: answers.append(httpx.post(f"{url}/landmarks/huge/images", headers=headers, files=files, timeout=300)),
    )
    assert answers[0].status_code == 201 and len(answers[0].json()["added"]) == 10, answers[0].text[:300]
    print(f"10-PNG upload: peak RSS growth {growth:.0f} MiB")
    assert growth < 1024, f"one upload of 10 x 6300x6300 PNGs grew peak RSS by {growth:.0f} MiB"


def test_searches_still_answer_right_after_the_abuse(abuse_server):
    path, label = dev_protocol().queries[0]
    answer = httpx.post(
        f"{abuse_server.url}/search", files={"image": ("q.jpg", path.read_bytes(), "image/jpeg")}, timeout=60
    )
    assert answer.status_code == 200 and answer.json()["landmarks"][0]["landmark_id"] == label, answer.text[:300]
