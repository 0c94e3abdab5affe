"""`landmarks train CONFIG.yaml`: fine-tune an embedding model; re-running resumes where it stopped."""

from __future__ import annotations

from pathlib import Path


def register(commands) -> None:
    train = commands.add_parser(
        "train",
        help="fine-tune an embedding model from a YAML config (resumes a killed run)",
        description="Train the model CONFIG describes (see configs/*.yaml). Checkpoints go to its run_dir every epoch; "
        "running the same command again resumes from the last one.",
    )
    train.add_argument("config", type=Path, metavar="CONFIG.yaml")
    train.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    train.add_argument("--fresh", action="store_true", help="start over, discarding the run's checkpoints and log")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    train.set_defaults(func=run)


def run(args) -> int:
    from cli import CommandError
    from landmarks.training import load_config, train

    try:
        config = load_config(args.config)
        last = train(config, device=args.device, fresh=args.fresh, progress=not args.no_progress)
    # ValueError covers every configuration the data or the model cannot satisfy (ConfigError,
    # ResumeError, unknown landmarks, a train_from that names no layer); a diverging loss says
    # which setting to lower. Anything else is a bug and keeps its traceback.
    except (ValueError, FileNotFoundError, FloatingPointError) as exc:
        raise CommandError(str(exc)) from exc
    print(f"checkpoint {last}; log {config.run_path / 'log.csv'}")
    print(f"  evaluate:  landmarks eval --data DATA_DIR --model {last}")
    print(f"  export:    landmarks export {last} --out {config.run_path / 'extractor.torchscript'}")
    return 0
