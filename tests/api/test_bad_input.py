"""Every kind of bad request gets a clear 4xx JSON error, and the service keeps serving."""

from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image

from tests.engine.test_images import huge_png_header
from tests.support import dev_protocol


def good_request(url: str) -> None:
    path = dev_protocol().queries[0][0]
    response = httpx.post(f"{url}/search", files={"image": (path.name, path.read_bytes(), "image/jpeg")}, timeout=60)
    assert response.status_code == 200
    assert response.json()["matches"]


def truncated_jpeg() -> bytes:
    data = dev_protocol().queries[0][0].read_bytes()
    return data[: len(data) // 2]


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height)).save(out, format="PNG")
    return out.getvalue()


CASES = {
    "no file": (dict(data={"note": "hello"}), 422, "field named 'image'"),
    "wrong field name": (dict(files={"photo": ("a.jpg", b"123", "image/jpeg")}), 422, "field named 'image'"),
    "not multipart": (dict(content=b"just bytes", headers={"content-type": "image/jpeg"}), 422, "image"),
    "empty file": (dict(files={"image": ("a.jpg", b"", "image/jpeg")}), 400, "empty"),
    "not an image": (dict(files={"image": ("a.pdf", b"%PDF-1.7 hello", "application/pdf")}), 415, "not an image"),
    "truncated image": (lambda: dict(files={"image": ("a.jpg", truncated_jpeg(), "image/jpeg")}), 400, "truncated"),
    "decompression bomb": (
        dict(files={"image": ("a.png", huge_png_header(60_000, 60_000), "image/png")}),
        413,
        "pixels",
    ),
    "body over the limit": (dict(files={"image": ("a.jpg", b"\xff" * (16 * 1024 * 1024), "image/jpeg")}), 413, "limit"),
    "k too small": (lambda: dict(params={"k": 0}, files={"image": ("a.png", png(32, 32), "image/png")}), 422, "k"),
    "k too large": (lambda: dict(params={"k": 101}, files={"image": ("a.png", png(32, 32), "image/png")}), 422, "k"),
    "k not a number": (
        lambda: dict(params={"k": "many"}, files={"image": ("a.png", png(32, 32), "image/png")}),
        422,
        "k",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gets_a_clear_4xx_and_the_service_keeps_serving(api_server, case):
    request, status, phrase = CASES[case]
    kwargs = request() if callable(request) else request
    response = httpx.post(f"{api_server.url}/search", timeout=60, **kwargs)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and phrase.lower() in detail.lower()
    good_request(api_server.url)


def test_a_tiny_but_valid_image_is_answered(api_server):
    response = httpx.post(f"{api_server.url}/search", files={"image": ("a.png", png(1, 1), "image/png")}, timeout=60)
    assert response.status_code == 200
