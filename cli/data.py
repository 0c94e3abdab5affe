"""`landmarks data gldv2`: download Google Landmarks v2 and build an N-landmark gallery from it."""

from __future__ import annotations

from pathlib import Path


def register(commands) -> None:
    data = commands.add_parser("data", help="download datasets and build galleries from them")
    sources = data.add_subparsers(dest="source", metavar="SOURCE", required=True)
    gldv2 = sources.add_parser(
        "gldv2",
        help="Google Landmarks v2: download (resumable, MD5-verified) and build an N-landmark gallery",
        description="Download GLDv2 train metadata and image shards into OUT (re-running resumes and skips verified "
        "files), then write a gallery of the N most frequent landmarks in GLDv2 layout, with held-out queries, "
        "for `index build`, `train` and `eval`. The whole train set is 500 shards of about 1 GB each.",
    )
    gldv2.add_argument("--out", type=Path, default=Path("data/gldv2"), help="download folder (default: data/gldv2)")
    gldv2.add_argument("--gallery", type=Path, default=None, help="gallery folder to write (default: OUT/gallery)")
    gldv2.add_argument("--shards", default=None, help="image shards to fetch, e.g. 0-9,42 (default: all 500)")
    gldv2.add_argument(
        "--classes", type=int, default=10_000, help="how many of the most frequent landmarks to keep (default 10000)"
    )
    gldv2.add_argument(
        "--query-every", type=int, default=5, help="every N-th photo of a landmark is held out as a query (default 5)"
    )
    gldv2.add_argument("--clean", action="store_true", help="keep only the photos of GLDv2-clean (train_clean.csv)")
    gldv2.add_argument(
        "--base-url", default=None, help="where the files are (default: CVDF's google-landmark bucket on S3)"
    )
    gldv2.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    gldv2.set_defaults(func=run_gldv2)


def run_gldv2(args) -> int:
    from cli import CommandError
    from landmarks.data.download import DownloadError
    from landmarks.data.gldv2 import DEFAULT_BASE_URL, NUM_SHARDS, build_gallery, fetch, parse_shards

    base_url = args.base_url or DEFAULT_BASE_URL
    try:
        shards = parse_shards(args.shards or f"0-{NUM_SHARDS - 1}")
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    if args.classes < 1 or args.query_every < 2:
        raise CommandError("--classes must be at least 1 and --query-every at least 2")
    progress = not args.no_progress
    print(f"fetching GLDv2 metadata and {len(shards)} shard(s) from {base_url} into {args.out}")
    try:
        downloads = fetch(base_url, args.out, shards, clean=args.clean, progress=progress)
    except DownloadError as exc:
        raise CommandError(str(exc)) from exc
    gallery_dir = args.gallery or args.out / "gallery"
    report = build_gallery(
        downloads, gallery_dir, num_classes=args.classes, query_every=args.query_every, progress=progress
    )
    print(
        f"gallery {gallery_dir}: {report.gallery_photos} photos and {report.query_photos} held-out queries of "
        f"{report.landmarks} landmarks ({report.missing} photos of the chosen landmarks are in shards not downloaded)"
    )
    print(f"  index it:  landmarks index build {gallery_dir} --out data/index")
    print(f"  evaluate:  landmarks eval --data {gallery_dir} --model efficientnet_lite_ensemble")
    return 0
