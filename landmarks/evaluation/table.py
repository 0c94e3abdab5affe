"""The team's results table (as in the seed project) in Markdown."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from landmarks.evaluation.evaluate import SERVICE, Evaluation

COLUMNS = ("Model-backbone", "SIZE", "ACC", "GAP", "R@1", "R@2", "R@10", "mAP@100", "epoch time", "FPS")


@dataclass(frozen=True)
class TableRow:
    model: str  # e.g. "efficientnet_lite0 (ImageNet)" or "efficientnet_lite0 + ROADMAP (last.pt)"
    image_size: int | None  # None: unknown (a model that could not be loaded)
    result: Evaluation | None  # None: not evaluated, `missing` says why
    epoch_seconds: float | None = None  # mean training epoch time, when the model was trained here
    missing: str | None = None  # e.g. "not evaluated: the weights cannot be had offline (...)"


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _cell(text: str) -> str:
    """Text that stays inside one Markdown table cell (error messages may hold pipes or newlines)."""
    return " ".join(text.split()).replace("|", "\\|")


def markdown_grid(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """The lines of a Markdown table: the first column left-aligned, the others (numbers) right-aligned."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def markdown_table(rows: list[TableRow], *, device: str | None = None) -> str:
    lines = markdown_grid(COLUMNS, [])
    for row in rows:
        r = row.result
        if r is None:
            # The row stays in the table, so that a model left out is seen, with the reason in place of numbers.
            cells = [
                _cell(f"{row.model} — {row.missing or 'not evaluated'}"),
                str(row.image_size or "—"),
                *["—"] * (len(COLUMNS) - 2),
            ]
            lines.append("| " + " | ".join(cells) + " |")
            continue
        cells = [
            _cell(row.model),
            str(row.image_size),
            f"{r.accuracy:.3f}",
            f"{r.gap:.3f}",
            f"{r.recall[1]:.3f}",
            f"{r.recall[2]:.3f}",
            f"{r.recall[10]:.3f}",
            f"{r.map_at_100:.3f}",
            format_duration(row.epoch_seconds),
            f"{r.fps:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    evaluated = [row.result for row in rows if row.result is not None]
    if evaluated:
        first = evaluated[0]
        note = (
            f"\n{first.queries} landmark queries, {first.distractors} distractor queries, {first.gallery} gallery photos. "
            f"SIZE: input side in pixels. ACC and GAP: top landmark as the service ranks it, by the mean of its best {SERVICE.aggregate_top} "
            "photo scores (ACC over landmark queries; "
            "GAP counts distractor predictions as wrong). FPS: photos per second through the model alone (full batches, steady state)"
        )
        lines.append(note + (f" on {device}." if device else "."))
    return "\n".join(lines) + "\n"
