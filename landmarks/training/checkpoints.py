"""Checkpoint files of a training run.

RUN_DIR/last.pt         the whole training state (model, loss, optimizer, scaler, position), rewritten
                        at the end of every epoch and every `checkpoint_every_steps` steps: resume point
RUN_DIR/epoch-NNN.pt    the model after epoch NNN, without optimizer state: for eval and export

Both carry {"model_config", "state_dict"}, the format `landmarks.models.load_extractor` reads, so
either can be passed to `--model`. Writes go to a temporary file renamed into place, so a run
killed while saving still leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

LAST = "last.pt"


def epoch_file(epoch: int) -> str:
    return f"epoch-{epoch:03d}.pt"


def save_atomically(payload: dict, path: Path) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def read_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@dataclass(frozen=True)
class TrainingSummary:
    backbone: str
    loss: str | None  # None for a bare state dict or a checkpoint made elsewhere
    epochs: int
    mean_epoch_seconds: float | None


def training_summary(path: Path) -> TrainingSummary | None:
    """What a checkpoint says about the run that made it, or None if it is no checkpoint of ours."""
    try:
        payload = read_checkpoint(path)
    except Exception:  # TorchScript archives and foreign files are simply not training checkpoints
        return None
    if not isinstance(payload, dict) or "model_config" not in payload:
        return None
    seconds = payload.get("epoch_seconds") or []
    train_config = payload.get("train_config") or {}
    return TrainingSummary(
        backbone=payload["model_config"].get("backbone", "?"),
        loss=(train_config.get("loss") or {}).get("name"),
        epochs=len(seconds),
        mean_epoch_seconds=sum(seconds) / len(seconds) if seconds else None,
    )
