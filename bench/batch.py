"""One POST /search/batch of 16 photos against 16 POST /search one after another, through the real API.

    uv run python bench/batch.py [--rounds 5] [--model efficientnet_lite0]

Starts `landmarks serve` over the dev protocol's gallery, warms it up, then alternates the two ways
of sending the same 16 dev query photos for ROUNDS rounds and prints the median wall time of each
and their ratio (one run, one machine: the ratio is the figure to quote).
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx
from common import DEV_DATA, dev_index  # noqa: F401  (sets sys.path)
from server import ApiServer

from landmarks.evaluation.protocol import dev_protocol

BATCH = 16


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model", default=None, help="default: the service's default model")
    args = parser.parse_args(argv)
    photos = [(path.name, path.read_bytes()) for path, _ in dev_protocol(DEV_DATA).queries[::9][:BATCH]]
    singles, batches = [], []
    with ApiServer(dev_index(args.model)) as server, httpx.Client(base_url=server.url, timeout=300) as client:
        files = [("images", (name, data, "image/jpeg")) for name, data in photos]
        client.post("/search/batch", files=files).raise_for_status()  # warm-up
        for _ in range(args.rounds):
            start = time.perf_counter()
            for name, data in photos:
                client.post("/search", files={"image": (name, data, "image/jpeg")}).raise_for_status()
            singles.append(time.perf_counter() - start)
            start = time.perf_counter()
            client.post("/search/batch", files=files).raise_for_status()
            batches.append(time.perf_counter() - start)
    single, batch = statistics.median(singles), statistics.median(batches)
    print("| way | 16 photos, median s |\n|---|---:|")
    print(f"| 16 × POST /search, one after another | {single:.2f} |\n| 1 × POST /search/batch | {batch:.2f} |")
    print(f"\nbatch / singles: {batch / single:.2f} ({args.rounds} rounds)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
