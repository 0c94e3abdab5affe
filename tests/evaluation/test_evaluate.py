"""Evaluation end to end on real photos: the library on a split with a known answer, and `landmarks eval`."""

from __future__ import annotations

import re

import torch

from landmarks.evaluation.evaluate import evaluate
from landmarks.evaluation.protocol import Protocol
from landmarks.models import create_model, load_extractor
from tests.support import dev_protocol, require_dev_data, run_cli

SMALL_LANDMARKS = ("ellora_caves", "khajuraho", "qutub_minar")


def test_queries_that_are_gallery_photos_are_found_first(tmp_path):
    protocol = dev_protocol()
    gallery = [item for lid in SMALL_LANDMARKS for item in [g for g in protocol.gallery if g[1] == lid][:3]]
    queries = gallery[::3]  # one photo of each landmark, itself in the gallery
    split = Protocol(protocol.root, gallery, queries, protocol.distractors[:2])
    result = evaluate(load_extractor("efficientnet_lite0", device="cpu", image_size=128), split, progress=False)
    assert (result.queries, result.distractors, result.gallery) == (3, 2, 9)
    assert result.recall[1] == 1.0 and result.accuracy == 1.0  # the landmark ranked as the service ranks it
    assert result.map_at_100 > 1 / 3  # the photo itself is a relevant hit at rank 1 of 3 relevant
    assert 0.0 < result.gap <= 1.0
    assert result.fps > 0


def cells(table: str) -> dict[str, list[str]]:
    """Model name → the row's cells, from the Markdown table."""
    rows = [
        line.strip().strip("|").split("|") for line in table.splitlines() if line.startswith("| ") and "---" not in line
    ]
    header = [cell.strip() for cell in rows[0]]
    assert header == ["Model-backbone", "SIZE", "ACC", "GAP", "R@1", "R@2", "R@10", "mAP@100", "epoch time", "FPS"]
    return {row[0].strip(): [cell.strip() for cell in row[1:]] for row in rows[1:]}


def test_eval_command_writes_the_table_for_several_models(tmp_path):
    data = require_dev_data()
    # A checkpoint holding the very same pretrained weights, as `landmarks train` would write one.
    model = create_model("efficientnet_lite0")
    checkpoint = tmp_path / "same-weights.pt"
    torch.save(
        {
            "model_config": model.config.to_dict(),
            "state_dict": model.state_dict(),
            "train_config": {"loss": {"name": "roadmap"}},
            "epoch_seconds": [30.0, 90.0],
        },
        checkpoint,
    )
    out = tmp_path / "table.md"
    result = run_cli(
        "eval", "--data", str(data), "--landmarks", ",".join(SMALL_LANDMARKS), "--image-size", "96", "--device", "cpu",
        "--model", "efficientnet_lite0", "--model", str(checkpoint), "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    table = out.read_text()
    assert table in result.stdout
    rows = cells(table)
    assert list(rows) == [
        "efficientnet_lite0 (ImageNet, offline package)",
        "efficientnet_lite0 + ROADMAP (same-weights.pt, 2 ep)",
    ]
    baseline, trained = rows.values()
    assert baseline[:7] == trained[:7]  # same weights, same size: the same metrics
    size, acc, gap, r1, r2, r10, map100 = baseline[:7]
    assert size == "96"
    assert (
        0 < float(acc) <= 1
        and 0 < float(r1) <= float(r2) <= float(r10) <= 1
        and 0 < float(map100) <= 1
        and 0 < float(gap) <= 1
    )
    assert (baseline[7], trained[7]) == ("—", "60 s")  # mean epoch time from the checkpoint
    assert float(baseline[8]) > 0
    assert re.search(r"\d+ landmark queries, 47 distractor queries, \d+ gallery photos", table)


def test_eval_refuses_unknown_landmarks():
    result = run_cli(
        "eval", "--data", str(require_dev_data()), "--landmarks", "atlantis", "--model", "efficientnet_lite0"
    )
    assert result.returncode == 2 and "atlantis" in result.stderr


def test_eval_all_gives_every_registered_model_a_row(tmp_path, monkeypatch, clip_checkpoint):
    """`--model all`: a row per registered model, saying where its weights come from; the hub models,
    whose weights cannot be had offline, get a row that says so instead of numbers."""
    import huggingface_hub.constants

    from cli import main
    from landmarks.models import list_models

    # The hub as on a machine without internet access: offline, nothing cached (so nothing downloads).
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    out = tmp_path / "table.md"
    # The command line in this process: a subprocess would spend longer importing torch than evaluating.
    assert main([
        "eval", "--data", str(require_dev_data()), "--landmarks", "chhota_imambara,ajanta_caves", "--image-size", "96",
        "--device", "cpu", "--model", "all", "--weights-file", f"clip_vit_b16={clip_checkpoint}", "--no-progress", "--out", str(out),
    ]) == 0  # fmt: skip
    rows = cells(out.read_text())
    labels = {name: next(label for label in rows if label.startswith(f"{name} (")) for name in list_models()}
    assert len(rows) == len(list_models())

    evaluated = {
        "efficientnet_lite0",
        "efficientnet_lite1",
        "efficientnet_lite2",
        "efficientnet_lite_ensemble",
        "dolg_efficientnet_lite0",
        "delf_efficientnet_lite0",
        "clip_vit_b16",
    }
    for name in evaluated:
        size, acc, gap, r1, r2, r10, map100, _, fps = rows[labels[name]]
        assert size == "96" and 0 <= float(r1) <= float(r10) <= 1 and float(fps) > 0, (name, rows[labels[name]])
    for name in set(list_models()) - evaluated:  # DeiT and the ResNets: timm hub weights
        assert "not evaluated: no weights offline" in labels[name] and f"--weights-file {name}=PATH" in labels[name]
        assert rows[labels[name]][1:] == ["—"] * 8
    assert labels["efficientnet_lite0"].startswith("efficientnet_lite0 (ImageNet, offline package)")
    assert labels["efficientnet_lite_ensemble"].startswith(
        "efficientnet_lite_ensemble (ImageNet efficientnet_lite0 + efficientnet_lite1 + efficientnet_lite2, offline packages)"
    )
    assert labels["dolg_efficientnet_lite0"].startswith(
        "dolg_efficientnet_lite0 (ImageNet efficientnet_lite0, offline package; untrained DOLG head)"
    )
    assert labels["clip_vit_b16"] == "clip_vit_b16 (weights file open_clip_pytorch_model.bin)"
    assert labels["resnet50"].startswith("resnet50 (ImageNet, timm hub)")


def test_eval_asks_which_model_a_weights_file_is_for(capsys):
    from cli import main

    assert (
        main(
            [
                "eval",
                "--data",
                str(require_dev_data()),
                "--model",
                "all",
                "--weights-file",
                "open_clip_pytorch_model.bin",
            ]
        )
        == 2
    )
    assert "say which model the file is for, as MODEL=PATH" in capsys.readouterr().err
