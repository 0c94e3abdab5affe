"""The box of the answered landmark, measured on composites through the real API.

    uv run python bench/region.py [--composites 120] [--seed 0] [--spatial]

Each composite pastes a held-out dev query photo (the dev protocol's queries), scaled to 35-60% of
the width of a dev distractor photo, at a random place on it (seeded; a query too tall for the drawn
distractor at that width draws another distractor). The composites are sent to `POST /search?box=true`
of `landmarks serve` over the protocol's index. Prints: the share of composites whose named landmark's
box has IoU >= 0.5 with the pasted region (of those named right, and of all), R@1 on the composites
next to R@1 on the plain query photos, and the latency of /search with and without the box.
"""

from __future__ import annotations

import argparse
import statistics

import httpx
from common import DEV_DATA, composites, dev_index, timed_search  # noqa: F401  (sets sys.path)
from server import ApiServer

from landmarks.evaluation.protocol import dev_protocol
from landmarks.search.region import iou

IOU_HIT = 0.5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--composites", type=int, default=120, help="how many (at least 100 for the acceptance)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--spatial",
        action="store_true",
        help="the service with spatial verification (LANDMARKS_SPATIAL=1): inlier boxes",
    )
    args = parser.parse_args(argv)
    protocol = dev_protocol(DEV_DATA)
    made = composites(args.composites, args.seed)
    env = {"LANDMARKS_SPATIAL": "1"} if args.spatial else {}
    with ApiServer(dev_index(), env=env) as server, httpx.Client(base_url=server.url, timeout=300) as client:

        def post(data: bytes, box: bool) -> tuple[dict, float]:
            return timed_search(client, data, box=box)

        post(made[0].data, True)  # warm-up
        plain_right = 0
        for path, label in protocol.queries:
            answer, _ = post(path.read_bytes(), False)
            plain_right += bool(answer["matches"]) and answer["matches"][0]["landmark_id"] == label
        right = named_right = hits = 0
        with_box, without_box, sources = [], [], {}
        for item in made:
            answer, ms = post(item.data, True)
            if answer["landmark"] is not None:  # a box was looked for: time the same photo without one
                with_box.append(ms)
                without_box.append(post(item.data, False)[1])
            right += bool(answer["matches"]) and answer["matches"][0]["landmark_id"] == item.label
            best = answer["landmark"]
            if best is not None and best["landmark_id"] == item.label:
                named_right += 1
                sources[best["box_source"]] = sources.get(best["box_source"], 0) + 1
                hits += iou(best["box"], item.box) >= IOU_HIT
    n = len(made)
    setting = "spatial verification on" if args.spatial else "the default service"
    print(f"{n} composites (seed {args.seed}), {len(protocol.queries)} plain queries, {setting}; boxes by {sources}")
    print("| measure | value |")
    print("|---|---:|")
    print(f"| R@1, plain query photos | {plain_right / len(protocol.queries):.3f} |")
    print(f"| R@1, composites | {right / n:.3f} |")
    print(f"| composites named right (landmark) | {named_right} of {n} |")
    print(f"| box IoU >= {IOU_HIT}, of those named right | {hits / max(named_right, 1):.3f} ({hits}) |")
    print(f"| box IoU >= {IOU_HIT}, of all composites | {hits / n:.3f} |")
    print(
        f"| /search p50 ms of the {len(with_box)} named, without box / with box | "
        f"{statistics.median(without_box):.0f} / {statistics.median(with_box):.0f} |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
