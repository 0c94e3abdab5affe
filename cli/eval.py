"""`landmarks eval --data DIR --model M [--model M2 ...]`: the results table on a gallery/query split.

`--model all` evaluates every registered model into one table. A model whose pretrained weights
cannot be had (a hub model with the hub unreachable, CLIP without its weights file) keeps its row,
with the reason in place of the numbers.
"""

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
    evaluate.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="MODEL",
        help="a model name, checkpoint or TorchScript file; repeat for several. 'all': every registered model",
    )
    evaluate.add_argument(
        "--weights-file",
        action="append",
        default=[],
        metavar="[MODEL=]PATH",
        help="local pretrained weights for a named model instead of a download (a timm state dict, or for clip_vit_b16 "
        "open_clip's open_clip_pytorch_model.bin); with several models, say which: clip_vit_b16=PATH. Repeatable",
    )
    evaluate.add_argument("--landmarks", default=None, metavar="ID,ID,...", help="evaluate on these landmarks only")
    evaluate.add_argument(
        "--query-every", type=int, default=5, help="dev protocol: every N-th photo of a landmark is a query (default 5)"
    )
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
    raise FileNotFoundError(
        f"{data} holds neither images/ (the dev layout) nor {QUERIES_FILE} (a gallery from `landmarks data gldv2`)"
    )


ALL_MODELS = "all"


def expand_models(specs: list[str]) -> list[str]:
    """The models to evaluate, in order, once each: 'all' stands for every registered model."""
    from landmarks.models import list_models

    expanded = [name for spec in specs for name in (list_models() if spec == ALL_MODELS else [spec])]
    return list(dict.fromkeys(expanded))


def weights_files(values: list[str], specs: list[str]) -> dict[str, Path]:
    """--weights-file values → {model: file}. A bare PATH needs exactly one model; else MODEL=PATH."""
    from cli import CommandError

    files: dict[str, Path] = {}
    for value in values:
        name, separator, path = value.partition("=")
        if separator and name in specs:
            files[name] = Path(path)
        elif len(specs) == 1:
            files[specs[0]] = Path(value)
        else:
            raise CommandError(
                f"--weights-file {value}: say which model the file is for, as MODEL=PATH, MODEL one of: {', '.join(specs)}"
            )
    return files


def weights_origin(spec: str, weights_file: Path | None) -> str:
    """Where a named model's weights come from, for the table's model column.

    E.g. "ImageNet, offline package", "ImageNet efficientnet_lite0, offline package; untrained DOLG head",
    "ImageNet efficientnet_lite0 + efficientnet_lite1 + efficientnet_lite2, offline packages",
    "CLIP laion2b_s34b_b88k, open_clip hub", "weights file open_clip_pytorch_model.bin".
    """
    from landmarks.models.registry import model_entry

    config, offline_weights = model_entry(spec)
    if weights_file is not None:
        origin = f"weights file {weights_file.name}"
    elif config.architecture == "clip":
        origin = f"CLIP {config.extra.get('open_clip_pretrained', '')}, open_clip hub"
    elif config.architecture == "ensemble":
        members = {member: weights_origin(member, None) for member in config.extra["members"]}
        if set(members.values()) == {"ImageNet, offline package"}:
            return f"ImageNet {' + '.join(members)}, offline packages"
        return " + ".join(f"{member} ({origin})" for member, origin in members.items())
    else:
        # A model named otherwise than its backbone says which backbone it starts from.
        backbone = "ImageNet" if config.backbone == spec else f"ImageNet {config.backbone}"
        origin = f"{backbone}, {'offline package' if offline_weights else 'timm hub'}"
    if config.architecture not in ("gem", "clip"):
        origin += f"; untrained {config.architecture.upper()} head"  # create_model initialises the new layers
    elif config.architecture == "gem" and config.embedding_dim:
        origin += "; untrained projection"
    return origin


def model_label(spec: str, extractor, weights_file: Path | None = None) -> tuple[str, float | None]:
    """The table's name for a model, and its mean training epoch time when it was trained here."""
    from landmarks.training.checkpoints import training_summary

    path = Path(spec)
    if not path.is_file():
        return f"{spec} ({weights_origin(spec, weights_file)})", None
    summary = training_summary(path)
    if summary is None:
        return f"{extractor.config.backbone} ({path.name})", None
    loss = LOSS_NAMES.get(summary.loss or "", summary.loss)
    name = f"{summary.backbone} + {loss}" if loss else summary.backbone
    return f"{name} ({path.name}, {summary.epochs} ep)", summary.mean_epoch_seconds


def run(args) -> int:
    from cli import CommandError

    specs = expand_models(args.model)
    files = weights_files(args.weights_file, specs)
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
    from landmarks.models import list_models, load_extractor
    from landmarks.models.registry import model_entry

    rows, device = [], None
    for spec in specs:
        try:
            extractor = load_extractor(
                spec, device=args.device, image_size=args.image_size, weights_file=files.get(spec)
            )
        except OSError as exc:
            # With 'all', a registered model whose weights cannot be had here (the hub unreachable, no
            # file given) is reported in its row; a model asked for by name, or a file given that fails,
            # is an error.
            if ALL_MODELS not in args.model or spec not in list_models() or spec in files:
                raise CommandError(f"cannot load model {spec}: {exc}") from exc
            print(f"not evaluating {spec}: {exc}")
            rows.append(TableRow(
                f"{spec} ({weights_origin(spec, None)})", args.image_size or model_entry(spec)[0].image_size, None,
                missing=f"not evaluated: no weights offline (hub unreachable; give a file with --weights-file {spec}=PATH)",
            ))  # fmt: skip
            continue
        except (ValueError, RuntimeError) as exc:
            raise CommandError(f"cannot load model {spec}: {exc}") from exc
        print(
            f"evaluating {extractor.describe()} on {len(protocol.gallery)} gallery photos, {len(protocol.queries)} queries, {len(protocol.distractors)} distractors"
        )
        result = evaluate(extractor, protocol, batch_size=args.batch_size, progress=not args.no_progress)
        label, epoch_seconds = model_label(spec, extractor, files.get(spec))
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
