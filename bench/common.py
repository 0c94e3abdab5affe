"""Shared bench helpers: the dev protocol's index, built once and reused between runs."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from PIL import Image  # noqa: E402

from landmarks.evaluation.protocol import dev_protocol, materialize_gallery  # noqa: E402
from landmarks.images import GPS_IFD  # noqa: E402

DEV_DATA = REPO.parent / "shared" / "data" / "landmarks-dev"
WORK = REPO / "data" / "bench"


def dev_index(model: str | None = None) -> Path:
    """Build (or update) an index of the protocol's gallery under data/bench/ (default: the service's model)."""
    from landmarks.models import DEFAULT_MODEL

    model = model or DEFAULT_MODEL
    protocol = dev_protocol(DEV_DATA)
    gallery = materialize_gallery(protocol.gallery, WORK / "gallery", DEV_DATA / "images" / "landmarks.csv")
    out = WORK / f"index-{Path(model).stem}"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "index",
            "build",
            str(gallery),
            "--out",
            str(out),
            "--model",
            model,
            "--no-progress",
        ],
        cwd=REPO,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return out


def scaled_to(path, side: int) -> Image.Image:
    """The photo, RGB, resized (bicubic) so that its longest side is SIDE px: a phone-size copy of a dev
    photo, for bench/indexing.py and the tests of large uploads."""
    with Image.open(path) as image:
        scale = side / max(image.size)
        size = (round(image.width * scale), round(image.height * scale))
        return image.convert("RGB").resize(size, Image.Resampling.BICUBIC)


def with_gps(path, location: tuple[float, float] | None) -> bytes:
    """The photo re-encoded (quality 95), with LOCATION (lat, lon) in its EXIF GPS as a phone writes it
    when given: bench/gps.py and the tests compare such photos with and without a position."""
    image = Image.open(path).convert("RGB")
    exif = Image.Exif()
    if location is not None:
        lat, lon = location

        def dms(value: float) -> tuple[float, float, float]:
            value = abs(value)
            d = int(value)
            m = int((value - d) * 60)
            return float(d), float(m), round((value - d - m / 60) * 3600, 4)

        exif.get_ifd(GPS_IFD).update(
            {1: "N" if lat >= 0 else "S", 2: dms(lat), 3: "E" if lon >= 0 else "W", 4: dms(lon)}
        )
    out = io.BytesIO()
    image.save(out, "JPEG", quality=95, exif=exif)
    return out.getvalue()
