"""`landmarks export CHECKPOINT --out extractor.torchscript`: a trained model as one TorchScript file.

`landmarks export-onnx MODEL OUT_DIR`: a registered model as ONNX for the slim API image
(landmarks/models/exported.py); the Dockerfile's `onnx-export` stage runs it.
"""

from __future__ import annotations

from pathlib import Path


def register(commands) -> None:
    export = commands.add_parser(
        "export",
        help="export a training checkpoint to TorchScript for `index build` and `serve`",
        description="Trace the model in CHECKPOINT to TorchScript (its preprocessing config inside); "
        "`--model FILE` of index build, search and serve loads the result directly.",
    )
    export.add_argument("checkpoint", type=Path, metavar="CHECKPOINT")
    export.add_argument(
        "--out", type=Path, default=Path("extractor.torchscript"), help="default: extractor.torchscript"
    )
    export.set_defaults(func=run)

    onnx = commands.add_parser(
        "export-onnx",
        help="export a registered model to ONNX for the slim API image (OUT_DIR/MODEL/model.onnx + model.json), "
        "with the landmark prior beside it (OUT_DIR/landmark_prior)",
    )
    onnx.add_argument("model", metavar="MODEL")
    onnx.add_argument("out", type=Path, metavar="OUT_DIR")
    onnx.set_defaults(func=run_onnx)


def run_onnx(args) -> int:
    from landmarks.models.exported import export
    from landmarks.models.imagenet_head import export_prior

    export(args.model, args.out, cache_dir=args.settings.cache_dir)
    export_prior(args.out)  # the slim image has no torch to export it at run time
    return 0


def run(args) -> int:
    import pickle

    from cli import CommandError
    from landmarks.models import export_torchscript
    from landmarks.models.extractor import load_checkpoint_model

    if not args.checkpoint.is_file():
        raise CommandError(f"no checkpoint at {args.checkpoint}")
    try:
        model = load_checkpoint_model(args.checkpoint)
    except (ValueError, RuntimeError, KeyError, EOFError, pickle.UnpicklingError) as exc:
        raise CommandError(f"{args.checkpoint} is not a model checkpoint: {exc}") from exc
    path = export_torchscript(model, args.out)
    print(f"exported {model.config.backbone}@{model.config.image_size} ({model.output_dim}-d) to {path}")
    return 0
