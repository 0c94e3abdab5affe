"""The photo's own GPS as a prior: dev queries with their true position, a wrong one, or none, through the real API.

    uv run python bench/gps.py [--bonus 0.06] [--scale-km 2]

Every dev query is re-encoded three ways that differ only in EXIF (same pixels): no GPS; its
landmark's position moved by up to 300 m in a random direction ("true"); a place 500 to 1,500 km
away ("elsewhere": another city); the position of another gallery landmark 500 km or more away
("wrong": the worst wrong position, one where a look-alike sits).
Every distractor is sent without GPS and with a position within 300 m of a random gallery landmark.
Prints R@1 (the first match's landmark) for the three, and the distractors' refusals for the two.
"""

from __future__ import annotations

import argparse
import math
import random

import httpx
from common import DEV_DATA, dev_index, with_gps  # noqa: F401  (sets sys.path)
from server import ApiServer

from landmarks.evaluation.protocol import dev_protocol
from landmarks.gallery import scan_gallery
from landmarks.search.ranking import distance_km


def moved(location: tuple[float, float], metres: float, rng: random.Random) -> tuple[float, float]:
    bearing, distance = rng.uniform(0, 2 * math.pi), rng.uniform(0, metres)
    dlat = distance * math.cos(bearing) / 111_320
    dlon = distance * math.sin(bearing) / (111_320 * math.cos(math.radians(location[0])))
    return location[0] + dlat, location[1] + dlon


def away(location: tuple[float, float], rng: random.Random) -> tuple[float, float]:
    """A place 500 to 1,500 km from LOCATION in a random direction (another city)."""
    while True:
        bearing, distance = rng.uniform(0, 2 * math.pi), rng.uniform(500_000, 1_500_000)
        lat = location[0] + distance * math.cos(bearing) / 111_320
        lon = location[1] + distance * math.sin(bearing) / (111_320 * math.cos(math.radians(location[0])))
        if -80 < lat < 80 and distance_km(location, (lat, lon)) >= 500:
            return lat, lon


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bonus", type=float, default=None, help="LANDMARKS_GEO_BONUS (default: the service's)")
    parser.add_argument("--scale-km", type=float, default=None, help="LANDMARKS_GEO_SCALE_KM")
    args = parser.parse_args(argv)
    protocol = dev_protocol(DEV_DATA)
    places = {
        lid: (lm.lat, lm.lon)
        for lid, lm in scan_gallery(DEV_DATA / "images").landmarks.items()
        if lm.lat is not None and lm.lon is not None
    }
    rng = random.Random(0)
    env = {}
    if args.bonus is not None:
        env["LANDMARKS_GEO_BONUS"] = str(args.bonus)
    if args.scale_km is not None:
        env["LANDMARKS_GEO_SCALE_KM"] = str(args.scale_km)
    right = {"none": 0, "true": 0, "elsewhere": 0, "wrong": 0}
    refused = {"none": 0, "near": 0}
    with ApiServer(dev_index(), env=env) as server, httpx.Client(base_url=server.url, timeout=120) as client:

        def answer(data: bytes) -> dict:
            response = client.post("/search", params={"k": 1}, files={"image": ("photo.jpg", data, "image/jpeg")})
            response.raise_for_status()
            return response.json()

        for path, label in protocol.queries:
            far = [lid for lid, place in places.items() if distance_km(place, places[label]) >= 500]
            variants = {
                "none": with_gps(path, None),
                "true": with_gps(path, moved(places[label], 300, rng)),
                "elsewhere": with_gps(path, away(places[label], rng)),
                "wrong": with_gps(path, places[rng.choice(far)]),
            }
            for name, data in variants.items():
                matches = answer(data)["matches"]
                right[name] += bool(matches) and matches[0]["landmark_id"] == label
        for path in protocol.distractors:
            near = moved(places[rng.choice(sorted(places))], 300, rng)
            refused["none"] += answer(with_gps(path, None))["landmark"] is None
            refused["near"] += answer(with_gps(path, near))["landmark"] is None
    queries, distractors = len(protocol.queries), len(protocol.distractors)
    print("| photos | R@1 / refused |\n|---|---:|")
    print(f"| queries, no GPS | {right['none'] / queries:.3f} |")
    print(f"| queries, true GPS (±300 m) | {right['true'] / queries:.3f} |")
    print(f"| queries, wrong GPS (a place 500-1,500 km away) | {right['elsewhere'] / queries:.3f} |")
    print(
        f"| queries, wrong GPS (at another gallery landmark 500+ km away: the worst case) | {right['wrong'] / queries:.3f} |"
    )
    print(f"| distractors, no GPS: refused | {refused['none'] / distractors:.0%} |")
    print(f"| distractors, GPS within 300 m of a landmark: refused | {refused['near'] / distractors:.0%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
