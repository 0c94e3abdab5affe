"""ONNX Runtime's spinning threads, measured: a search runs the embedding and the landmark prior in turn.

    uv run python bench/sessions.py [--models efficientnet_lite0 efficientnet_lite_ensemble] [--photos 30]

For each model, embeds the first PHOTOS dev queries one at a time, each followed by the landmark prior
of the same photo (what the service does for every search), once with the sessions as the engine opens
them (landmarks.models.ort_session.cpu_session: idle threads sleep) and once with ONNX Runtime's
default (idle threads spin, waiting for the next run). It prints ms a photo for each and their ratio,
from one run on one machine.
"""

from __future__ import annotations

import argparse
import time

from common import DEV_DATA  # (sets sys.path)

from landmarks.evaluation.protocol import dev_protocol
from landmarks.images import decode_image
from landmarks.models import load_extractor
from landmarks.models.ort_session import cpu_session
from landmarks.quality.prior import load_prior


def ms_per_photo(extractor, prior, photos, rounds: int = 2) -> float:
    extractor.embed_images(photos[:1])
    prior.of_images(photos[:1])
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for photo in photos:
            extractor.embed_images([photo])
            prior.of_images([photo])
        best = min(best, (time.perf_counter() - start) / len(photos) * 1000)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["efficientnet_lite0", "efficientnet_lite_ensemble"])
    parser.add_argument("--photos", type=int, default=30)
    args = parser.parse_args(argv)

    protocol = dev_protocol(DEV_DATA)
    photos = [decode_image(path, draft=768) for path, _ in protocol.queries[: args.photos]]
    print("| model | threads sleep (the engine's) ms | threads spin (ORT default) ms | spin / sleep |")
    print("|---|---:|---:|---:|")
    for name in args.models:
        extractor, prior = load_extractor(name, runtime="onnx"), load_prior()
        sleeping = ms_per_photo(extractor, prior, photos)
        embedder = extractor._onnx
        threads = embedder.session.get_session_options().intra_op_num_threads
        embedder.session = cpu_session(embedder.path, threads, spin=True)
        prior.session = cpu_session(prior.graph, prior.session.get_session_options().intra_op_num_threads, spin=True)
        spinning = ms_per_photo(extractor, prior, photos)
        print(f"| {name} | {sleeping:.1f} | {spinning:.1f} | x{spinning / sleeping:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
