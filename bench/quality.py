"""Quality bench: R@1, mAP@100, GAP, refusals and per-query latency of each search stage on the dev protocol.

    uv run python bench/quality.py                      # every stage row, in process, Markdown table
    uv run python bench/quality.py --http               # + the default configuration through the real HTTP API
    uv run python bench/quality.py --stages baseline,default --json out.json
    uv run python bench/quality.py --model efficientnet_lite0 --stages default   # another embedding model

For each configuration (a row): the index of the protocol's gallery is built once (the real
`build_index`, local features included), a calibration is fitted for that configuration exactly as
`landmarks calibrate` does (gallery photos leave-one-out plus gallery photos with their landmark
left out: no evaluation query and no distractor is used), then every query and distractor is decoded,
embedded and searched one at a time, timing each (p50/p95 latency per query).

Metrics (landmarks.evaluation.metrics): R@1 and mAP@100 over the returned matches (k=100) of the
landmark queries; GAP over the `landmark` answers (a null answer is no prediction; an answer to a
distractor is wrong); ACC: landmark queries answered with the right landmark (null is wrong); REFUSED:
distractors answered null.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from landmarks.evaluation import metrics  # noqa: E402
from landmarks.evaluation.protocol import Protocol, dev_protocol, materialize_gallery  # noqa: E402
from landmarks.evaluation.table import markdown_grid  # noqa: E402
from landmarks.search import Query, SearchConfig  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "landmarks-dev"
MAP_K = 100

# name -> (description, config). "default" is SearchConfig() itself: what the service runs; "cleaned"
# runs it on a copy of the index that `landmarks index clean` has cleaned (the gallery alone decides).
BASELINE = SearchConfig(spatial=False, aggregate_top=1, group_matches=False, prior_keep=0.0)
STAGES: dict[str, tuple[str, SearchConfig]] = {
    "baseline": (
        "embedding only (the first service: best photo, cosine threshold)",
        replace(BASELINE, calibrated=False),
    ),
    "calibrated": ("+ calibrated confidence", BASELINE),
    "multiscale": ("+ multi-scale 320+384 px (query and gallery)", replace(BASELINE, scales=(1.0, 1.2))),
    "spatial": ("+ spatial verification (SIFT, RANSAC, top 10)", replace(BASELINE, spatial=True)),
    "qe_dba": ("+ alpha-QE (k=2) and DBA (k=3)", replace(BASELINE, qe_k=2, dba_k=3)),
    "aggregation": ("+ landmark aggregation (mean of best 2 photos)", replace(BASELINE, aggregate_top=2)),
    "grouping": ("+ matches grouped by landmark (discriminative re-ranking)", replace(BASELINE, group_matches=True)),
    "prior": ("+ landmark prior gate (ImageNet head, 98% of the gallery)", replace(BASELINE, prior_keep=0.98)),
    "default": ("default: aggregation + grouping + calibration + prior gate", SearchConfig()),
    "cleaned": ("default, gallery cleaned (`landmarks index clean`)", SearchConfig()),
    "default_spatial": ("default + spatial verification", replace(SearchConfig(), spatial=True)),
    "all": (
        "all stages: default + spatial + multi-scale + QE/DBA",
        replace(SearchConfig(), spatial=True, scales=(1.0, 1.2), qe_k=2, dba_k=3),
    ),
}


@dataclass
class Row:
    name: str
    description: str
    r1: float
    map100: float
    gap: float
    accuracy: float
    refused: float
    p50_ms: float
    p95_ms: float
    queries: int
    distractors: int
    fit: dict

    def cells(self) -> list[str]:
        return [
            self.description,
            f"{self.r1:.3f}",
            f"{self.map100:.3f}",
            f"{self.gap:.3f}",
            f"{self.accuracy:.3f}",
            f"{self.refused:.0%}",
            f"{self.p50_ms:.0f}",
            f"{self.p95_ms:.0f}",
        ]


HEADER = ["configuration", "R@1", "mAP@100", "GAP", "ACC", "REFUSED", "p50 ms", "p95 ms"]


def markdown(rows: list[Row]) -> str:
    return "\n".join(markdown_grid(HEADER, [row.cells() for row in rows])) + "\n"


def score(
    name: str,
    description: str,
    answers: list[dict],
    protocol: Protocol,
    gallery_counts: dict[str, int],
    latencies: list[float],
    fit: dict,
) -> Row:
    """answers: per query then per distractor, {"matches": [landmark ids], "landmark": id|None, "confidence": float}."""
    truth = [label for _, label in protocol.queries] + [None] * len(protocol.distractors)
    landmark_rows = list(range(len(protocol.queries)))
    ranked = [answers[i]["matches"][:MAP_K] for i in landmark_rows]
    width = max(MAP_K, max((len(r) for r in ranked), default=0))
    padded = np.array([r + [None] * (width - len(r)) for r in ranked], dtype=object)
    relevance = metrics.relevance_matrix(padded, [truth[i] for i in landmark_rows])
    predicted = [a["landmark"] for a in answers]
    confidence = [a["confidence"] for a in answers]
    distractors = answers[len(protocol.queries) :]
    return Row(
        name=name,
        description=description,
        r1=metrics.recall_at_k(relevance, 1),
        map100=metrics.map_at_k(relevance, [gallery_counts.get(truth[i], 0) for i in landmark_rows], MAP_K),
        gap=metrics.gap(predicted, confidence, truth),
        accuracy=metrics.accuracy(predicted[: len(landmark_rows)], truth[: len(landmark_rows)]),
        refused=float(np.mean([a["landmark"] is None for a in distractors])) if distractors else float("nan"),
        p50_ms=float(np.percentile(latencies, 50) * 1000),
        p95_ms=float(np.percentile(latencies, 95) * 1000),
        queries=len(protocol.queries),
        distractors=len(protocol.distractors),
        fit=fit,
    )


def build(protocol: Protocol, workdir: Path, extractor, model: str, prior, kind: str = "flat") -> tuple[Path, float]:
    """The protocol gallery's index of this FAISS kind, and its FAISS bytes a photo."""
    from landmarks.gallery import scan_gallery
    from landmarks.index import build_index

    gallery_dir = materialize_gallery(protocol.gallery, workdir / "gallery", protocol.root / "images" / "landmarks.csv")
    index_dir = workdir / (f"index-{Path(model).stem}" + ("" if kind == "flat" else f"-{kind}"))
    report = build_index(scan_gallery(gallery_dir), extractor, index_dir, kind=kind, progress=False, prior=prior)
    per_photo = (index_dir / "vectors.faiss").stat().st_size / max(1, report.total)
    print(
        f"index {index_dir}: {report.total} photos of {report.landmarks} landmarks, {kind} FAISS index of "
        f"{per_photo:.0f} bytes a photo",
        file=sys.stderr,
    )
    return index_dir, per_photo


def cleaned_copy(index_dir: Path, extractor) -> Path:
    """A copy of the index with the suspects of landmarks.quality.cleaning excluded, as `landmarks index
    clean` does."""
    import shutil

    from landmarks.index import GalleryIndex
    from landmarks.quality.cleaning import exclude_suspects, review_gallery

    cleaned = index_dir.with_name(index_dir.name + "-cleaned")
    shutil.rmtree(cleaned, ignore_errors=True)
    shutil.copytree(index_dir, cleaned)
    index = GalleryIndex.open(
        cleaned, fingerprint=extractor.fingerprint, model=extractor.source, dim=extractor.dim, create=False
    )
    suspects = review_gallery(index)
    exclude_suspects(index, suspects)
    index.save()
    index.close()
    print(f"cleaning excluded {len(suspects)} gallery photos ({cleaned})", file=sys.stderr)
    return cleaned


@dataclass
class Prepared:
    """A query photo embedded (and its local features extracted) once per scale set, with the times."""

    query: Query
    embed_seconds: float  # decode + embedding (all scales)
    local_seconds: float  # local feature extraction


def prepare(protocol: Protocol, extractor, prior, config: SearchConfig, spatial: bool) -> list[Prepared]:
    from landmarks.images import decode_image
    from landmarks.quality.local_features import extract
    from landmarks.quality.multiscale import MultiScaleEmbedder

    embedder = MultiScaleEmbedder(extractor, config.scales) if config.multiscale else extractor
    embedder.embed_images([decode_image(protocol.queries[0][0])])  # warm-up
    out = []
    for path in [p for p, _ in protocol.queries] + list(protocol.distractors):
        data = path.read_bytes()
        t0 = time.perf_counter()
        image = decode_image(data)
        vector = embedder.embed_images([image])
        photo_prior = float(prior.of_images([image])[0]) if prior is not None else None
        t1 = time.perf_counter()
        local = extract(image, config.local_params) if spatial else None
        t2 = time.perf_counter()
        out.append(Prepared(Query(vector[0], local, photo_prior), t1 - t0, t2 - t1))
    return out


def run_in_process(
    name: str,
    description: str,
    config: SearchConfig,
    protocol: Protocol,
    extractor,
    prior,
    index_dir: Path,
    threshold: float | None,
    prepared_cache: dict,
) -> Row:
    """Latency per query = decode + embed (+ local features when verifying) + search, each timed per photo."""
    from landmarks.index import GalleryIndex
    from landmarks.quality.calibration import Calibration, fit_searcher
    from landmarks.search import Searcher

    index = GalleryIndex.open(
        index_dir, fingerprint=extractor.fingerprint, model=extractor.source, dim=extractor.dim, create=False
    )
    fit: dict = {}
    calibration = Calibration()
    started = time.perf_counter()
    if config.calibrated:
        fitting = Searcher(extractor, index, replace(config, calibrated=False), calibration=Calibration())
        model = fit_searcher(fitting)  # as `landmarks calibrate` with its defaults
        fitting.close()
        calibration.models[config.signature()] = model
        fit = {"features": model.features, "weights": model.weights, "bias": model.bias, **model.report}
    fit["seconds"] = time.perf_counter() - started
    searcher = Searcher(
        extractor,
        index,
        replace(config, threshold=threshold) if threshold is not None else config,
        calibration=calibration,
        prior=prior,
    )
    key = (tuple(config.scales), config.local_params.key if searcher.spatial_active else None)
    if key not in prepared_cache:
        prepared_cache[key] = prepare(protocol, extractor, prior, config, searcher.spatial_active)
    prepared = prepared_cache[key]
    searcher.search([prepared[0].query], MAP_K)  # warm-up: lazy state
    answers, latencies = [], []
    for item in prepared:
        t0 = time.perf_counter()
        result = searcher.search([item.query], MAP_K)[0]
        latencies.append(item.embed_seconds + item.local_seconds + time.perf_counter() - t0)
        answers.append(
            {
                "matches": [m.landmark_id for m in result.matches],
                "landmark": result.landmark.landmark_id if result.landmark else None,
                "confidence": result.confidence,
            }
        )
    searcher.close()
    counts = index.store.image_counts()
    index.close()
    return score(name, description, answers, protocol, counts, latencies, fit)


def run_http(protocol: Protocol, index_dir: Path, env: dict[str, str]) -> Row:
    """The default configuration through `landmarks serve` on loopback: POST /search?k=100 per photo."""
    import httpx
    from server import ApiServer

    from landmarks.index.gallery_index import STORE_FILE
    from landmarks.index.store import GalleryStore

    store = GalleryStore(index_dir / STORE_FILE)
    counts = store.image_counts()
    store.close()
    answers, latencies = [], []
    with ApiServer(index_dir, env=env) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        warm = protocol.queries[0][0]
        client.post("/search", params={"k": MAP_K}, files={"image": (warm.name, warm.read_bytes(), "image/jpeg")})
        for path in [p for p, _ in protocol.queries] + list(protocol.distractors):
            data = path.read_bytes()
            t0 = time.perf_counter()
            response = client.post("/search", params={"k": MAP_K}, files={"image": (path.name, data, "image/jpeg")})
            latencies.append(time.perf_counter() - t0)
            response.raise_for_status()
            body = response.json()
            answers.append(
                {
                    "matches": [m["landmark_id"] for m in body["matches"]],
                    "landmark": body["landmark"]["landmark_id"] if body["landmark"] else None,
                    "confidence": body["landmark"]["confidence"] if body["landmark"] else 0.0,
                }
            )
    return score(
        "http",
        "default configuration through the HTTP API (calibration from `landmarks calibrate`)",
        answers,
        protocol,
        counts,
        latencies,
        {},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help="the landmarks-dev folder (default: ../shared/data/landmarks-dev)",
    )
    parser.add_argument(
        "--workdir", type=Path, default=REPO / "data" / "bench-quality", help="where the gallery links and the index go"
    )
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated rows among {', '.join(STAGES)}")
    parser.add_argument(
        "--http", action="store_true", help="also run the default configuration through the real HTTP API"
    )
    parser.add_argument(
        "--threshold", type=float, default=None, help="operating threshold on confidence (default: the calibration's)"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the rows as JSON here")
    parser.add_argument(
        "--kinds",
        nargs="+",
        default=["flat"],
        help="FAISS index kinds of the gallery (`index build --kind`), each measured in turn (default flat; "
        "`--kinds flat sq8` compares the default compact kind with exact float vectors)",
    )
    parser.add_argument(
        "--model", default=None, help="embedding model name or file (default: the service's default model)"
    )
    parser.add_argument(
        "--runtime",
        default="auto",
        choices=["auto", "eager", "onnx"],
        help="embedding runtime, as the service's LANDMARKS_RUNTIME (default: auto, ONNX Runtime on CPU)",
    )
    args = parser.parse_args(argv)

    import torch

    from api.settings import Settings
    from landmarks.logs import setup_logging
    from landmarks.models import DEFAULT_MODEL, load_extractor

    setup_logging("warning")
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    protocol = dev_protocol(args.data)
    model = args.model or DEFAULT_MODEL
    extractor = load_extractor(model, device="cpu", runtime=args.runtime)
    prior = Settings.from_env().landmark_prior()  # as the service and `index build` load it
    args.workdir.mkdir(parents=True, exist_ok=True)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    for name in stages:
        if name not in STAGES:
            parser.error(f"unknown stage {name!r}; choose among {', '.join(STAGES)}")
    rows: list[Row] = []
    sizes: dict[str, float] = {}
    for kind in args.kinds:
        index_dir, sizes[kind] = build(protocol, args.workdir, extractor, model, prior, kind)
        prepared_cache: dict = {}
        for name in stages:
            description, config = STAGES[name]
            searched = cleaned_copy(index_dir, extractor) if name == "cleaned" else index_dir
            label = name if len(args.kinds) == 1 else f"{name}, {kind}"
            described = description if len(args.kinds) == 1 else f"{description}, {kind} index"
            row = run_in_process(
                label, described, config, protocol, extractor, prior, searched, args.threshold, prepared_cache
            )
            rows.append(row)
            print(
                f"{label}: " + " | ".join(f"{h} {c}" for h, c in zip(HEADER[1:], row.cells()[1:], strict=True)),
                file=sys.stderr,
                flush=True,
            )
    if args.http:
        from cli import main as cli_main

        env = {"LANDMARKS_MODEL": model, "LANDMARKS_RUNTIME": args.runtime}
        if args.threshold is not None:
            env["LANDMARKS_THRESHOLD"] = str(args.threshold)
        cli_main(["calibrate", "--index", str(index_dir), "--model", model, "--runtime", args.runtime, "--no-progress"])
        rows.append(run_http(protocol, index_dir, env))
        print(
            "http: " + " | ".join(f"{h} {c}" for h, c in zip(HEADER[1:], rows[-1].cells()[1:], strict=True)),
            file=sys.stderr,
            flush=True,
        )
    first = rows[0] if rows else None
    print(markdown(rows), end="")
    print("\nFAISS index bytes a photo: " + ", ".join(f"{kind} {size:,.0f}" for kind, size in sizes.items()))
    if first:
        print(
            f"\n{first.queries} landmark queries, {first.distractors} distractor queries; model {extractor.describe()}; "
            f"latency: decode + embed + search per photo, one at a time, {torch.get_num_threads()} threads."
        )
    if args.json:
        args.json.write_text(json.dumps([row.__dict__ for row in rows], indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
