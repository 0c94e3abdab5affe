"""The `landmarks` command line. Each subcommand lives in its own module with a `register` function.

Heavy imports (torch, faiss, uvicorn) happen inside the commands, so `landmarks --help` is instant
and the bot and web installs, which lack torch, can still run their own commands.

The environment is read once, here, into the service's settings (api/settings.py, standard library
only): each command finds them in `args.settings` and hands the engine plain values.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from api.settings import Settings
from landmarks.logs import setup_logging

# Subcommand modules, in the order `--help` lists them.
COMMANDS = ("index", "search", "tag", "serve", "up", "bot", "train", "eval", "export", "data", "calibrate")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="landmarks", description="Landmark Search: index a gallery, search it, serve it, train models."
    )
    parser.add_argument("--log-level", default=None, help="debug, info, warning (default; or LANDMARKS_LOG_LEVEL)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"cli.{name}").register(commands)
    return parser


class CommandError(Exception):
    """A failure the user can act on: printed as one line, exit code 2, no traceback."""


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.settings = Settings.from_env()
    except ValueError as exc:  # a LANDMARKS_* variable that does not parse
        print(f"error: {exc}", file=sys.stderr)
        return 2
    setup_logging(args.log_level or args.settings.log_level)
    try:
        return int(args.func(args) or 0)
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
