"""Does fine-tuning help on landmarks the model never saw? A measured answer on the dev photos, on CPU.

The dev set's 24 landmarks are split in two: the 12 listed in the config's data.landmarks (every
other one in sorted order) are trained on, all their photos; the other 12 are evaluated with the dev
protocol (every 5th photo a query, the rest the gallery, plus the 47 distractors), before and after.

    uv run python bench/finetune_demo.py [--fresh]

The same with the command line:

    landmarks train configs/demo_efficientnet_lite0_roadmap.yaml --device cpu
    landmarks eval --data ../shared/data/landmarks-dev --landmarks UNSEEN,... --device cpu \\
        --model efficientnet_lite0 --model data/runs/demo_efficientnet_lite0_roadmap/last.pt

Re-running without --fresh reuses (or resumes) the trained run and only re-evaluates.
"""

from __future__ import annotations

import os

# Torch's OpenMP threads busy-wait between operations; on a small machine shared with other work a
# waiting thread steals the core its partner needs, and training runs several times slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from landmarks.evaluation.evaluate import evaluate  # noqa: E402
from landmarks.evaluation.protocol import dev_protocol  # noqa: E402
from landmarks.evaluation.table import TableRow, format_duration, markdown_grid, markdown_table  # noqa: E402
from landmarks.models import load_extractor  # noqa: E402
from landmarks.training import load_config, train  # noqa: E402
from landmarks.training.checkpoints import read_checkpoint  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "configs" / "demo_efficientnet_lite0_roadmap.yaml")
    parser.add_argument("--data", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "landmarks-dev")
    parser.add_argument("--fresh", action="store_true", help="train again from the pretrained weights")
    parser.add_argument("--out", type=Path, default=None, help="write the report here too (default: RUN_DIR/demo.md)")
    args = parser.parse_args()

    os.chdir(REPO_ROOT)  # the config's relative paths are from the repository root
    config = load_config(args.config)
    protocol = dev_protocol(args.data)
    trained_on = set(config.data.landmarks or [])
    unseen = sorted(set(protocol.landmark_ids) - trained_on)
    if not trained_on or not unseen:
        parser.error("the config must list the training landmarks in data.landmarks, leaving others unseen")
    split = protocol.restricted_to(set(unseen))
    print(f"training on {len(trained_on)} landmarks: {', '.join(sorted(trained_on))}")
    print(f"evaluating on {len(unseen)} unseen landmarks: {', '.join(unseen)}")

    started = time.perf_counter()
    last = train(config, device="cpu", fresh=args.fresh)
    wall_training = time.perf_counter() - started
    epoch_seconds = read_checkpoint(last)["epoch_seconds"]
    training_seconds = sum(epoch_seconds)

    rows = []
    for spec, label in (
        ("efficientnet_lite0", "efficientnet_lite0 (ImageNet, off the shelf)"),
        (str(last), "efficientnet_lite0 + ROADMAP (fine-tuned)"),
    ):
        extractor = load_extractor(spec, device="cpu")
        result = evaluate(extractor, split)
        rows.append(
            TableRow(
                label,
                extractor.config.image_size,
                result,
                None if spec == "efficientnet_lite0" else training_seconds / len(epoch_seconds),
            )
        )

    before, after = rows[0].result, rows[1].result
    summary = markdown_grid(
        ["model (12 unseen landmarks)", "R@1", "mAP@100", "GAP"],
        [
            *(
                [row.model, f"{row.result.recall[1]:.3f}", f"{row.result.map_at_100:.3f}", f"{row.result.gap:.3f}"]
                for row in rows
            ),
            [
                "change",
                f"{after.recall[1] - before.recall[1]:+.3f}",
                f"{after.map_at_100 - before.map_at_100:+.3f}",
                f"{after.gap - before.gap:+.3f}",
            ],
        ],
    )
    report = "\n".join(
        [
            f"Fine-tuning: {len(epoch_seconds)} epochs in {format_duration(training_seconds)} on CPU "
            f"({os.cpu_count()} cores; this invocation spent {format_duration(wall_training)} in training). "
            f"Whole demo: {format_duration(time.perf_counter() - started)}.",
            "",
            *summary,
            "",
            markdown_table(rows, device=f"CPU ({os.cpu_count()} cores)"),
        ]
    )
    print()
    print(report)
    out = args.out or config.run_path / "demo.md"
    out.write_text(report, encoding="utf-8")
    print(f"report written to {out}")
    print("same with the command line:")
    print(
        f"  landmarks train {args.config.relative_to(REPO_ROOT) if args.config.is_relative_to(REPO_ROOT) else args.config} --device cpu"
    )
    print(
        f"  landmarks eval --data {args.data} --landmarks {','.join(unseen)} --device cpu --model efficientnet_lite0 --model {last}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
