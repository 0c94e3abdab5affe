"""Decoding: orientation, colour modes, and refusal of hostile or broken files."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from landmarks.images import ImageError, decode_image


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **kwargs)
    return out.getvalue()


def huge_png_header(width: int, height: int) -> bytes:
    """A valid PNG whose header declares enormous dimensions (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("orientation,expected", [(1, (60, 40)), (3, (60, 40)), (6, (40, 60)), (8, (40, 60))])
def test_exif_orientation_is_honoured(orientation, expected):
    image = Image.new("RGB", (60, 40), "red")
    image.paste((0, 0, 255), (0, 0, 10, 10))  # a blue corner shows the rotation
    exif = Image.Exif()
    exif[0x0112] = orientation
    decoded = decode_image(encode(image, "JPEG", exif=exif))
    assert decoded.size == expected
    assert decoded.mode == "RGB"


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "CMYK", "L", "I;16"])
def test_colour_modes_become_rgb(mode):
    image = Image.new(mode, (32, 24))
    fmt = "TIFF" if mode == "CMYK" else "PNG"
    assert decode_image(encode(image, fmt)).mode == "RGB"


def test_webp_decodes():
    assert decode_image(encode(Image.new("RGB", (30, 20), "green"), "WEBP")).size == (30, 20)


@pytest.mark.parametrize(
    "data,kind",
    [
        (b"", "empty"),
        (b"%PDF-1.4 definitely not a photo", "not_image"),
        (huge_png_header(100_000, 100_000), "too_large"),
    ],
    ids=["empty", "pdf", "bomb"],
)
def test_bad_files_raise_typed_errors(data, kind):
    with pytest.raises(ImageError) as info:
        decode_image(data)
    assert info.value.kind == kind


def test_truncated_jpeg_is_corrupt():
    data = encode(Image.effect_noise((256, 256), 40).convert("RGB"), "JPEG", quality=95)
    with pytest.raises(ImageError) as info:
        decode_image(data[: len(data) // 2])
    assert info.value.kind == "corrupt"
