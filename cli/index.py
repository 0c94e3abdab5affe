"""`landmarks index build GALLERY_DIR --out INDEX_DIR`: embed a gallery into a searchable index."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

# landmarks.index.INDEX_KINDS, spelled out so that the CLI starts without importing FAISS (a test
# keeps the two equal).
INDEX_KINDS = ("flat", "ivf", "hnsw", "sq8", "ivf-sq8", "ivf-pq", "ivf-pq-rerank", "pca-ivf-pq-sq8")


def register(commands) -> None:
    index = commands.add_parser("index", help="build or inspect a gallery index")
    actions = index.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = actions.add_parser(
        "build",
        help="index a gallery folder (a folder per landmark, or a GLDv2 layout)",
        description="Embed every photo of GALLERY_DIR into INDEX_DIR. Re-running on a grown gallery embeds only the new or changed photos.",
    )
    build.add_argument("gallery", type=Path, metavar="GALLERY_DIR")
    build.add_argument(
        "--out", type=Path, default=None, metavar="INDEX_DIR", help="default: LANDMARKS_INDEX_DIR, else data/index"
    )
    add_model_arguments(build)
    build.add_argument(
        "--kind",
        choices=INDEX_KINDS,
        default=None,
        help="FAISS index type (default: the index's own; sq8 for a new one, exact search over 8-bit codes; "
        "bench/index_scale.py compares them, ivf-pq-rerank is the fastest at 1M photos)",
    )
    build.add_argument("--batch-size", type=int, default=16, help="photos per embedding call")
    build.add_argument(
        "--pipeline",
        choices=("default", "legacy"),
        default="default",
        help="how photos are read: default decodes JPEGs at reduced size, to what the networks need; "
        "legacy decodes them at full size, the old path, kept for bench/indexing.py",
    )
    build.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    build.set_defaults(func=run_build)

    info = actions.add_parser("info", help="describe an index")
    info.add_argument("index_dir", type=Path, metavar="INDEX_DIR")
    info.set_defaults(func=run_info)

    clean = actions.add_parser(
        "clean",
        help="find gallery photos that do not show their landmark and leave them out of matching",
        description="Weigh every gallery photo against the others (never against queries): photos closer to another "
        "landmark than to their own, and photos that look like no landmark and unlike their landmark's other photos, "
        "are reported (INDEX_DIR/cleaning/suspects.csv and contact_sheet.jpg) and excluded from matching. Nothing is "
        "deleted: --restore undoes it, --keep marks photos a person checked. A running service picks the change up "
        "on POST /index/reload or its next start.",
    )
    clean.add_argument(
        "index_dir", type=Path, nargs="?", default=None, metavar="INDEX_DIR", help="default: LANDMARKS_INDEX_DIR"
    )
    clean.add_argument("--dry-run", action="store_true", help="report the suspects; exclude nothing")
    clean.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="DIR",
        help="where the CSV and contact sheet go (INDEX_DIR/cleaning)",
    )
    clean.add_argument("--restore", action="store_true", help="let every excluded photo match again")
    clean.add_argument(
        "--keep",
        type=int,
        nargs="+",
        default=[],
        metavar="IMAGE_ID",
        help="photos a person checked: they match again and are never flagged again",
    )
    clean.add_argument(
        "--exclude", type=int, nargs="+", default=[], metavar="IMAGE_ID", help="exclude these photos by hand"
    )
    clean.set_defaults(func=run_clean)

    migrate = actions.add_parser(
        "migrate",
        help="move an index's vectors to another backend (faiss, milvus)",
        description="Fill the chosen backend with the index's vectors from its SQLite store and make the index use it "
        "from now on (`landmarks serve` included). Leaving Milvus drops the index's collection there.",
    )
    migrate.add_argument("index_dir", type=Path, metavar="INDEX_DIR")
    migrate.add_argument("--to", required=True, choices=("faiss", "milvus"), help="the backend to move to")
    migrate.add_argument(
        "--milvus-uri",
        default=None,
        metavar="URI",
        help="with --to milvus: a Milvus Lite file (*.db) or a server (http://milvus:19530); "
        "default: the index's last Milvus URI, else INDEX_DIR/milvus.db",
    )
    migrate.set_defaults(func=run_migrate)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=None,
        help="a model name (efficientnet_lite_ensemble, efficientnet_lite0, deit_small_patch16_224, resnet50, clip_vit_b16, "
        "any timm backbone), a TorchScript file or a checkpoint file (default: the registered model that built the "
        "index, else efficientnet_lite_ensemble, EfficientNet-Lite0+1+2 with offline ImageNet weights)",
    )
    parser.add_argument(
        "--weights-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="local pretrained weights for a named model instead of a download: a timm state dict, or for "
        "clip_vit_b16 open_clip's checkpoint (open_clip_pytorch_model.bin or .safetensors). "
        "Search and serve an index with the same file it was built with",
    )
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    parser.add_argument(
        "--runtime",
        choices=("auto", "eager", "onnx", "bf16"),
        default="auto",
        help="embedding runtime (default auto: ONNX Runtime on CPU for EfficientNet-like models, exported once and cached; "
        "eager PyTorch otherwise). Same vectors either way",
    )


def load_model(args, index_dir: Path):
    """The extractor that --model, --weights-file and --device name (without --model: the one that built
    the index at INDEX_DIR, else the default); a load failure is a one-line error."""
    from cli import CommandError
    from landmarks.index import recorded_model
    from landmarks.models import load_extractor, resolve_model

    settings = args.settings
    model = resolve_model(args.model, recorded_model(index_dir), exported_dir=settings.exported_dir)
    try:
        return load_extractor(
            model, device=args.device, weights_file=args.weights_file, runtime=args.runtime, **settings.model_files()
        )
    except (OSError, ValueError) as exc:  # missing or foreign files, an unreachable hub
        raise CommandError(f"cannot load model {model}: {exc}") from exc


def open_existing_index(index_dir: Path, extractor):
    """The index at INDEX_DIR, which `extractor` must have built; otherwise a one-line error."""
    from cli import CommandError
    from landmarks.index import FingerprintMismatch, GalleryIndex

    try:
        return GalleryIndex.open(
            index_dir, fingerprint=extractor.fingerprint, model=extractor.source, dim=extractor.dim, create=False
        )
    except (FingerprintMismatch, FileNotFoundError) as exc:
        raise CommandError(str(exc)) from exc


def run_build(args) -> int:
    from api.uploads import UPLOAD_PREFIX
    from cli import CommandError
    from landmarks.gallery import scan_gallery
    from landmarks.index import FingerprintMismatch, build_index
    from landmarks.index.loading import PIPELINES

    args.out = args.out or args.settings.index_dir
    try:
        gallery = scan_gallery(args.gallery)
    except FileNotFoundError as exc:
        raise CommandError(str(exc)) from exc
    if not gallery.images:
        raise CommandError(
            f"no photos found in {args.gallery}: expected GALLERY_DIR/<landmark_id>/*.jpg or a GLDv2 train.csv"
        )
    extractor = load_model(args, args.out)
    print(
        f"{len(gallery.images)} photos of {len(gallery.landmarks)} landmarks ({gallery.layout} layout); model {extractor.describe()}"
    )
    try:
        report = build_index(
            gallery,
            extractor,
            args.out,
            kind=args.kind,
            pipeline=replace(PIPELINES[args.pipeline], batch_size=args.batch_size),
            progress=not args.no_progress,
            local_features=args.settings.local_feature_params(),
            keep_prefixes=(UPLOAD_PREFIX,),  # photos added through the API are not the folder's: they stay
            prior=args.settings.landmark_prior(),
        )
    except FingerprintMismatch as exc:
        raise CommandError(str(exc)) from exc
    print(
        f"index {args.out}: {report.total} photos of {report.landmarks} landmarks "
        f"(added {report.added}, updated {report.updated}, removed {report.removed}, unchanged {report.unchanged}, skipped {len(report.skipped)})"
    )
    for key, reason in report.skipped:
        print(f"  skipped {key}: {reason}")
    return 0


def run_info(args) -> int:
    from cli import CommandError
    from landmarks.index.gallery_index import STORE_FILE
    from landmarks.index.store import GalleryStore

    path = args.index_dir / STORE_FILE
    if not path.exists():
        raise CommandError(f"no index at {args.index_dir}")
    store = GalleryStore(path)
    counts = store.image_counts()
    print(
        f"model {store.get_meta('model')} (fingerprint {store.get_meta('fingerprint')}), {store.get_meta('dim')}-d, {store.get_meta('kind')} index"
    )
    excluded = sum(store.excluded_counts().values())
    left_out = f" ({excluded} more excluded from matching: `landmarks index clean --restore` lets them back)"
    print(f"{sum(counts.values())} photos of {len(counts)} landmarks{left_out if excluded else ''}")
    store.close()
    return 0


def open_recorded_index(index_dir: Path, **options):
    """The index at INDEX_DIR opened for the model that built it, without loading that model
    (GalleryIndex.open_recorded); a one-line error when there is no index there or it is empty."""
    from cli import CommandError
    from landmarks.index import GalleryIndex

    try:
        return GalleryIndex.open_recorded(index_dir, **options)
    except (FileNotFoundError, ValueError) as exc:
        raise CommandError(str(exc)) from exc


def run_clean(args) -> int:
    from cli import CommandError
    from landmarks.quality import cleaning

    index_dir = args.index_dir or args.settings.index_dir
    index = open_recorded_index(index_dir)
    try:
        records = {record.image_id: record for record in index.store.images().values()}
        unknown = sorted(set(args.keep + args.exclude) - set(records))
        if unknown:
            raise CommandError(f"no gallery photo with id {', '.join(map(str, unknown))} in {index_dir}")
        if args.restore or args.keep or args.exclude:
            return _review_by_hand(index, records, args)
        if index.store.without_prior():
            from landmarks.index.build import fill_priors  # the model stack: only when priors are missing

            prior = args.settings.landmark_prior()
            if prior is None:
                raise CommandError("cleaning needs the landmark prior, and it could not be loaded (see the warning)")
            fill_priors(index, prior, batch_size=16, progress=True)
        suspects = cleaning.review_gallery(index)
        report_dir = args.report or index_dir / "cleaning"
        csv_path, sheet_path = _write_cleaning_report(report_dir, suspects, records, index.landmarks())
        counts = {reason: sum(s.reason == reason for s in suspects) for reason in cleaning.REASONS}
        print(
            f"{len(suspects)} of {len(records)} gallery photos do not show their landmark "
            f"({counts['no_landmark']} look like no landmark, {counts['other_landmark']} are closer to another one)"
        )
        print(f"report: {csv_path}\ncontact sheet: {sheet_path}")
        if args.dry_run:
            print("dry run: nothing excluded")
        else:
            cleaning.exclude_suspects(index, suspects)
            index.save()
            print(
                f"excluded from matching: {len(suspects)} photos (kept in the index; undo with "
                f"`landmarks index clean {index_dir} --restore`, or --keep IMAGE_ID for single photos)"
            )
    finally:
        index.close()
    return 0


def _review_by_hand(index, records: dict, args) -> int:
    from landmarks.index.store import Review

    if args.restore:
        print(f"{index.restore()} photos match again")
    if args.keep:
        index.restore(records[i].source for i in args.keep)
        index.review(Review(records[i].source, "kept", "operator", "checked by a person") for i in args.keep)
        print(f"kept {len(args.keep)} photos: they match and are never flagged again")
    if args.exclude:
        index.review(Review(records[i].source, "excluded", "operator", "excluded by a person") for i in args.exclude)
        print(f"excluded {len(args.exclude)} photos from matching")
    index.save()
    return 0


def _write_cleaning_report(report_dir: Path, suspects, records: dict, landmarks: dict) -> tuple[Path, Path]:
    """suspects.csv (one row a suspect) and contact_sheet.jpg (their photos, captioned) in REPORT_DIR."""
    import csv

    from landmarks.images import ImageError, decode_image
    from landmarks.quality.cleaning import contact_sheet

    report_dir.mkdir(parents=True, exist_ok=True)
    csv_path = report_dir / "suspects.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["image_id", "landmark_id", "path", "reason", "own_score", "rival", "rival_score", "prior", "detail"]
        )
        for suspect in suspects:
            item = suspect.evidence
            writer.writerow(
                [
                    item.image_id,
                    item.landmark_id,
                    records[item.image_id].path,
                    suspect.reason,
                    f"{item.own:.3f}",
                    item.rival or "",
                    f"{item.rival_score:.3f}",
                    "" if item.prior is None else f"{item.prior:.3f}",
                    suspect.detail,
                ]
            )
    photos = []
    for suspect in suspects:
        record = records[suspect.image_id]
        try:
            photo = decode_image(Path(record.path), draft=400)
        except (ImageError, OSError):
            photo = None
        name = landmarks[record.landmark_id].name if record.landmark_id in landmarks else record.landmark_id
        rival = suspect.evidence.rival
        why = (
            "no landmark"
            if suspect.reason == "no_landmark"
            else f"looks like {landmarks[rival].name if rival in landmarks else rival}"
        )
        photos.append((photo, f"#{record.image_id} {name}: {why}"))
    sheet_path = report_dir / "contact_sheet.jpg"
    contact_sheet(photos).save(sheet_path, quality=85)
    return csv_path, sheet_path


def run_migrate(args) -> int:
    from cli import CommandError
    from landmarks.index import GalleryIndex
    from landmarks.index.gallery_index import STORE_FILE, milvus_vectors
    from landmarks.index.store import GalleryStore

    path = args.index_dir / STORE_FILE
    if not path.exists():
        raise CommandError(f"no index at {args.index_dir}")
    if args.milvus_uri and args.to != "milvus":
        raise CommandError("--milvus-uri goes with --to milvus")
    store = GalleryStore(path)
    meta = {key: store.get_meta(key) for key in ("fingerprint", "model", "dim", "backend")}
    store.close()
    if meta["fingerprint"] is None:
        raise CommandError(f"the index at {args.index_dir} is empty: build it first with `landmarks index build`")
    source = meta["backend"] or "faiss"
    failures: tuple[type[Exception], ...] = (RuntimeError,)
    if "milvus" in (source, args.to):
        from pymilvus.exceptions import MilvusException  # unreachable servers, refused requests

        failures += (MilvusException,)
    try:
        index = GalleryIndex.open(
            args.index_dir,
            fingerprint=meta["fingerprint"],
            model=meta["model"],
            dim=int(meta["dim"]),
            create=False,
            backend=args.to,
            milvus_uri=args.milvus_uri,
        )
        try:
            size, expected = len(index), index.store.count()
            where = (
                f"Milvus at {index.vectors.uri}, collection {index.vectors.collection}"
                if args.to == "milvus"
                else "FAISS"
            )
        finally:
            index.close()
        if size != expected:
            raise CommandError(f"{args.to} holds {size} vectors, the store {expected} photos; run the migration again")
        if source == "milvus" and args.to == "faiss":
            store = GalleryStore(path)
            old = milvus_vectors(args.index_dir, store)
            store.close()
            old.drop()
            old.close()
            print(f"dropped Milvus collection {old.collection} at {old.uri}")
    except failures as exc:
        raise CommandError(f"migration to {args.to} failed: {exc}") from exc
    print(f"index {args.index_dir}: {size} vectors in {where} (was {source})")
    return 0
