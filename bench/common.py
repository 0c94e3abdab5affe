"""Shared bench helpers: the dev protocol's index, built once and reused between runs."""

from __future__ import annotations

import io
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from PIL import Image, ImageOps  # noqa: E402

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


# The acceptance's setting (issue 21): the pasted photo's width as a share of the distractor's.
WIDTH_SHARE = (0.35, 0.60)


@dataclass(frozen=True)
class Composite:
    data: bytes  # the composite, JPEG
    label: str  # the pasted query's landmark
    box: tuple[float, float, float, float]  # where it was pasted, normalised (x0, y0, x1, y1)
    query: Path
    distractor: Path


def upright(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return ImageOps.exif_transpose(image).convert("RGB")


def composite(
    query: Path, label: str, distractors: list[Path], rng: random.Random, share: tuple[float, float] = WIDTH_SHARE
) -> Composite:
    """QUERY scaled to a random share of a random distractor's width, pasted at a random place on it.

    A photo too tall to fit the distractor at the largest share gets a share drawn up to what fits; one
    too tall even at the smallest share draws another distractor."""
    photo = upright(query)
    for _ in range(100):
        distractor = rng.choice(distractors)
        background = upright(distractor)
        fits = background.height * photo.width / (photo.height * background.width)  # the largest share that fits
        if fits >= share[0]:
            break
    else:
        raise ValueError(f"{query} is too tall to paste at {share[0]:.0%} of any distractor's width")
    width = round(rng.uniform(share[0], min(share[1], fits)) * background.width)
    height = min(background.height, round(width * photo.height / photo.width))
    x, y = rng.randint(0, background.width - width), rng.randint(0, background.height - height)
    background.paste(photo.resize((width, height), Image.Resampling.BICUBIC), (x, y))
    out = io.BytesIO()
    background.save(out, "JPEG", quality=90)
    box = (
        x / background.width,
        y / background.height,
        (x + width) / background.width,
        (y + height) / background.height,
    )
    return Composite(out.getvalue(), label, box, query, distractor)


def composites(count: int, seed: int = 0, root: Path = DEV_DATA) -> list[Composite]:
    """COUNT composites of the protocol's queries (each used in turn, in a seeded order) on its distractors."""
    protocol = dev_protocol(root)
    rng = random.Random(seed)
    queries = list(protocol.queries)
    rng.shuffle(queries)
    return [composite(*queries[i % len(queries)], protocol.distractors, rng) for i in range(count)]


def side_by_side(left: Path, right: Path, height: int = 480) -> bytes:
    """Two photos scaled to the same HEIGHT and set side by side, as a JPEG (two landmarks in one photo)."""
    photos = [upright(path) for path in (left, right)]
    photos = [photo.resize((round(photo.width * height / photo.height), height)) for photo in photos]
    joined = Image.new("RGB", (photos[0].width + photos[1].width, height))
    joined.paste(photos[0], (0, 0))
    joined.paste(photos[1], (photos[0].width, 0))
    out = io.BytesIO()
    joined.save(out, "JPEG", quality=90)
    return out.getvalue()


def pairs(count: int, seed: int = 0, root: Path = DEV_DATA) -> list[tuple[Path, str, Path, str]]:
    """COUNT seeded pairs of protocol queries of two different landmarks: (left, its label, right, its label)."""
    queries = list(dev_protocol(root).queries)
    rng = random.Random(seed)
    chosen = []
    while len(chosen) < count:
        (left, a), (right, b) = rng.sample(queries, 2)
        if a != b:
            chosen.append((left, a, right, b))
    return chosen


def timed_search(client, data: bytes, **params) -> tuple[dict, float]:
    """POST /search of one photo with PARAMS (k=1 unless given) through an httpx CLIENT: (answer, ms)."""
    start = time.perf_counter()
    response = client.post("/search", params={"k": 1, **params}, files={"image": ("photo.jpg", data, "image/jpeg")})
    elapsed = (time.perf_counter() - start) * 1000
    response.raise_for_status()
    return response.json(), elapsed
