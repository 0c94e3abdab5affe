"""A bounded load run against the search API on loopback: N searches at concurrency C.

    uv run python bench/load.py                        # 2,000 searches at concurrency 32
    uv run python bench/load.py --requests 300 --url http://127.0.0.1:8000 --pid 12345

Without --url it starts the real service (`landmarks serve`) over the dev protocol's gallery. Each
of the C workers sends the dev query photos one request at a time, so at most C requests are ever
in flight. It prints latency percentiles, throughput, errors and the service's resident memory
(sampled from /proc after every answer) in the first and the last `--window` requests, and exits
1 when a request failed or memory grew more than `--max-rss-growth` between those windows.
`tests/reliability/test_load.py` runs the same code with smaller numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, int(-(-fraction * len(sorted_values) // 1)))  # ceil
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class LoadReport:
    requests: int
    concurrency: int
    seconds: float
    errors: int
    statuses: dict[str, int]
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    throughput: float
    window: int
    # The service's RSS, sampled after every answer: its peak and its median while the first and the
    # last `window` requests were answered. Growth compares the peaks: RSS is a sawtooth (the allocator
    # takes and gives back memory), and a window's peak does not depend on where a sample fell on it.
    rss_first_mb: float | None = None
    rss_last_mb: float | None = None
    rss_first_median_mb: float | None = None
    rss_last_median_mb: float | None = None
    rss_max_mb: float | None = None
    rss_trace: list[float] = field(default_factory=list)  # RSS at every tenth of the run
    error_samples: list[str] = field(default_factory=list)

    @property
    def rss_growth(self) -> float | None:
        if self.rss_first_mb is None or self.rss_last_mb is None:
            return None
        return self.rss_last_mb / self.rss_first_mb - 1

    def table(self) -> str:
        rows = [
            ("requests", f"{self.requests} at concurrency {self.concurrency}"),
            ("errors", f"{self.errors} (statuses: {self.statuses})"),
            ("throughput", f"{self.throughput:.1f} searches/s over {self.seconds:.1f} s"),
            (
                "latency p50 / p95 / p99 / max",
                f"{self.p50_ms:.0f} / {self.p95_ms:.0f} / {self.p99_ms:.0f} / {self.max_ms:.0f} ms",
            ),
        ]
        if self.rss_growth is not None:
            rows.append(
                (
                    f"service RSS peak, first vs last {self.window}",
                    f"{self.rss_first_mb:.0f} MB vs {self.rss_last_mb:.0f} MB ({self.rss_growth:+.1%}); medians "
                    f"{self.rss_first_median_mb:.0f} vs {self.rss_last_median_mb:.0f} MB; max {self.rss_max_mb:.0f} MB",
                )
            )
            rows.append(
                ("service RSS at each tenth of the run", " ".join(f"{value:.0f}" for value in self.rss_trace) + " MB")
            )
        return "\n".join(["| measure | value |", "|:---|:---|", *(f"| {name} | {value} |" for name, value in rows)])

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "rss_growth": self.rss_growth})


async def run_load(
    url: str,
    photos: list[bytes],
    requests: int,
    concurrency: int,
    *,
    pid: int | None = None,
    window: int = 500,
    timeout: float = 120.0,
    k: int = 5,
) -> LoadReport:
    """Send `requests` searches with `concurrency` workers; every answer but a 200 is an error."""
    if not photos:
        raise ValueError("no photos to send")
    window = min(window, requests)
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    samples: list[str] = []
    rss: list[float] = []  # RSS after each answer, in the order answers arrived
    next_number = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal next_number
        while next_number < requests:
            number = next_number
            next_number += 1
            photo = photos[number % len(photos)]
            started = time.perf_counter()
            try:
                response = await client.post(
                    f"{url}/search", params={"k": k}, files={"image": (f"q{number}.jpg", photo, "image/jpeg")}
                )
                status = str(response.status_code)
                if response.status_code != 200 and len(samples) < 5:
                    samples.append(f"{status}: {response.text[:200]}")
            except httpx.HTTPError as exc:
                status = type(exc).__name__
                if len(samples) < 5:
                    samples.append(f"{status}: {exc}")
            latencies.append(time.perf_counter() - started)
            statuses[status] += 1
            if pid is not None:
                rss.append(rss_mb(pid))

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    ordered = sorted(latencies)
    report = LoadReport(
        requests=requests,
        concurrency=concurrency,
        seconds=seconds,
        errors=sum(count for status, count in statuses.items() if status != "200"),
        statuses=dict(statuses),
        p50_ms=percentile(ordered, 0.50) * 1000,
        p95_ms=percentile(ordered, 0.95) * 1000,
        p99_ms=percentile(ordered, 0.99) * 1000,
        max_ms=ordered[-1] * 1000,
        throughput=requests / seconds,
        window=window,
        error_samples=samples,
    )
    if rss:
        report.rss_first_mb, report.rss_last_mb = max(rss[:window]), max(rss[-window:])
        report.rss_first_median_mb = statistics.median(rss[:window])
        report.rss_last_median_mb = statistics.median(rss[-window:])
        report.rss_max_mb = max(rss)
        report.rss_trace = [rss[min(len(rss) - 1, len(rss) * tenth // 10)] for tenth in range(11)]
    return report


def dev_photos() -> list[bytes]:
    from common import DEV_DATA  # noqa: PLC0415  (bench/common.py puts the repo on sys.path)

    from landmarks.evaluation.protocol import dev_protocol

    return [path.read_bytes() for path, _ in dev_protocol(DEV_DATA).queries]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--window", type=int, default=500, help="requests in the first and last memory windows")
    parser.add_argument("--max-rss-growth", type=float, default=0.10)
    parser.add_argument("--url", default=None, help="a running service (default: start one over the dev gallery)")
    parser.add_argument("--pid", type=int, default=None, help="the running service's process id, to watch its memory")
    parser.add_argument("--warmup", type=int, default=16)
    parser.add_argument("--json", action="store_true", help="also print the report as one JSON line")
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    photos = dev_photos()

    def measure(url: str, pid: int | None) -> LoadReport:
        if args.warmup:
            asyncio.run(run_load(url, photos, args.warmup, min(args.warmup, args.concurrency)))
        return asyncio.run(run_load(url, photos, args.requests, args.concurrency, pid=pid, window=args.window))

    if args.url:
        report = measure(args.url.rstrip("/"), args.pid)
    else:
        from common import dev_index  # noqa: PLC0415
        from server import ApiServer  # noqa: PLC0415

        server = ApiServer(dev_index())
        server.start(timeout=300)
        try:
            report = measure(server.url, server.process.pid)
        finally:
            server.stop()
    print(report.table())
    if args.json:
        print(report.to_json())
    for sample in report.error_samples:
        print("error:", sample)
    growth = report.rss_growth
    return 1 if report.errors or (growth is not None and growth > args.max_rss_growth) else 0


if __name__ == "__main__":
    raise SystemExit(main())
