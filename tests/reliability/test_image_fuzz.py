"""Hostile and unusual photos through the real HTTP API: random bytes; truncated or corrupted JPEG,
PNG, WebP, GIF, TIFF, HEIC; huge declared dimensions; CMYK, 16-bit, palette, alpha, animated images;
every EXIF orientation. Each gets a 4xx or a correct answer, never a 5xx or a hang, and the server's
memory stays within a budget proportional to the pixel limit (peak RSS measured per request from
/proc, after resetting the high-water mark through /proc/<pid>/clear_refs).
"""

from __future__ import annotations

import contextlib
import gc
import io
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from api.settings import Settings
from landmarks.images import decode_image
from tests.reliability.conftest import rss_mb
from tests.support import REPO_ROOT, dev_protocol

MAX_PIXELS = Settings.from_env().max_pixels  # what the server uses too (LANDMARKS_MAX_PIXELS, default 40 MP)
MiB = 1024 * 1024
FUZZ = settings(deadline=None, suppress_health_check=list(HealthCheck))
ERROR_STATUSES = {400, 413, 415}


# --- the server's memory -------------------------------------------------------------------------
class Memory:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.baseline = rss_mb(pid)

    def _field(self, name: str) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(name)

    @contextlib.contextmanager
    def peak(self):
        """Yields a dict whose "mb" is, afterwards, the request's peak RSS over the RSS before it."""
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        before = self._field("VmRSS")
        box = {"mb": 0.0}
        yield box
        box["mb"] = self._field("VmHWM") - before


@pytest.fixture(scope="module")
def memory(reliable_server) -> Memory:
    # The first large decode of each format pays one-off costs (codec state, a worker thread's
    # malloc arena) that are no request's steady-state footprint: pay them before measuring.
    for declaring, _ in DECLARING.values():
        search(reliable_server.url, declaring(2000, 1000), "warm-up")
    return Memory(reliable_server.process.pid)


# --- requests and answers ------------------------------------------------------------------------
def search(url: str, data: bytes, name: str = "photo", k: int = 5) -> httpx.Response:
    return httpx.post(
        f"{url}/search", params={"k": k}, files={"image": (name, data, "application/octet-stream")}, timeout=90
    )


def check_answer(response: httpx.Response, *, k: int = 5) -> dict:
    """A 4xx with a readable sentence, or a search answer that follows the contract."""
    assert response.status_code in ERROR_STATUSES | {200}, f"{response.status_code}: {response.text[:500]}"
    body = response.json()
    if response.status_code != 200:
        assert set(body) == {"detail"} and isinstance(body["detail"], str) and len(body["detail"]) > 10, body
        return body
    assert set(body) >= {"landmark", "landmarks", "matches", "gallery_size", "notice"}
    scores = [match["score"] for match in body["matches"]]  # (their order is the e2e tests' business)
    assert len(scores) == min(k, body["gallery_size"])
    assert all(-1.0001 <= score <= 1.0001 for score in scores)
    if body["landmark"] is not None:
        assert 0 <= body["landmark"]["confidence"] <= 1
    return body


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


# --- files that declare dimensions they do not contain --------------------------------------------
def jpeg_declaring(width: int, height: int) -> bytes:
    data = bytearray(encode(Image.new("RGB", (16, 16), "gray"), "JPEG"))
    struct.pack_into(">HH", data, data.index(b"\xff\xc0") + 5, height, width)  # SOF0
    return bytes(data)


def png_declaring(width: int, height: int) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def gif_declaring(width: int, height: int) -> bytes:
    data = bytearray(encode(Image.new("P", (16, 16)), "GIF"))
    struct.pack_into("<HH", data, 6, width, height)  # logical screen
    struct.pack_into("<HH", data, data.index(b"\x2c") + 5, width, height)  # image descriptor
    return bytes(data)


def bmp_declaring(width: int, height: int) -> bytes:
    data = bytearray(encode(Image.new("RGB", (16, 16)), "BMP"))
    struct.pack_into("<ii", data, 18, width, height)
    return bytes(data)


def tiff_declaring(width: int, height: int) -> bytes:
    data = bytearray(encode(Image.new("L", (16, 16)), "TIFF"))
    ifd = struct.unpack_from("<I", data, 4)[0]
    for number in range(struct.unpack_from("<H", data, ifd)[0]):
        entry = ifd + 2 + 12 * number
        tag = struct.unpack_from("<H", data, entry)[0]
        if tag in (256, 257):  # ImageWidth, ImageLength as LONG
            struct.pack_into("<HHII", data, entry, tag, 4, 1, width if tag == 256 else height)
    return bytes(data)


def webp_declaring(width: int, height: int, lossless: bool = True) -> bytes:
    data = bytearray(encode(Image.new("RGB", (16, 16), "gray"), "WEBP", lossless=lossless))
    if lossless:  # VP8L: 14 bits width-1, 14 bits height-1
        bits = struct.unpack_from("<I", data, 21)[0] & ~((1 << 28) - 1)
        struct.pack_into("<I", data, 21, bits | (width - 1) | ((height - 1) << 14))
    else:  # VP8 key frame: 14-bit width and height after the start code
        struct.pack_into("<HH", data, 26, width, height)
    return bytes(data)


DECLARING = {
    "jpeg": (jpeg_declaring, 65535),
    "png": (png_declaring, 2**31 - 1),
    "gif": (gif_declaring, 65535),
    "bmp": (bmp_declaring, 2**31 - 1),
    "tiff": (tiff_declaring, 2**32 - 1),
    "webp": (webp_declaring, 16384),
    "webp-lossy": (lambda w, h: webp_declaring(w, h, lossless=False), 16383),
}
# Peak server memory per request, in decoded RGB images' worth: decode + conversion to RGB. Pillow's
# WebP decoder keeps RGBA canvases besides the image, hence its larger budget.
PEAK_BUDGET = {"webp": 6.0}
DEFAULT_BUDGET = 3.5
SLACK_MB = 64


def budget_mb(fmt: str, pixels: int) -> float:
    return PEAK_BUDGET.get(fmt, DEFAULT_BUDGET) * pixels * 3 / MiB + SLACK_MB


@st.composite
def over_the_limit(draw):
    fmt = draw(st.sampled_from(sorted(DECLARING)))
    largest = min(DECLARING[fmt][1], 2**20)
    width = draw(st.integers(MAX_PIXELS // largest + 1, largest))
    height = draw(st.integers(MAX_PIXELS // width + 1, largest))
    return fmt, width, height


@settings(FUZZ, max_examples=30)
@given(case=over_the_limit())
def test_declared_dimensions_over_the_pixel_limit_are_refused_before_any_decoding(reliable_server, memory, case):
    fmt, width, height = case
    data = DECLARING[fmt][0](width, height)
    peaks = []
    # Sent twice: decoding would cost every time (40 MB and more at the smallest declared size), while
    # the server's own one-off allocations (another test's leftovers, a worker thread's first arena)
    # once lifted a single measurement to 41 MB. The smaller of the two is the request's.
    for _ in range(2):
        started = time.monotonic()
        with memory.peak() as peak:
            response = search(reliable_server.url, data, f"bomb.{fmt}")
        assert response.status_code in (400, 413), (fmt, width, height, response.text)  # 400: the codec refused it
        if response.status_code == 413:
            assert "pixels" in response.json()["detail"]
        assert time.monotonic() - started < 10
        peaks.append(peak["mb"])
    assert min(peaks) < 40, f"{fmt} {width}x{height}: the server's RSS rose {peaks} MB on a refused image"


@st.composite
def within_the_limit(draw):
    fmt = draw(st.sampled_from(["jpeg", "png", "gif", "bmp", "tiff", "webp"]))
    width = draw(st.integers(2000, min(DECLARING[fmt][1], 16384)))
    height = draw(st.integers(1000, MAX_PIXELS // width))
    return fmt, width, height


@settings(FUZZ, max_examples=4)
@given(case=within_the_limit())
def test_large_declared_dimensions_within_the_limit_stay_within_a_memory_budget(reliable_server, memory, case):
    fmt, width, height = case
    with memory.peak() as peak:
        response = search(reliable_server.url, DECLARING[fmt][0](width, height), f"big.{fmt}")
    check_answer(response)  # the tiny files decode into a grey picture or fail as truncated
    assert peak["mb"] <= budget_mb(fmt, width * height), f"{fmt} {width}x{height}: +{peak['mb']:.0f} MB"


# --- tiny uploads that really hold tens of megapixels ---------------------------------------------
def _big(mode: str) -> tuple[str, bytes]:
    size = (6000, 6000)  # 36 MP, under the 40 MP limit
    if mode == "palette+transparency":
        return "png", encode(Image.new("P", size, 3), "PNG", transparency=3)
    if mode == "16-bit":
        return "png", encode(Image.new("I;16", size, 300), "PNG")
    if mode == "rgba":
        return "png", encode(Image.new("RGBA", size, (10, 20, 30, 100)), "PNG")
    if mode == "cmyk":
        return "jpeg", encode(Image.new("CMYK", size, (10, 20, 30, 40)), "JPEG", quality=5)
    if mode == "webp-lossless":
        return "webp", webp_declaring(*size)
    raise ValueError(mode)


@pytest.mark.parametrize("mode", ["palette+transparency", "16-bit", "rgba", "cmyk", "webp-lossless"])
def test_tiny_files_holding_36_megapixels_are_answered_within_the_memory_budget(reliable_server, memory, mode):
    fmt, data = _big(mode)
    assert len(data) < 2 * MiB
    with memory.peak() as peak:
        response = search(reliable_server.url, data, f"big.{fmt}")
    assert response.status_code == 200, response.text
    check_answer(response)
    assert peak["mb"] <= budget_mb(fmt, 36_000_000), f"{mode}: +{peak['mb']:.0f} MB for a {len(data)} byte upload"


HELD_SCRIPT = """
import gc, io, sys
from PIL import Image
from landmarks.images import decode_image
from tests.reliability.test_image_fuzz import rss_mb, webp_declaring
out = io.BytesIO()
Image.new("RGB", (4000, 4000), "gray").save(out, format="JPEG", quality=5)
for data in (webp_declaring(4000, 4000), out.getvalue()):
    gc.collect()
    before = rss_mb("self")
    image = decode_image(data)
    assert image.size == (4000, 4000) and image.mode == "RGB"
    print(round(rss_mb("self") - before))
    del image
"""


def test_a_decoded_photo_holds_no_more_memory_than_its_pixels():
    """What a search keeps alive while it waits for the model is the RGB image only (a decoded WebP
    used to pin its decoder's canvases: four times the photo). In a fresh process, so that memory
    freed by earlier tests cannot hide an allocation."""
    result = subprocess.run(
        [sys.executable, "-c", HELD_SCRIPT], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    image_mb = 4000 * 4000 * 3 / MiB
    for kind, held in zip(("webp", "jpeg"), map(int, result.stdout.split()), strict=True):
        assert held < 1.5 * image_mb, f"a decoded {kind} holds {held} MB for a {image_mb:.0f} MB image"


# --- random and damaged files --------------------------------------------------------------------
MAGIC = [
    b"",
    b"\xff\xd8\xff\xe0",
    b"\x89PNG\r\n\x1a\n",
    b"RIFF\x00\x01\x00\x00WEBPVP8 ",
    b"GIF89a",
    b"II*\x00",
    b"MM\x00*",
    b"BM",
    b"\x00\x00\x00\x1cftypheic",
]


@settings(FUZZ, max_examples=40)
@given(prefix=st.sampled_from(MAGIC), body=st.binary(max_size=3000))
def test_random_bytes_get_a_clear_answer(reliable_server, prefix, body):
    check_answer(search(reliable_server.url, prefix + body))


@pytest.fixture(scope="module")
def small_photo() -> Image.Image:
    photo = decode_image(dev_protocol().queries[0][0])
    photo.thumbnail((200, 200))
    return photo


def _originals(photo: Image.Image) -> dict[str, bytes]:
    frames = [photo, Image.effect_noise(photo.size, 60).convert("RGB")]
    return {
        "jpeg": encode(photo, "JPEG", quality=90),
        "jpeg-progressive": encode(photo, "JPEG", quality=90, progressive=True),
        "png": encode(photo, "PNG"),
        "png-rgba": encode(photo.convert("RGBA"), "PNG"),
        "webp": encode(photo, "WEBP", quality=80),
        "webp-lossless": encode(photo, "WEBP", lossless=True),
        "webp-animated": encode(frames[0], "WEBP", save_all=True, append_images=frames[1:]),
        "gif-animated": encode(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "tiff": encode(photo, "TIFF", compression="tiff_deflate"),
        "heic": encode(photo, "HEIF"),
    }


@st.composite
def damaged(draw, originals: dict[str, bytes]):
    name = draw(st.sampled_from(sorted(originals)))
    data = bytearray(originals[name])
    how = draw(st.sampled_from(["truncate", "flip", "delete", "zero-tail", "duplicate"]))
    if how == "truncate":
        data = data[: draw(st.integers(1, len(data) - 1))]
    elif how == "flip":
        for position in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=12)):
            data[position] ^= draw(st.integers(1, 255))
    elif how == "delete":
        start = draw(st.integers(0, len(data) - 1))
        del data[start : start + draw(st.integers(1, 256))]
    elif how == "zero-tail":
        start = draw(st.integers(len(data) // 4, len(data) - 1))
        data[start:] = bytes(len(data) - start)
    else:
        start = draw(st.integers(0, len(data) - 1))
        data[start:start] = data[start : start + draw(st.integers(1, 512))]
    return name, how, bytes(data)


def test_damaged_jpeg_png_webp_gif_tiff_heic_get_a_clear_answer(reliable_server, small_photo):
    originals = _originals(small_photo)
    for name, data in originals.items():  # undamaged, every one is a photo
        assert search(reliable_server.url, data, name).status_code == 200, name

    @settings(FUZZ, max_examples=60)
    @given(case=damaged(originals))
    def fuzz(case):
        name, how, data = case
        response = search(reliable_server.url, data, name)
        assert response.status_code != 500, (name, how)
        check_answer(response)

    fuzz()


# --- unusual pixel formats and EXIF orientations: the same answer as the plain photo ---------------
@pytest.fixture(scope="module")
def reference(reliable_server) -> tuple[Image.Image, dict]:
    """A query photo the service recognises, shrunk, with its answer as a lossless RGB PNG."""
    for path, _ in dev_protocol().queries:
        photo = decode_image(path)
        photo.thumbnail((320, 320))
        body = check_answer(search(reliable_server.url, encode(photo, "PNG"), "reference.png"))
        if body.get("landmark") and body["landmark"]["confidence"] > 0.6:
            return photo, body
    pytest.fail("no query photo is recognised with confidence")


def same_matches(body: dict, expected: dict, tolerance: float = 2e-3) -> bool:
    ids = [match["image_id"] for match in body["matches"]]
    want = [match["image_id"] for match in expected["matches"]]
    scores = np.array([match["score"] for match in body["matches"]])
    want_scores = np.array([match["score"] for match in expected["matches"]])
    return ids == want and bool(np.abs(scores - want_scores).max() <= tolerance)


def _variants(photo: Image.Image) -> dict[str, tuple[bytes, str]]:
    """name → (file, "exact" when decoding must give back the very same pixels, else "landmark")."""
    noise = Image.effect_noise(photo.size, 80).convert("RGB")
    opaque = photo.convert("RGBA")
    palette = photo.quantize(255)  # index 255 unused: transparent, yet no pixel changes
    gray = photo.convert("L")
    gray.putpixel((0, 0), 255)  # a full-scale pixel: 16-bit images are scaled by their maximum
    return {
        "rgba-opaque png": (encode(opaque, "PNG"), "exact"),
        "rgba-opaque webp": (encode(opaque, "WEBP", lossless=True), "exact"),
        "palette png, unused transparent index": (
            encode(palette, "PNG", transparency=255),
            ("same-as", palette.convert("RGB")),
        ),
        "palette png": (encode(palette, "PNG"), ("same-as", palette.convert("RGB"))),
        "16-bit grey png": (
            encode(Image.fromarray(np.asarray(gray, dtype=np.uint16) * 257), "PNG"),
            ("same-as", gray.convert("RGB")),
        ),
        "la png, opaque": (encode(gray.convert("LA"), "PNG"), ("same-as", gray.convert("RGB"))),
        "apng, photo first": (encode(photo, "PNG", save_all=True, append_images=[noise]), "exact"),
        "animated webp, photo first": (
            encode(photo, "WEBP", lossless=True, save_all=True, append_images=[noise]),
            "exact",
        ),
        "cmyk jpeg": (encode(photo.convert("CMYK"), "JPEG", quality=95), "landmark"),
        "animated gif, photo first": (encode(photo, "GIF", save_all=True, append_images=[noise]), "landmark"),
        "heic": (encode(photo, "HEIF", quality=90), "landmark"),
        "tiff": (encode(photo, "TIFF"), "exact"),
    }


VARIANTS = [
    "rgba-opaque png",
    "rgba-opaque webp",
    "palette png, unused transparent index",
    "palette png",
    "16-bit grey png",
    "la png, opaque",
    "apng, photo first",
    "animated webp, photo first",
    "cmyk jpeg",
    "animated gif, photo first",
    "heic",
    "tiff",
]


@pytest.mark.parametrize("variant", VARIANTS)
def test_unusual_pixel_formats_get_the_answer_of_the_plain_photo(reliable_server, reference, variant):
    photo, expected = reference
    data, expectation = _variants(photo)[variant]
    body = check_answer(search(reliable_server.url, data, variant))
    assert body.get("matches"), body
    if expectation == "exact":
        assert same_matches(body, expected), (body["matches"], expected["matches"])
    elif expectation == "landmark":
        assert body["landmark"] and body["landmark"]["landmark_id"] == expected["landmark"]["landmark_id"], body[
            "landmark"
        ]
    else:  # decodes to the same pixels as an 8-bit RGB rendering of it
        plain = check_answer(search(reliable_server.url, encode(expectation[1], "PNG"), "plain.png"))
        assert same_matches(body, plain), (body["matches"], plain["matches"])


# What ImageOps.exif_transpose applies for each orientation, and its inverse (to make the stored file).
UNDO = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
INVERSE = {Image.Transpose.ROTATE_270: Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_90: Image.Transpose.ROTATE_270}


def stored_as(photo: Image.Image, orientation: int) -> Image.Image:
    """The pixels a camera stores for `photo` when it tags them with `orientation`."""
    if orientation == 1:
        return photo
    undo = UNDO[orientation]
    return photo.transpose(INVERSE.get(undo, undo))


def with_orientation(orientation: int):
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_turned_upright(reliable_server, reference, orientation):
    photo, expected = reference
    stored = stored_as(photo, orientation)
    body = check_answer(
        search(reliable_server.url, encode(stored, "PNG", exif=with_orientation(orientation)), "rotated.png")
    )
    assert same_matches(body, expected), (orientation, body["matches"], expected["matches"])
    if orientation != 1:  # the comparison can tell: without the tag the same pixels answer differently
        untagged = check_answer(search(reliable_server.url, encode(stored, "PNG"), "untagged.png"))
        assert not same_matches(untagged, expected), orientation
    # and as a phone sends it: a JPEG with the tag
    jpeg = check_answer(
        search(
            reliable_server.url, encode(stored, "JPEG", quality=95, exif=with_orientation(orientation)), "rotated.jpg"
        )
    )
    assert jpeg["landmark"] and jpeg["landmark"]["landmark_id"] == expected["landmark"]["landmark_id"]
    assert abs(jpeg["matches"][0]["score"] - expected["matches"][0]["score"]) < 0.03


@pytest.mark.parametrize("orientation", [0, 9, 65535])
def test_out_of_range_exif_orientations_are_ignored(reliable_server, reference, orientation):
    photo, expected = reference
    body = check_answer(
        search(reliable_server.url, encode(photo, "PNG", exif=with_orientation(orientation)), "odd.png")
    )
    assert same_matches(body, expected)


def test_memory_settles_after_the_fuzzing(reliable_server, memory):
    gc.collect()
    now = rss_mb(reliable_server.process.pid)
    print(f"server RSS: {memory.baseline:.0f} MB before the image fuzzing, {now:.0f} MB after")
    assert now < memory.baseline + 1024, f"RSS grew from {memory.baseline:.0f} to {now:.0f} MB"
