"""A run killed mid-epoch resumes from its last checkpoint and ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from landmarks.training import ResumeError, load_config, train
from landmarks.training.checkpoints import LAST, read_checkpoint
from tests.support import REPO_ROOT, run_cli
from tests.training.conftest import write_tiny_config


def log_rows(run_dir: Path) -> list[dict]:
    with (run_dir / "log.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def assert_same_tensors(a, b, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_tensors(x, y, f"{where}[{index}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(trained_run, tmp_path):
    config = write_tiny_config(tmp_path / "config.yaml", tmp_path / "run")
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "train", str(config), "--no-progress"],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ.copy(),
    )
    try:
        deadline = time.monotonic() + 300
        while not (run_dir / LAST).exists():
            assert process.poll() is None, "training exited before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint after 300 s"
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL  # it was still training when it died

    interrupted = read_checkpoint(run_dir / LAST)
    assert (interrupted["epoch"], interrupted["step"], interrupted["global_step"]) == (0, 2, 2)  # mid-epoch 1

    result = run_cli("--log-level", "info", "train", str(config), "--no-progress")
    assert result.returncode == 0, result.stderr + result.stdout
    assert "resumed from" in result.stderr and "at epoch 1 step 2" in result.stderr

    resumed, reference = read_checkpoint(run_dir / LAST), read_checkpoint(trained_run / LAST)
    for key in ("state_dict", "optimizer", "loss", "scaler"):
        assert_same_tensors(resumed[key], reference[key], key)
    assert (resumed["epoch"], resumed["step"], resumed["global_step"]) == (2, 0, 6)
    assert sorted(path.name for path in run_dir.glob("epoch-*.pt")) == ["epoch-001.pt", "epoch-002.pt"]

    # The steps the killed process logged after its checkpoint were redone, not logged twice.
    resumed_log, reference_log = log_rows(run_dir), log_rows(trained_run)
    assert [row["global_step"] for row in resumed_log] == [str(step) for step in range(1, 7)]
    assert [row["loss"] for row in resumed_log] == [row["loss"] for row in reference_log]


def test_resuming_with_another_configuration_is_refused(trained_run, tmp_path):
    config = load_config(write_tiny_config(tmp_path / "changed.yaml", trained_run, **{"optim.lr": 5.0e-4}))
    with pytest.raises(ResumeError, match=r"optim\.lr.*--fresh"):
        train(config, progress=False)
