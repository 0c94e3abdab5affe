"""Cross-validated recognition on the dev photos: every photo is a query once (the protocol's five folds).

    uv run python bench/folds.py                        # the default model against efficientnet_lite0
    uv run python bench/folds.py --models efficientnet_lite0 efficientnet_lite1 efficientnet_lite2 efficientnet_lite_ensemble

The reported protocol (fold 0) has 146 landmark queries, so one query is 0.7 points of R@1 and two
models often differ by luck. Here each model embeds every dev photo once. Fold f takes photos f, f+5,
f+10, ... of each landmark as queries and the rest as the gallery (`dev_protocol(fold=f)`). Landmarks
are ranked with the service's rule (`landmarks.search.rank_landmarks`: the mean of a landmark's best 2
among the top 100 photos). The table gives R@1 per fold, R@1 over all 676 queries, and the embedding
time per photo (batches of 16, this machine, this run: compare models within one run only).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from common import DEV_DATA  # bench/common.py also puts the repository on sys.path

from landmarks.evaluation import metrics
from landmarks.evaluation.evaluate import SERVICE, top_landmarks
from landmarks.evaluation.protocol import dev_protocol
from landmarks.evaluation.table import markdown_grid

FOLDS = 5


def fold_hits(vectors: dict[Path, np.ndarray], gallery: list[tuple[Path, str]], queries: list[tuple[Path, str]]) -> int:
    """How many queries get their own landmark first under the service's landmark ranking."""
    gallery_vectors = np.stack([vectors[path] for path, _ in gallery])
    gallery_labels = np.array([label for _, label in gallery], dtype=object)
    ranked, scores = metrics.top_k(
        np.stack([vectors[path] for path, _ in queries]), gallery_vectors, SERVICE.candidates
    )
    predicted, _ = top_landmarks(gallery_labels[ranked], scores)
    return sum(found == truth for found, (_, truth) in zip(predicted, queries, strict=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, default=DEV_DATA, help="the landmarks-dev folder (default: ../shared/data/landmarks-dev)"
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=None,
        help="model names or files (default: efficientnet_lite0 and the default model)",
    )
    parser.add_argument(
        "--runtime", default="auto", choices=["auto", "eager", "onnx"], help="embedding runtime (default: auto)"
    )
    args = parser.parse_args(argv)

    import torch

    from landmarks.evaluation.evaluate import embed_photos
    from landmarks.images import decode_image
    from landmarks.logs import setup_logging
    from landmarks.models import DEFAULT_MODEL, load_extractor

    setup_logging("warning")
    torch.set_num_threads(2)
    models = args.models or list(dict.fromkeys(["efficientnet_lite0", DEFAULT_MODEL]))
    folds = [dev_protocol(args.data, fold=fold) for fold in range(FOLDS)]
    photos = [path for path, _ in folds[0].gallery + folds[0].queries]
    rows = []
    for model in models:
        extractor = load_extractor(model, device="cpu", runtime=args.runtime)
        extractor.embed_images([decode_image(photos[0])])  # warm-up: one-off costs stay off the clock
        started = time.perf_counter()
        embedded = embed_photos(extractor, photos, desc=model)
        ms_per_photo = (time.perf_counter() - started) * 1000 / len(photos)
        vectors = {photos[position]: vector for position, vector in zip(embedded.kept, embedded.vectors, strict=True)}
        hits = [fold_hits(vectors, protocol.gallery, protocol.queries) for protocol in folds]
        sizes = [len(protocol.queries) for protocol in folds]
        rows.append(
            [
                f"{model} ({extractor.config.image_size} px, {extractor.dim}-d)",
                *(f"{h}/{n}" for h, n in zip(hits, sizes, strict=True)),
                f"{sum(hits) / sum(sizes):.3f}",
                f"{ms_per_photo:.0f}",
            ]
        )
        print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
    header = ["model", *(f"fold {f}" for f in range(FOLDS)), "R@1, all folds", "ms/photo"]
    print("\n".join(markdown_grid(header, rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
