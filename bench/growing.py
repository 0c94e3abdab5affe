"""Growing-gallery bench: how R@1 and mAP@100 fall as the gallery holds more landmarks (look-alikes).

    uv run python bench/growing.py                       # Markdown table, K = 3, 6, 12, 18, 24
    uv run python bench/growing.py --sizes 6,24 --draws 20 --json out.json

The dev protocol's gallery is embedded once (the real `build_index`, prior included) and its queries
once. For each gallery size K, DRAWS random sets of K landmarks (all 24 once for K = 24) make a
gallery of those landmarks' photos alone (their stored vectors, nothing re-embedded), and the
queries of those K landmarks are searched in it by the real `Searcher`, with the landmark answer
ignored (R@1 is the first match's landmark; no calibration is involved). Each configuration row is
one search setup; the last column is R@1 with all 24 landmarks over R@1 with the fewest: the share
of quality that holds as the gallery grows.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from quality import BASELINE, DEFAULT_DATA, MAP_K, build, cleaned_copy, prepare  # noqa: E402

from landmarks.evaluation import metrics  # noqa: E402
from landmarks.evaluation.protocol import dev_protocol  # noqa: E402
from landmarks.evaluation.table import markdown_grid  # noqa: E402
from landmarks.search import SearchConfig  # noqa: E402

CONFIGS = {
    "baseline": ("nearest photo (the first service)", replace(BASELINE, calibrated=False)),
    "default": ("default ranking (aggregation + grouping)", replace(SearchConfig(), calibrated=False)),
    "cleaned": ("default ranking, gallery cleaned", replace(SearchConfig(), calibrated=False)),
}


def sub_index(source, landmark_ids: set[str], directory: Path):
    """A new index of the source index's photos of LANDMARK_IDS, from their stored vectors and priors."""
    from landmarks.index import GalleryIndex

    ids, vectors, labels = source.store.vectors(source.vectors.dim)
    priors = source.store.priors()
    records = {record.image_id: record for record in source.store.images().values()}
    landmarks = [lm for lid, lm in source.landmarks().items() if lid in landmark_ids]
    index = GalleryIndex.open(
        directory,
        fingerprint=source.store.get_meta("fingerprint"),
        model=source.store.get_meta("model"),
        dim=source.vectors.dim,
    )
    rows = [
        (label, records[i].source, records[i].path, 0, 0.0, vector, priors.get(int(i)))
        for i, vector, label in zip(ids.tolist(), vectors, labels, strict=True)
        if label in landmark_ids
    ]
    index.add(landmarks, rows)
    return index


def measure(source, landmark_ids, queries, config, extractor, workdir: Path) -> tuple[float, float]:
    """(R@1, mAP@100) of the queries of LANDMARK_IDS in a gallery of those landmarks alone."""
    from landmarks.search import Searcher

    with tempfile.TemporaryDirectory(dir=workdir) as scratch:
        index = sub_index(source, set(landmark_ids), Path(scratch) / "index")
        searcher = Searcher(extractor, index, config)
        chosen = [(query, label) for query, label in queries if label in landmark_ids]
        ranked = [[m.landmark_id for m in searcher.search([q], MAP_K)[0].matches] for q, _ in chosen]
        counts = index.store.image_counts()
        searcher.close()
        index.close()
    padded = np.array([r + [None] * (MAP_K - len(r)) for r in ranked], dtype=object)
    truth = [label for _, label in chosen]
    relevance = metrics.relevance_matrix(padded, truth)
    return metrics.recall_at_k(relevance, 1), metrics.map_at_k(relevance, [counts.get(t, 0) for t in truth], MAP_K)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--workdir", type=Path, default=REPO / "data" / "bench-quality")
    parser.add_argument("--sizes", default="3,6,12,18,24", help="gallery sizes K (landmarks)")
    parser.add_argument("--draws", type=int, default=10, help="random landmark sets per size below all")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"rows among {', '.join(CONFIGS)}")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch

    from api.settings import Settings
    from landmarks.index import GalleryIndex
    from landmarks.logs import setup_logging
    from landmarks.models import DEFAULT_MODEL, load_extractor

    setup_logging("warning")
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    protocol = dev_protocol(args.data)
    extractor = load_extractor(DEFAULT_MODEL, device="cpu", runtime="auto")
    prior = Settings.from_env().landmark_prior()
    args.workdir.mkdir(parents=True, exist_ok=True)
    index_dir, _ = build(protocol, args.workdir, extractor, DEFAULT_MODEL, prior)
    prepared = prepare(protocol, extractor, prior, SearchConfig(), spatial=False)
    landmark_photos = prepared[: len(protocol.queries)]  # then the distractors, not used here
    queries = [(item.query, label) for item, (_, label) in zip(landmark_photos, protocol.queries, strict=True)]
    everything = protocol.landmark_ids
    sizes = [int(k) for k in args.sizes.split(",")]
    rng = random.Random(0)
    draws = {
        k: [everything] if k >= len(everything) else [rng.sample(everything, k) for _ in range(args.draws)]
        for k in sizes
    }

    rows, results = [], {}
    for name in [c.strip() for c in args.configs.split(",") if c.strip()]:
        description, config = CONFIGS[name]
        directory = cleaned_copy(index_dir, extractor) if name == "cleaned" else index_dir
        source = GalleryIndex.open(
            directory, fingerprint=extractor.fingerprint, model=extractor.source, dim=extractor.dim, create=False
        )
        figures = {}
        for k in sizes:
            measured = [measure(source, chosen, queries, config, extractor, args.workdir) for chosen in draws[k]]
            figures[k] = tuple(float(np.mean(values)) for values in zip(*measured, strict=True))
            print(f"{name} K={k}: R@1 {figures[k][0]:.3f} mAP@100 {figures[k][1]:.3f}", file=sys.stderr, flush=True)
        source.close()
        results[name] = figures
        held = figures[max(sizes)][0] / figures[min(sizes)][0]
        rows.append([description] + [f"{figures[k][0]:.3f} / {figures[k][1]:.3f}" for k in sizes] + [f"{held:.3f}"])
    header = ["configuration"] + [f"K={k}: R@1 / mAP" for k in sizes] + [f"R@1 K={max(sizes)} / K={min(sizes)}"]
    print("\n".join(markdown_grid(header, rows)))
    print(
        f"\n{len(protocol.queries)} queries of 24 landmarks; {args.draws} random landmark sets per K below 24; "
        f"model {extractor.describe()}."
    )
    if args.json:
        args.json.write_text(json.dumps({n: {str(k): v for k, v in f.items()} for n, f in results.items()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
