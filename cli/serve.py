"""`landmarks serve --index INDEX_DIR`: the HTTP API."""

from __future__ import annotations

from pathlib import Path


def register(commands) -> None:
    serve = commands.add_parser("serve", help="run the HTTP search API")
    serve.add_argument(
        "--index", type=Path, default=None, metavar="INDEX_DIR", help="default: data/index (or LANDMARKS_INDEX_DIR)"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--model",
        default=None,
        help="model name or file (default: LANDMARKS_MODEL, else the registered model that built the index, else efficientnet_lite_ensemble)",
    )
    serve.add_argument(
        "--weights-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="local pretrained weights for a named model, the file the index was built with (or LANDMARKS_WEIGHTS_FILE)",
    )
    serve.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    serve.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="operating threshold on confidence (default: LANDMARKS_THRESHOLD, else the calibration's)",
    )
    serve.set_defaults(func=run)


def run(args) -> int:
    import dataclasses
    import signal

    from api.app import create_app
    from api.server import serve
    from api.service import SearchService
    from cli import CommandError
    from landmarks.index import FingerprintMismatch

    overrides = {
        key: value
        for key, value in {
            "index_dir": args.index,
            "model": args.model,
            "weights_file": args.weights_file,
            "device": args.device,
            "threshold": args.threshold,
        }.items()
        if value is not None
    }
    settings = dataclasses.replace(args.settings, **overrides)
    # Load before binding the port, so a wrong model or index fails with a clear message.
    try:
        service = SearchService.load(settings)
    except (FingerprintMismatch, OSError, ValueError) as exc:  # OSError: a missing file, an unreachable hub
        raise CommandError(str(exc)) from exc
    if service.gallery_size == 0:
        print(f"The gallery at {settings.index_dir} is empty: the service runs, but has nothing to match yet.")
        print("  Index a folder of photos:   landmarks index build GALLERY_DIR --out", settings.index_dir)
        print("  or fetch GLDv2:             landmarks data gldv2 --help")
        print(
            "  or add landmarks at run time: POST /landmarks, then POST /landmarks/{id}/images (needs LANDMARKS_API_KEY)"
        )
    print(
        f"Landmark Search API on http://{args.host}:{args.port} ({service.describe_model()}, {service.gallery_size} gallery photos); docs at /docs"
    )
    app = create_app(settings, service=service)
    # uvicorn drains in-flight requests on SIGTERM, then re-raises the signal: handled here, the drained
    # shutdown ends with exit status 0 instead of death by signal (-15 / 143).
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    serve(app, settings, args.host, args.port)
    return 0
