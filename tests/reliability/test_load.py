"""A bounded load run on loopback (bench/load.py): searches at concurrency 32 with zero errors, the
p95 reported, and the service's memory flat between the first and the last window of requests.

The server is its own, with the default settings: a server that other tests fed 36-megapixel images
has a swollen allocator already, and would hide a creeping RSS.

The default is short for the shared test machine; the full run is
    LANDMARKS_LOAD_REQUESTS=2000 uv run pytest tests/reliability/test_load.py -s
or `uv run python bench/load.py` (which starts its own server).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys

import pytest

from tests.support import REPO_ROOT, ApiServer, dev_protocol

REQUESTS = int(os.environ.get("LANDMARKS_LOAD_REQUESTS", "160"))
CONCURRENCY = int(os.environ.get("LANDMARKS_LOAD_CONCURRENCY", "32"))
WINDOW = max(1, min(500, REQUESTS // 4))
WARMUP = 64  # not measured: the first batches size the allocator's pools and the model's caches
MAX_RSS_GROWTH = 0.10


def load_module():
    spec = importlib.util.spec_from_file_location("bench_load", REPO_ROOT / "bench" / "load.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def load_server(dev_index):
    with ApiServer(dev_index) as server:
        yield server


def test_searches_under_load_all_succeed_and_memory_stays_flat(load_server):
    bench = load_module()
    photos = [path.read_bytes() for path, _ in dev_protocol().queries]
    asyncio.run(bench.run_load(load_server.url, photos, WARMUP, CONCURRENCY))
    report = asyncio.run(
        bench.run_load(load_server.url, photos, REQUESTS, CONCURRENCY, pid=load_server.process.pid, window=WINDOW)
    )
    print("\n" + report.table())
    assert report.errors == 0, (report.statuses, report.error_samples)
    assert report.p95_ms > 0 and report.p50_ms <= report.p95_ms <= report.max_ms
    assert report.rss_growth is not None and report.rss_growth <= MAX_RSS_GROWTH, report.table()
