"""`landmarks eval --data DIR --model M [--model M2 ...]`: the results table on a gallery/query split."""

from __future__ import annotations

from pathlib import Path

LOSS_NAMES = {"roadmap": "ROADMAP", "arcface": "ArcFace"}


def register(commands) -> None:
    evaluate = commands.add_parser(
        "eval",
        help="measure models on a gallery/query split and print the results table (Markdown)",
        description="DATA_DIR is either the dev layout (images/<landmark_id>/*.jpg, distractors/*.jpg; split by the dev "
        "protocol) or a gallery written by `landmarks data gldv2` (train.csv + queries.csv).",
    )
    evaluate.add_argument("--data", type=Path, required=True, metavar="DATA_DIR")
    evaluate.add_argument("--model", action="append", required=True, metavar="MODEL", help="a model name, checkpoint or TorchScript file; repeat for several")
    evaluate.add_argument("--landmarks", default=None, metavar="ID,ID,...", help="evaluate on these landmarks only")
    evaluate.add_argument("--query-every", type=int, default=5, help="dev protocol: every N-th photo of a landmark is a query (default 5)")
    evaluate.add_argument("--image-size", type=int, default=None, help="override the models' input size")
    evaluate.add_argument("--batch-size", type=int, default=16)
    evaluate.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    evaluate.add_argument("--out", type=Path, default=None, metavar="FILE.md", help="also write the table here")
    evaluate.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    evaluate.set_defaults(func=run)


def load_split(data: Path, query_every: int):
    """The dev protocol over a dev-layout folder, or the held-out split of a GLDv2 gallery."""
    from landmarks.data.gldv2 import QUERIES_FILE, gldv2_protocol
    from landmarks.evaluation.protocol import dev_protocol

    if (data / "images").is_dir():
        return dev_protocol(data, query_every=query_every)
    if (data / QUERIES_FILE).is_file():
        return gldv2_protocol(data)
    raise FileNotFoundError(f"{data} holds neither images/ (the dev layout) nor {QUERIES_FILE} (a gallery from `landmarks data gldv2`)")


def model_label(spec: str, extractor) -> tuple[str, float | None]:
    """The table's name for a model, and its mean training epoch time when it was trained here."""
    from landmarks.training.checkpoints import training_summary

    path = Path(spec)
    if not path.is_file():
        return f"{spec} (ImageNet)", None
    summary = training_summary(path)
    if summary is None:
        return f"{extractor.config.backbone} ({path.name})", None
    loss = LOSS_NAMES.get(summary.loss or "", summary.loss)
    name = f"{summary.backbone} + {loss}" if loss else summary.backbone
    return f"{name} ({path.name}, {summary.epochs} ep)", summary.mean_epoch_seconds


def run(args) -> int:
    from landmarks.cli import CommandError

    try:
        protocol = load_split(args.data, args.query_every)
    except FileNotFoundError as exc:
        raise CommandError(str(exc)) from exc
    if args.landmarks:
        wanted = {lid.strip() for lid in args.landmarks.split(",") if lid.strip()}
        unknown = wanted - set(protocol.landmark_ids)
        if unknown:
            raise CommandError(f"not in {args.data}: {', '.join(sorted(unknown))}")
        protocol = protocol.restricted_to(wanted)
    if not protocol.gallery or not protocol.queries:
        raise CommandError(f"{args.data} gives an empty gallery or no landmark query")

    from landmarks.evaluation.evaluate import evaluate
    from landmarks.evaluation.table import TableRow, markdown_table
    from landmarks.models import load_extractor

    rows, device = [], None
    for spec in args.model:
        try:
            extractor = load_extractor(spec, device=args.device, image_size=args.image_size)
        except (FileNotFoundError, ValueError, RuntimeError) as exc:
            raise CommandError(f"cannot load model {spec}: {exc}") from exc
        print(f"evaluating {extractor.describe()} on {len(protocol.gallery)} gallery photos, {len(protocol.queries)} queries, {len(protocol.distractors)} distractors")
        result = evaluate(extractor, protocol, batch_size=args.batch_size, progress=not args.no_progress)
        label, epoch_seconds = model_label(spec, extractor)
        rows.append(TableRow(label, extractor.config.image_size, result, epoch_seconds))
        device = _device_name(extractor.device)
    table = markdown_table(rows, device=device)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table, encoding="utf-8")
    return 0


def _device_name(device) -> str:
    import os

    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
