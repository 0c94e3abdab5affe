"""`landmarks calibrate --index INDEX_DIR`: fit the calibrated confidence and store it with the index.

The search configuration is the service's (LANDMARKS_* variables), so run it with the same settings
as `landmarks serve`; the model is stored under that configuration's signature in
INDEX_DIR/calibration.json, beside models fitted for other configurations.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.index import add_model_arguments, load_model, open_existing_index


def register(commands) -> None:
    calibrate = commands.add_parser(
        "calibrate",
        help="fit the confidence calibration of an index (stored in INDEX_DIR/calibration.json)",
        description=(
            "Fit confidence = P(top landmark is right) on labelled photos that are not evaluation queries: each "
            "gallery photo searched against the rest of the gallery, gallery photos searched with their landmark "
            "left out (an unknown landmark), and optional folders of photos without landmarks."
        ),
    )
    calibrate.add_argument(
        "--index", type=Path, default=None, metavar="INDEX_DIR", help="default: LANDMARKS_INDEX_DIR, else data/index"
    )
    calibrate.add_argument(
        "--negatives",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="a folder of photos that show no known landmark (repeatable)",
    )
    calibrate.add_argument(
        "--unknown-every",
        type=int,
        default=2,
        metavar="N",
        help="also search every N-th gallery photo with its landmark left out (0: never; default 2)",
    )
    calibrate.add_argument(
        "--sample",
        type=int,
        default=None,
        metavar="N",
        help="probe at most N gallery photos, drawn at random (default: every photo; a million-photo "
        "gallery would take a million and a half searches)",
    )
    calibrate.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="operating threshold on confidence stored with the calibration "
        "(default: the highest that keeps --keep-right of the right answers)",
    )
    calibrate.add_argument(
        "--keep-right",
        type=float,
        default=None,
        metavar="SHARE",
        help="share of the right leave-one-out answers the default threshold keeps "
        "(default: landmarks.quality.calibration.DEFAULT_KEEP_RIGHT)",
    )
    calibrate.add_argument(
        "--negative-share",
        type=float,
        default=None,
        metavar="SHARE",
        help="expected share of searched photos without a known landmark: the negatives' weight "
        "(default: landmarks.quality.calibration.DEFAULT_NEGATIVE_SHARE)",
    )
    calibrate.add_argument("--no-progress", action="store_true")
    add_model_arguments(calibrate)
    calibrate.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cli import CommandError
    from landmarks.images import IMAGE_SUFFIXES, ImageError, decode_image
    from landmarks.quality.calibration import CALIBRATION_FILE, Calibration, fit_searcher
    from landmarks.search import Searcher

    for flag, value in (
        ("--threshold", args.threshold),
        ("--keep-right", args.keep_right),
        ("--negative-share", args.negative_share),
    ):
        if value is not None and not 0.0 <= value <= 1.0:
            raise CommandError(f"{flag} is a share: give a number between 0 and 1")
    if args.sample is not None and args.sample < 3:
        raise CommandError("--sample: give at least 3 gallery photos to probe")
    args.index = args.index or args.settings.index_dir
    shares = {
        name: value
        for name, value in (("keep_right", args.keep_right), ("negative_share", args.negative_share))
        if value is not None
    }
    negatives = []
    for folder in args.negatives:
        if not folder.is_dir():
            raise CommandError(f"--negatives {folder}: no such folder")
        for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
            try:
                negatives.append(decode_image(path))
            except (ImageError, OSError) as exc:
                print(f"  skipped {path}: {exc}")
    extractor = load_model(args, args.index)
    index = open_existing_index(args.index, extractor)
    try:
        counts = index.store.image_counts()
        if len(counts) < 2 or len(index) < 3:
            raise CommandError(f"the index at {args.index} needs photos of at least two landmarks to calibrate")
        config = args.settings.search_config(calibrated=False)
        searcher = Searcher(extractor, index, config)
        print(
            f"calibrating {args.index}: {len(index)} photos of {len(counts)} landmarks, {len(negatives)} negative photos; "
            f"search: {config.describe()}{' (no local features: without spatial verification)' if config.spatial and not searcher.spatial_active else ''}"
        )
        try:
            model = fit_searcher(
                searcher,
                negatives=negatives,
                unknown_every=args.unknown_every,
                sample=args.sample,
                progress=not args.no_progress,
                threshold=args.threshold,
                **shares,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        path = args.index / CALIBRATION_FILE
        calibration = Calibration.load_if_present(args.index) or Calibration()
        calibration.models[config.signature()] = model
        calibration.save(path)
        searcher.close()
    finally:
        index.close()
    report = model.report
    print(
        f"fitted on {report['samples']} searches ({report['right']} right, {report['wrong']} wrong): "
        + ", ".join(f"{n} {source}" for source, n in report["sources"].items())
    )
    print(
        "confidence = sigmoid("
        + " + ".join(f"{w:.3g}*{name}" for w, name in zip(model.weights, model.features, strict=True))
        + f" + {model.bias:.3g})"
    )
    at = report["at_threshold"]
    refused = (
        f", {at['negatives_refused']:.1%} of the unknown-landmark/negative photos"
        if at.get("negatives_refused") is not None
        else ""
    )
    print(
        f"operating threshold {model.threshold:.3f}: answers {at['right_answered']:.1%} of the right top landmarks, "
        f"refuses {at['wrong_refused']:.1%} of the wrong ones{refused} (on the fitting data); saved {path}"
    )
    return 0
