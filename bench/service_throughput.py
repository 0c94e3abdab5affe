"""Service throughput and latency at concurrency 1, 8 and 32, micro-batching on vs off.

    uv run python bench/service_throughput.py [--requests 96] [--model efficientnet_lite0]

Starts the real API twice over the dev protocol's gallery (same machine, same run) and prints a
Markdown table plus the batching speed-up at each concurrency: ratios, since the machines are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import httpx
from common import DEV_DATA, REPO, dev_index  # noqa: F401  (sets sys.path)
from server import ApiServer

from landmarks.evaluation.protocol import dev_protocol


async def load(url: str, photos: list[bytes], requests: int, concurrency: int) -> dict:
    latencies: list[float] = []
    errors = 0
    queue = iter(range(requests))

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        for number in queue:
            start = time.perf_counter()
            response = await client.post(
                f"{url}/search", files={"image": ("q.jpg", photos[number % len(photos)], "image/jpeg")}
            )
            latencies.append(time.perf_counter() - start)
            errors += response.status_code != 200

    async with httpx.AsyncClient(timeout=300) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "throughput": requests / elapsed,
        "p50": statistics.median(latencies) * 1000,
        "p95": latencies[int(0.95 * (len(latencies) - 1))] * 1000,
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=96)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--model", default=None, help="embedding model (default: the service's default)")
    args = parser.parse_args()
    index = dev_index(args.model)
    model_env = {"LANDMARKS_MODEL": args.model} if args.model else {}
    photos = [path.read_bytes() for path, _ in dev_protocol(DEV_DATA).queries]
    results: dict[tuple[str, int], dict] = {}
    for label, env in (("off", {"LANDMARKS_BATCHING": "0"}), ("on", {"LANDMARKS_BATCHING": "1"})):
        with ApiServer(index, env={**env, **model_env, "LANDMARKS_QUEUE_MAX": "256"}) as server:
            asyncio.run(load(server.url, photos, 8, 2))  # warm-up
            for concurrency in args.concurrency:
                results[(label, concurrency)] = asyncio.run(load(server.url, photos, args.requests, concurrency))
    print("| concurrency | batching | req/s | p50 ms | p95 ms | errors |")
    print("|---:|:---|---:|---:|---:|---:|")
    for concurrency in args.concurrency:
        for label in ("off", "on"):
            r = results[(label, concurrency)]
            print(
                f"| {concurrency} | {label} | {r['throughput']:.1f} | {r['p50']:.0f} | {r['p95']:.0f} | {r['errors']} |"
            )
    for concurrency in args.concurrency:
        ratio = results[("on", concurrency)]["throughput"] / results[("off", concurrency)]["throughput"]
        print(f"concurrency {concurrency}: batching throughput x{ratio:.2f}")


if __name__ == "__main__":
    main()
