"""`index build` throughput: today's paths against the legacy one, side by side in one run.

    uv run python bench/indexing.py [--large-side 3000] [--pipelines legacy default spatial draft1] [--model NAME]

Builds a fresh index of the dev protocol's gallery (530 photos of up to 640 px) with each variant:
`legacy` is `index build` as it was (every photo decoded at full size, and SIFT local features
extracted for every photo; still selectable: `--pipeline legacy` with LANDMARKS_LOCAL_FEATURES=1);
`default` decodes JPEGs at reduced size, at least twice the pixels a side that each network needs
(landmarks.index.loading), and extracts no local features, as `index build` does unless spatial
verification is on; `spatial` is the default with local features (LANDMARKS_SPATIAL=1); `draft1`
decodes at just the pixels needed. Then it does the same on the gallery upscaled to LARGE_SIDE px
(written once under data/bench/, JPEG quality 90), where decoding counts as it does for phone photos.
The model is loaded once and each build starts from an empty folder, so the figures are a build's
per-photo work: decoding, embedding, landmark prior, local features when asked, and FAISS. It prints
photos/s, each variant's ratio to the first (the figure to quote: one run, one machine), the lowest
cosine between a photo's vector and the first's, and R@1 of the protocol's queries (decoded in full)
against each build. Last, what an upload costs the service before the model: decoding a 12 MP JPEG
and resizing it for the model and the prior, at full size and at the service's reduced size.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from common import DEV_DATA, WORK, scaled_to  # (sets sys.path)

from landmarks.evaluation import metrics
from landmarks.evaluation.protocol import dev_protocol, materialize_gallery
from landmarks.gallery import scan_gallery
from landmarks.images import decode_image
from landmarks.index import GalleryIndex, build_index
from landmarks.index.build import DEFAULT_LOCAL_FEATURES
from landmarks.index.loading import DEFAULT_PIPELINE, PIPELINES, photo_draft
from landmarks.models import DEFAULT_MODEL, load_extractor
from landmarks.quality.prior import load_prior

# name -> (pipeline, local features). `legacy` is `index build` as issue 22 found it: every photo decoded
# at full size and SIFT extracted for every photo (`--pipeline legacy` with LANDMARKS_LOCAL_FEATURES=1);
# `default` is today's without spatial verification (the default), `spatial` today's with it on.
VARIANTS = {
    "legacy": (PIPELINES["legacy"], DEFAULT_LOCAL_FEATURES),
    "default": (DEFAULT_PIPELINE, None),
    "spatial": (DEFAULT_PIPELINE, DEFAULT_LOCAL_FEATURES),
    "draft1": (replace(DEFAULT_PIPELINE, draft=1.0), None),
}


def upscaled(gallery: list[tuple[Path, str]], side: int) -> Path:
    """The gallery's photos upscaled so that the longest side is SIDE px (written once)."""
    out = WORK / f"gallery-{side}px"
    for path, landmark_id in gallery:
        target = out / landmark_id / path.name
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        scaled_to(path, side).save(target, quality=90)
    return out


def timed_build(
    gallery_dir: Path, extractor, prior, pipeline, local_features
) -> tuple[float, dict[str, tuple[str, np.ndarray]]]:
    """Seconds to build, and each photo's (landmark, vector) by its source key."""
    gallery = scan_gallery(gallery_dir)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        build_index(
            gallery,
            extractor,
            Path(tmp) / "index",
            pipeline=pipeline,
            progress=False,
            prior=prior,
            local_features=local_features,
        )
        seconds = time.perf_counter() - start
        index = GalleryIndex.open_recorded(Path(tmp) / "index")
        try:
            ids, vectors, labels = index.store.vectors(extractor.dim, matched_only=False)
            sources = {record.image_id: source for source, record in index.store.images().items()}
        finally:
            index.close()
    return seconds, {
        sources[int(image_id)]: (label, vector) for image_id, vector, label in zip(ids, vectors, labels, strict=True)
    }


def recall_at_1(built: dict[str, tuple[str, np.ndarray]], queries: np.ndarray, query_labels: list[str]) -> float:
    """R@1 of the queries against the build's vectors (nearest photo), as `landmarks eval` computes it."""
    labels = np.asarray([label for label, _ in built.values()], dtype=object)
    ranked, _ = metrics.top_k(queries, np.stack([vector for _, vector in built.values()]), 1)
    return metrics.recall_at_k(metrics.relevance_matrix(labels[ranked], query_labels), 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--large-side", type=int, default=3000, help="0: only the photos as they are")
    parser.add_argument("--model", default=None, help="default: the default model")
    parser.add_argument("--pipelines", nargs="+", default=["legacy", "default", "spatial"], choices=sorted(VARIANTS))
    parser.add_argument("--workers", type=int, default=None, help="decoding processes of the non-legacy pipelines")
    args = parser.parse_args(argv)

    extractor = load_extractor(args.model or DEFAULT_MODEL, runtime="auto")
    prior = load_prior()
    protocol = dev_protocol(DEV_DATA)
    queries = extractor.embed_images(decode_image(path) for path, _ in protocol.queries)
    query_labels = [label for _, label in protocol.queries]
    sets = [
        (
            f"dev gallery ({len(protocol.gallery)}, up to 640 px)",
            materialize_gallery(protocol.gallery, WORK / "gallery"),
        )
    ]
    if args.large_side:
        sets.append((f"dev gallery upscaled to {args.large_side} px", upscaled(protocol.gallery, args.large_side)))
    print(f"model {extractor.describe()}\n")
    print("| photos | pipeline | s | photos/s | vs first | lowest cosine to first | R@1 |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for label, folder in sets:
        first: tuple[float, dict] | None = None
        for name in args.pipelines:
            pipeline, local_features = VARIANTS[name]
            if name != "legacy" and args.workers is not None:
                pipeline = replace(pipeline, workers=args.workers)
            seconds, built = timed_build(folder, extractor, prior, pipeline, local_features)
            ratio = cosine = ""
            if first is None:
                first = (seconds, built)
            else:
                ratio = f"x{first[0] / seconds:.2f}"
                cosine = f"{min(float(vector @ first[1][key][1]) for key, (_, vector) in built.items()):.4f}"
            r1 = recall_at_1(built, queries, query_labels)
            print(
                f"| {label} | {name} | {seconds:.1f} | {len(built) / seconds:.1f} | {ratio} | {cosine} | {r1:.3f} |",
                flush=True,
            )
    upload_costs(extractor, prior, [path for path, _ in protocol.queries[::15]])
    return 0


def upload_costs(extractor, prior, photos: list[Path], side: int = 4032, rounds: int = 3) -> None:
    """Median ms to decode a phone-size JPEG and preprocess it for the model and the prior, one thread."""
    uploads = []
    for path in photos:
        buffer = io.BytesIO()
        scaled_to(path, side).save(buffer, "JPEG", quality=90)
        uploads.append(buffer.getvalue())
    reduced = photo_draft(extractor.preprocess.image_size)
    print(f"\n| a {side} px upload, decoded | decode + preprocess ms, median of {rounds * len(uploads)} |\n|---|---:|")
    for label, draft in (("at full size", None), (f"at {reduced} px or more (the service)", reduced)):
        times = []
        for _ in range(rounds):
            for data in uploads:
                start = time.perf_counter()
                photo = decode_image(data, draft=draft)
                extractor.preprocess(photo), prior.preprocess(photo)
                times.append(time.perf_counter() - start)
        print(f"| {label} | {statistics.median(times) * 1000:.0f} |")


if __name__ == "__main__":
    raise SystemExit(main())
