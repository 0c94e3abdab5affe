"""Safe image decoding and model preprocessing.

Every photo that enters the product (uploads, gallery files) goes through `decode_image`, which
enforces a pixel limit before any pixel is decoded, honours EXIF orientation, and turns every
failure into an `ImageError` with a message a person can read.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

Item = TypeVar("Item")
Loaded = TypeVar("Loaded")

try:  # HEIC support is optional: phones send it, but the decoder is a native extra.
    from pillow_heif import register_heif_opener

    register_heif_opener()
except ImportError:  # pragma: no cover - depends on the platform's wheels
    pass

# Our own limit is checked explicitly below; PIL's bomb check would raise a different error type.
Image.MAX_IMAGE_PIXELS = None
ImageFile.LOAD_TRUNCATED_IMAGES = False

DEFAULT_MAX_PIXELS = 40_000_000  # about 7300 x 5500: any real camera, no decompression bomb
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif", ".bmp", ".gif", ".tif", ".tiff"})


class ImageError(ValueError):
    """A photo that cannot be used. `kind` tells the service which HTTP status fits."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind  # "empty" | "not_image" | "corrupt" | "too_large"

    def __reduce__(self):  # pickled whole, kind included: index builds decode in worker processes
        return type(self), (str(self), self.kind)


# Peak bytes per pixel while decoding, measured with Pillow 12 on 6000x6000 photos (VmHWM growth):
# WebP about 15 (libwebp's RGBA canvases beside the result), JPEG and PNG about 4 (RGBA PNGs add the
# white background). Upper bounds, so that the service's decode budget never under-counts.
PEAK_BYTES_PER_PIXEL = {"WEBP": 16}
DEFAULT_PEAK_BYTES_PER_PIXEL = 8


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Read the header only (no pixels), enforcing the pixel limit, or raise ImageError."""
    if not data:
        raise ImageError("The file is empty.", "empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise ImageError("The file is not an image we can read (use JPEG, PNG, WebP or HEIC).", "not_image") from exc
    except Exception as exc:  # PIL raises assorted errors on hostile headers
        raise ImageError(f"The image header is damaged: {exc}", "corrupt") from exc
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError("The image has no pixels.", "corrupt")
    if width * height > max_pixels:
        raise ImageError(f"The image is {width}x{height} pixels; the limit is {max_pixels:,} pixels.", "too_large")
    return image


def decoded_size_estimate(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> int:
    """An upper bound of the memory that decoding DATA takes at its peak, from the header alone."""
    image = _open(data, max_pixels)
    width, height = image.size
    return width * height * PEAK_BYTES_PER_PIXEL.get(image.format or "", DEFAULT_PEAK_BYTES_PER_PIXEL)


# Reduced JPEG decoding keeps at least this many times the pixels a side that a consumer resizes to:
# the DCT's coarse scaling, then a proper filter that still halves the photo. bench/indexing.py, on the
# protocol gallery upscaled to 3,000 px: lowest cosine to full decoding 0.992 and R@1 unchanged at 2;
# at 1, 0.971 and one query lost.
DRAFT_MARGIN = 2.0


def draft_size(sides: Iterable[int], margin: float | None = DRAFT_MARGIN) -> int | None:
    """What to pass decode_image as `draft` for consumers that resize the photo to SIDES pixels
    (margin None: full size)."""
    return None if margin is None else round(max(sides) * margin)


def decode_image(data: bytes | Path, max_pixels: int = DEFAULT_MAX_PIXELS, *, draft: int | None = None) -> Image.Image:
    """Decode bytes or a file into an upright RGB PIL image, or raise ImageError.

    DRAFT: the caller needs no more than this many pixels a side, so a JPEG may be decoded at a
    reduced scale (DCT scaling, 1/2 to 1/8: a fraction of the time and memory); both sides stay at
    least DRAFT (or the photo's own size). See draft_size.
    """
    if isinstance(data, Path):
        data = data.read_bytes()
    image = _open(data, max_pixels)
    if draft is not None and image.format == "JPEG":
        image.draft("RGB", (draft, draft))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image.seek(0)  # first frame of animations
            image.load()
            ImageOps.exif_transpose(image, in_place=True)  # in place: no second full-size copy
            rgb = _to_rgb(image)
            # Detach the pixels from the file object: a WebP file keeps its decoder's canvases (about
            # three more full-size RGBA buffers) alive for as long as the image lives.
            return image._new(image.im) if rgb is image else rgb
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError(f"The image is truncated or corrupt: {exc}", "corrupt") from exc


def _to_rgb(image: Image.Image) -> Image.Image:
    # Memory matters here: a tiny upload can declare up to max_pixels, so every step avoids extra
    # full-size copies (no float64 arrays, no RGBA background): peak stays near two images' worth.
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Composite onto white: a transparent background is usually white where the photo came from.
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, (0, 0), rgba)  # the RGBA image is its own alpha mask
        return background
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        array = np.asarray(image)
        if array.dtype.kind == "i":
            array = np.clip(array, 0, None)  # 32-bit "I" can hold negatives: black, not wrapped
        top = int(array.max()) if array.size else 0
        scaled = np.empty(array.shape, dtype=np.uint8)
        np.multiply(array, 255.0 / top if top > 0 else 0.0, out=scaled, casting="unsafe")  # buffered, no float copy
        return Image.fromarray(scaled).convert("RGB")
    return image.convert("RGB")


_RESAMPLING = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}


class Preprocessor:
    """RGB PIL image → normalised float32 CHW array at the model's input size.

    The whole photo is resized to a square (no crop): landmark photos often put the landmark off
    centre, and a centre crop would cut it away.
    """

    def __init__(self, image_size: int, mean, std, interpolation: str = "bicubic") -> None:
        self.image_size = image_size
        self.mean = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)
        self.resample = _RESAMPLING.get(interpolation, Image.Resampling.BICUBIC)

    def __call__(self, image: Image.Image) -> np.ndarray:
        resized = image.resize((self.image_size, self.image_size), self.resample)
        array = np.asarray(resized, dtype=np.float32).transpose(2, 0, 1) / 255.0
        return (array - self.mean) / self.std


def thumbnail_jpeg(data: bytes | Path, size: int, quality: int = 85, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """A gallery photo, upright, longest side at most `size`, as JPEG bytes."""
    image = decode_image(data, max_pixels, draft=size)
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


GPS_IFD = 0x8825  # EXIF's GPSInfo directory: 1/2 latitude ref and value, 3/4 longitude ref and value


def photo_location(data: bytes) -> tuple[float, float] | None:
    """Where the photo was taken, (lat, lon) in degrees from its EXIF GPS, or None when it has none (or
    nonsense: no reference, out of range, the 0/0 some cameras write before a fix). Reads the header only."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            gps = image.getexif().get_ifd(GPS_IFD)
    except Exception:  # noqa: BLE001 - any unreadable header just means no position
        return None

    def degrees(value, ref: object, negative: str) -> float | None:
        try:
            d, m, sec = (float(part) for part in value)
        except (TypeError, ValueError, ZeroDivisionError):
            return None
        if not isinstance(ref, str) or not ref.strip():
            return None
        return -(d + m / 60 + sec / 3600) if ref.strip().upper() == negative else d + m / 60 + sec / 3600

    lat, lon = degrees(gps.get(2), gps.get(1), "S"), degrees(gps.get(4), gps.get(3), "W")
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180) or (lat == 0 and lon == 0):
        return None
    return lat, lon


def embed_in_batches(
    images: Iterable[Image.Image],
    preprocess: Callable[[Image.Image], np.ndarray],
    embed_arrays: Callable[[list[np.ndarray]], np.ndarray],
    dim: int,
    batch_size: int = 16,
) -> np.ndarray:
    """(N, dim) embeddings of photos, preprocessed one by one and embedded BATCH_SIZE at a time (so no
    more than one batch of model inputs is held): what every extractor's embed_images does."""
    out, pending = [], []
    for image in images:
        pending.append(preprocess(image))
        if len(pending) == batch_size:
            out.append(embed_arrays(pending))
            pending = []
    if pending:
        out.append(embed_arrays(pending))
    return np.concatenate(out) if out else np.zeros((0, dim), dtype=np.float32)


def loaded_ahead(load: Callable[[Item], Loaded], items: Sequence[Item], batch_size: int) -> Iterator[list[Loaded]]:
    """load(item) for every item, in batches, on two worker threads: one batch is loaded (decoded,
    preprocessed) ahead while the caller works on the current one, and no more, so memory stays flat
    on huge galleries."""
    chunks = [items[start : start + batch_size] for start in range(0, len(items), batch_size)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        pending = pool.map(load, chunks[0]) if chunks else iter(())
        for position in range(len(chunks)):
            loaded = list(pending)
            if position + 1 < len(chunks):
                pending = pool.map(load, chunks[position + 1])
            yield loaded
