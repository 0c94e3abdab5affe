"""Several landmarks in one photo (`POST /search?detect=all`), measured through the real API.

    uv run python bench/detection.py [--pairs 100] [--seed 0]

The protocol's index is calibrated first with `landmarks calibrate` (no flags), as an operator does
after `index build`. Composites: two held-out dev query photos (the dev protocol's queries) of different landmarks, scaled
to one height and set side by side (seeded pairs). Prints the share of composites in which both
landmarks are among the detections, the share in which a third (wrong) landmark is reported, the share
of dev distractors (no landmark) with any detection, and, on
the plain query photos, R@1 of the answer with and without `detect=all` and of the first detection,
with the latency of /search with and without it.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

import httpx
from common import DEV_DATA, dev_index, pairs, side_by_side, timed_search
from server import ApiServer

from landmarks.evaluation.protocol import dev_protocol


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=100, help="how many composites (at least 100 for the acceptance)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    protocol = dev_protocol(DEV_DATA)
    chosen = pairs(args.pairs, args.seed)
    index = dev_index()
    subprocess.run([sys.executable, "-m", "cli", "calibrate", "--index", str(index), "--no-progress"], check=True)
    with ApiServer(index) as server, httpx.Client(base_url=server.url, timeout=300) as client:

        def post(data: bytes, detect: str) -> tuple[dict, float]:
            return timed_search(client, data, detect=detect)

        post(protocol.queries[0][0].read_bytes(), "all")  # warm-up
        both = third = count = 0
        for left, a, right, b in chosen:
            answer, _ = post(side_by_side(left, right), "all")
            found = {d["landmark_id"] for d in answer["detections"]}
            both += {a, b} <= found
            third += bool(found - {a, b})
            count += len(found)
        stray = 0
        for path in protocol.distractors:
            stray += bool(post(path.read_bytes(), "all")[0]["detections"])
        plain = with_all = first = 0
        best_ms, all_ms = [], []
        for path, label in protocol.queries:
            data = path.read_bytes()
            answer, ms = post(data, "best")
            best_ms.append(ms)
            plain += bool(answer["landmarks"]) and answer["landmarks"][0]["landmark_id"] == label
            answer, ms = post(data, "all")
            all_ms.append(ms)
            with_all += bool(answer["landmarks"]) and answer["landmarks"][0]["landmark_id"] == label
            first += bool(answer["detections"]) and answer["detections"][0]["landmark_id"] == label
    n, q = len(chosen), len(protocol.queries)
    print(f"{n} side-by-side composites (seed {args.seed}), {q} plain queries")
    print("| measure | value |")
    print("|---|---:|")
    print(f"| composites with both landmarks found | {both / n:.3f} ({both}) |")
    print(f"| composites with a third, wrong landmark | {third / n:.3f} ({third}) |")
    print(f"| detections per composite | {count / n:.2f} |")
    print(f"| distractors (no landmark) with any detection | {stray / len(protocol.distractors):.3f} ({stray}) |")
    print(f"| plain queries: R@1 of the answer, detect=best / detect=all | {plain / q:.3f} / {with_all / q:.3f} |")
    print(f"| plain queries: the first detection is the right landmark | {first / q:.3f} |")
    print(
        f"| /search p50 ms, detect=best / detect=all | {statistics.median(best_ms):.0f} / "
        f"{statistics.median(all_ms):.0f} |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
