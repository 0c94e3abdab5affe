"""`landmarks search PHOTO --index INDEX_DIR`: search from the command line, no server needed."""

from __future__ import annotations

from pathlib import Path

from cli.index import add_model_arguments, load_model, open_existing_index

REFUSALS = {"not_a_landmark": "does not look like a landmark", "unknown_landmark": "not a landmark I know"}


def register(commands) -> None:
    search = commands.add_parser("search", help="find the landmark in a photo, printing a table of matches")
    search.add_argument("photos", type=Path, nargs="+", metavar="PHOTO")
    search.add_argument(
        "--index", type=Path, default=None, metavar="INDEX_DIR", help="default: LANDMARKS_INDEX_DIR, else data/index"
    )
    search.add_argument("-k", type=int, default=5, help="matches to show (default 5)")
    search.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="operating threshold on confidence (default: the service's, LANDMARKS_THRESHOLD, else the calibration's)",
    )
    add_model_arguments(search)
    search.set_defaults(func=run)


def run(args) -> int:
    from cli import CommandError
    from landmarks.images import ImageError, decode_image
    from landmarks.search import Searcher

    args.index = args.index or args.settings.index_dir
    extractor = load_model(args, args.index)
    index = open_existing_index(args.index, extractor)
    if len(index) == 0:
        raise CommandError(
            f"the index at {args.index} is empty: build it with `landmarks index build GALLERY_DIR --out {args.index}`"
        )
    searcher = Searcher(
        extractor,
        index,
        args.settings.search_config(**({"threshold": args.threshold} if args.threshold is not None else {})),
        prior=args.settings.landmark_prior(),
    )
    names = {lid: lm.name for lid, lm in index.landmarks().items()}
    failures = 0
    for photo in args.photos:
        try:
            image = decode_image(photo)
        except (ImageError, OSError) as exc:
            print(f"{photo}: {exc}")
            failures += 1
            continue
        result = searcher.search_images([image], args.k)[0]
        verdict = (
            f"{names.get(result.landmark.landmark_id, result.landmark.landmark_id)} (confidence {result.confidence:.2f})"
            if result.landmark
            else f"{REFUSALS.get(result.refusal, 'not a landmark I know')} (confidence {result.confidence:.2f})"
        )
        print(f"{photo}: {verdict}")
        print(f"  {'rank':>4}  {'score':>6}  {'landmark':<32}  photo")
        for rank, match in enumerate(result.matches, 1):
            record = index.image(match.image_id)
            print(
                f"  {rank:>4}  {match.score:6.3f}  {names.get(match.landmark_id, match.landmark_id)[:32]:<32}  {record.source if record else match.image_id}"
            )
    index.close()
    return 1 if failures == len(args.photos) else 0
