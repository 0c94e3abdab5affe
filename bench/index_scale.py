"""The vector index at scale, with the default model's own vectors: every index kind (exact flat, exact
over 8-bit codes, IVF, HNSW, IVF with 8-bit or PQ codes, PQ fast scan with a re-ranking pass, and the
same behind a PCA for wide vectors) and the Milvus backend, at 100k and 1M vectors.

    uv run python bench/index_scale.py --sizes 100000 1000000 --kinds flat sq8 ivf-sq8 pca-ivf-pq-sq8 milvus-flat milvus-ivf-sq8
    uv run python bench/index_scale.py --model efficientnet_lite0 --sizes 10000 100000   # 1,280-d

For each size and kind, through the product's code (`vector_index`, `MilvusVectorIndex` on Milvus Lite,
the client code a Milvus cluster gets too): build time, the index's resident memory (and per vector),
single-query latency (p50/p95, k=10, one query at a time as the service searches) and the CPU time of
that query (on a shared machine wall time also counts the waits for a core; CPU time does not), batch
QPS (all queries in one call) and recall@10 against exact search on the same vectors.

The vectors are not random Gaussians (no cluster structure: every method looks alike on them). They are
drawn from a model fitted on real embeddings of the dev photos by --model (default: the product's
default model, 3,840-d): in the principal axes of those embeddings, synthetic landmarks are drawn with
the spread the real landmarks' means have, and each landmark gets ~50 photos with the spread that real
photos have around their landmark's mean; the directions the dev photos do not span get the smallest
real variance. Each vector is normalised. Queries are new photos of gallery landmarks (like a user's
photo). The script prints how the synthetic vectors' neighbour similarities compare with the real ones.

Vectors, ground truth and real embeddings are cached under data/bench/ (1M x 3840 float32: 15.4 GB on
disk, read through a memory map, so the memory column is each index's own); one index is in memory at a
time.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import resource
import statistics
import time
from pathlib import Path

import faiss
import numpy as np
from common import DEV_DATA, WORK  # also puts the repository on sys.path

from landmarks.evaluation.protocol import dev_protocol
from landmarks.index.milvus import MilvusVectorIndex
from landmarks.index.rerank import RerankIndex
from landmarks.index.vectors import FaissIndex, VectorRows, vector_index
from landmarks.models import DEFAULT_MODEL

PHOTOS_PER_LANDMARK = 50
CHUNK = 50_000


# --- the vectors -----------------------------------------------------------------------------------
def real_embeddings(data: Path, model: str) -> tuple[np.ndarray, np.ndarray]:
    """The dev photos' embeddings with MODEL (cached), and their landmark labels."""
    cache = WORK / f"dev-embeddings-{Path(model).stem}.npz"
    protocol = dev_protocol(data)
    photos = protocol.gallery + protocol.queries
    if not cache.is_file():
        from landmarks.evaluation.evaluate import embed_photos
        from landmarks.models import load_extractor

        extractor = load_extractor(model, device="cpu", runtime="auto")
        embedded = embed_photos(extractor, [path for path, _ in photos], progress=False)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, vectors=embedded.vectors, labels=np.asarray([photos[i][1] for i in embedded.kept]))
    stored = np.load(cache)
    return stored["vectors"].astype(np.float32), stored["labels"]


class Generator:
    """Synthetic landmark photos from a class-conditional Gaussian fitted on real embeddings."""

    def __init__(self, vectors: np.ndarray, labels: np.ndarray) -> None:
        self.dim = vectors.shape[1]
        self.mean = vectors.mean(axis=0)
        _, singular, axes = np.linalg.svd(vectors - self.mean, full_matrices=False)
        keep = singular > singular[0] * 1e-4
        self.axes = axes[keep]  # (r, D), orthonormal rows
        total = singular[keep] ** 2 / (len(vectors) - 1)
        means = {label: vectors[labels == label].mean(axis=0) for label in np.unique(labels)}
        residuals = vectors - np.stack([means[label] for label in labels])
        within = (residuals @ self.axes.T).var(axis=0)
        self.within_std = np.sqrt(within)
        # Between-landmark spread per axis: what the within-landmark spread leaves of the total.
        self.between_std = np.sqrt(np.maximum(total - within, 0.05 * total))
        self.floor_std = float(np.sqrt(total.min()))

    def centres(self, count: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return (self.mean + (rng.standard_normal((count, len(self.axes))) * self.between_std) @ self.axes).astype(
            np.float32
        )

    def photos(self, centres: np.ndarray, which: np.ndarray, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        spread = (rng.standard_normal((len(which), len(self.axes))) * self.within_std) @ self.axes
        floor = rng.standard_normal((len(which), self.dim)) * self.floor_std
        vectors = (centres[which] + spread + floor).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def dataset(generator: Generator, size: int, queries: int) -> tuple[np.ndarray, np.ndarray]:
    """`size` gallery vectors (a memory map, built once) and `queries` query vectors."""
    landmarks = max(1, size // PHOTOS_PER_LANDMARK)
    centres = generator.centres(landmarks, seed=size)
    path = WORK / f"synthetic-{size}x{generator.dim}.f32"
    if not path.is_file():
        WORK.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(size, generator.dim))
        for start in range(0, size, CHUNK):
            count = min(CHUNK, size - start)
            which = np.random.default_rng([size, start]).integers(0, landmarks, count)
            out[start : start + count] = generator.photos(centres, which, seed=size * 7 + start)
        out.flush()
        del out
        tmp.replace(path)
    gallery = np.load(path, mmap_mode="r")
    which = np.random.default_rng([size, 1]).integers(0, landmarks, queries)
    return gallery, generator.photos(centres, which, seed=size * 13 + 1)


def exact_top_k(gallery: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact neighbours, chunk by chunk (never the whole gallery in memory), cached beside the vectors."""
    path = WORK / f"truth-{len(gallery)}x{gallery.shape[1]}-q{len(queries)}-k{k}.npy"
    if path.is_file():
        return np.load(path)
    truth = exact_neighbours(VectorRows.of(np.arange(len(gallery)), gallery), queries, k)
    np.save(path, truth)
    return truth


def exact_neighbours(rows: VectorRows, queries: np.ndarray, k: int) -> np.ndarray:
    """The ids of each query's K nearest rows by inner product, scanned a chunk at a time."""
    heap = faiss.ResultHeap(len(queries), k, keep_max=True)
    for ids, vectors in rows.read():
        flat = faiss.IndexFlatIP(vectors.shape[1])
        flat.add(vectors)
        scores, found = flat.search(queries, min(k, len(vectors)))
        heap.add_result(scores, np.where(found >= 0, ids[found], -1))
    heap.finalize()
    return heap.I


def neighbour_similarity(vectors: np.ndarray) -> tuple[float, float]:
    """Mean cosine to the nearest other vector, and between random pairs."""
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    nearest = float(similarity.max(axis=1).mean())
    np.fill_diagonal(similarity, np.nan)
    return nearest, float(np.nanmean(similarity))


# --- the measurements ------------------------------------------------------------------------------
def anonymous_memory() -> int:
    """Resident anonymous memory in bytes: the index, not the memory-mapped vectors."""
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed memory back, so the growth is the new index
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


Index = FaissIndex | RerankIndex | MilvusVectorIndex
MILVUS = "milvus-"  # a kind's prefix: the same kind on the Milvus backend


def build(kind: str, gallery: np.ndarray, options: dict) -> tuple[Index, float, int]:
    gc.collect()
    before = anonymous_memory()
    started = time.perf_counter()
    if kind.startswith(MILVUS):
        # Milvus Lite, in this process: the memory column counts its server too.
        database = WORK / "milvus-scale.db"
        index: Index = MilvusVectorIndex(
            str(database), f"scale_{len(gallery)}", gallery.shape[1], kind.removeprefix(MILVUS)
        )
    else:
        index = vector_index(gallery.shape[1], kind, use_gpu=False, **options)
    # The memory map goes in whole: FAISS reads it as it adds, so the vectors never sit in memory twice.
    index.rebuild(VectorRows.of(np.arange(len(gallery)), gallery))
    return index, time.perf_counter() - started, anonymous_memory() - before


def tune(index: Index, setting: dict[str, int]) -> None:
    if isinstance(index, MilvusVectorIndex):
        for knob, value in setting.items():
            setattr(index, knob, value)
    elif setting:
        index.tune(**setting)


def close(index: Index) -> None:
    if isinstance(index, MilvusVectorIndex):
        index.drop()  # its segments on disk go too: the next size starts from nothing
        index.close()


def measure(index: Index, queries: np.ndarray, truth: np.ndarray, single: int, k: int = 10) -> dict:
    latencies, cpu = [], []
    for query in queries[:single]:
        started, cpu_started = time.perf_counter(), time.thread_time()
        index.search(query[None, :], k)
        latencies.append(time.perf_counter() - started)
        cpu.append(time.thread_time() - cpu_started)
    started = time.perf_counter()
    _, ids = index.search(queries, k)
    elapsed = time.perf_counter() - started
    recall = float(np.mean([len(set(found) & set(true)) / k for found, true in zip(ids, truth[:, :k], strict=True)]))
    latencies.sort()
    return {
        "p50": statistics.median(latencies) * 1000,
        "p95": latencies[int(0.95 * (len(latencies) - 1))] * 1000,
        "cpu": statistics.median(cpu) * 1000,
        "qps": len(queries) / elapsed,
        "recall": recall,
    }


def sweep(knob: str, values: list[int], **fixed: int) -> list[dict[str, int]]:
    return [{knob: value, **fixed} for value in values]


# Each kind, its build options, and the search settings swept once it is built ({}: none to set).
KINDS: list[tuple[str, str, dict, list[dict[str, int]]]] = [
    ("flat", "flat", {}, [{}]),
    ("sq8", "SQ8 (exact over 8-bit codes)", {}, [{}]),
    ("ivf", "IVF-Flat", {}, sweep("nprobe", [16, 64, 128, 256, 512])),
    ("ivf-sq8", "IVF-SQ8", {}, sweep("nprobe", [16, 64, 128, 256, 512])),
    ("ivf-pq", "IVF-PQ (dim/16 B)", {}, sweep("nprobe", [16, 64, 256])),
    (
        "ivf-pq-rerank",
        "IVF-PQ 4-bit fast scan (dim/8 B) + exact re-rank of 32·k",
        {},
        sweep("nprobe", [64, 128, 256, 512]),
    ),
    (
        "pca-ivf-pq-sq8",
        "PCA 256, IVF-PQ 4-bit fast scan (64 B) + re-rank of max(32·k, 2,560) on 8-bit codes",
        {},
        sweep("nprobe", [256, 512], min_candidates=320) + sweep("nprobe", [128, 256, 512], min_candidates=2560),
    ),
    ("hnsw", "HNSW32 (flat)", {}, sweep("ef_search", [32, 64, 128, 256])),
    ("milvus-flat", "Milvus Lite FLAT", {}, [{}]),
    ("milvus-ivf-sq8", "Milvus Lite IVF_SQ8", {}, sweep("nprobe", [64, 128, 256, 512])),
    ("milvus-hnsw", "Milvus Lite HNSW", {}, sweep("ef_search", [64, 128, 256])),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--kinds", nargs="+", default=[kind for kind, *_ in KINDS if not kind.endswith("hnsw")])
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, help="the model whose dev embeddings the vectors are modelled on"
    )
    parser.add_argument("--queries", type=int, default=1000, help="queries for recall and QPS")
    parser.add_argument("--single", type=int, default=200, help="queries timed one at a time (latency)")
    parser.add_argument(
        "--train-size", type=int, default=100_000, help="vectors IVF trains its cells on (a random sample)"
    )
    parser.add_argument(
        "--hnsw-max", type=int, default=100_000, help="largest size HNSW is built at (its build is the slowest)"
    )
    parser.add_argument("--data", type=Path, default=DEV_DATA)
    args = parser.parse_args()

    vectors, labels = real_embeddings(args.data, args.model)
    generator = Generator(vectors, labels)
    real_near, real_pairs = neighbour_similarity(vectors)
    counts = np.unique(labels, return_counts=True)[1]
    look_alike = generator.photos(
        generator.centres(len(counts), seed=0), np.repeat(np.arange(len(counts)), counts), seed=1
    )
    fake_near, fake_pairs = neighbour_similarity(look_alike)
    print(
        f"vectors: {generator.dim}-d, modelled on {len(vectors)} dev-photo embeddings of {args.model} ({len(generator.axes)} principal axes); "
        f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads"
    )
    print(
        f"sanity, {len(vectors)} vectors in {len(counts)} landmarks: mean cosine to the nearest other vector real {real_near:.3f} / "
        f"synthetic {fake_near:.3f}; between random pairs real {real_pairs:.3f} / synthetic {fake_pairs:.3f}\n"
    )

    print(
        "| vectors | index | search setting | build s | memory MB | bytes/vector | p50 ms | p95 ms | CPU ms p50 | QPS (batch) | recall@10 |"
    )
    print("|---:|:---|:---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        gallery, queries = dataset(generator, size, args.queries)
        truth = exact_top_k(gallery, queries, 10)
        for kind, label, options, settings in KINDS:
            if kind not in args.kinds:
                continue
            if kind.endswith("hnsw") and size > args.hnsw_max:
                print(f"| {size:,} | {label} | | not built: above --hnsw-max | | | | | | | |", flush=True)
                continue
            trained = "ivf" in kind and not kind.startswith(MILVUS)
            index, seconds, memory = build(
                kind, gallery, {**options, "train_size": args.train_size} if trained else options
            )
            # Exact search at 1M is ~0.5 s a query or more: time fewer single queries there.
            exact = kind in ("flat", "sq8", "milvus-flat")
            single = min(args.single, 20) if exact and size > 100_000 else args.single
            for setting in settings:
                tune(index, setting)
                result = measure(index, queries, truth, single)
                setting = " ".join(f"{knob}={value}" for knob, value in setting.items()) or "exact"
                print(
                    f"| {size:,} | {label} | {setting} | {seconds:.1f} | {memory / 2**20:,.0f} | {memory / size:,.0f} | {result['p50']:.2f} | "
                    f"{result['p95']:.2f} | {result['cpu']:.2f} | {result['qps']:,.0f} | {result['recall']:.3f} |",
                    flush=True,
                )
            close(index)
            del index
            gc.collect()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"\npeak resident memory of this run: {peak:.1f} GB (the memory-mapped vectors' pages included)")


if __name__ == "__main__":
    main()
