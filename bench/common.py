"""Shared bench helpers: the dev protocol's index, built once and reused between runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from landmarks.evaluation.protocol import dev_protocol, materialize_gallery  # noqa: E402

DEV_DATA = REPO.parent / "shared" / "data" / "landmarks-dev"
WORK = REPO / "data" / "bench"


def dev_index(model: str | None = None) -> Path:
    """Build (or update) an index of the protocol's gallery under data/bench/ (default: the service's model)."""
    from landmarks.models import DEFAULT_MODEL

    model = model or DEFAULT_MODEL
    protocol = dev_protocol(DEV_DATA)
    gallery = materialize_gallery(protocol.gallery, WORK / "gallery", DEV_DATA / "images" / "landmarks.csv")
    out = WORK / f"index-{Path(model).stem}"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "index",
            "build",
            str(gallery),
            "--out",
            str(out),
            "--model",
            model,
            "--no-progress",
        ],
        cwd=REPO,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return out
