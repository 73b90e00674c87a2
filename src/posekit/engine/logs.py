"""What a run leaves for people to look at: results.csv, TensorBoard events, plots/*.png."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from posekit.atomic import atomic_write_bytes, atomic_write_text

LOSS_PLOT = "loss.png"
METRIC_PLOT = "metrics.png"
METRIC_COLUMNS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "PCK", "bbox_AP")


def read_results(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def append_result(path: Path, row: dict[str, Any]) -> None:
    """Append one row to results.csv (rewritten atomically; new columns are added)."""
    rows = [*read_results(path), {k: _format(v) for k, v in row.items()}]
    columns: list[str] = []
    for existing in rows:
        columns.extend(k for k in existing if k not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _series(rows: list[dict[str, str]], column: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for row in rows:
        value = row.get(column, "")
        try:
            number = float(value)
        except ValueError:
            continue
        if math.isfinite(number):
            xs.append(float(row.get("epoch") or len(xs) + 1))
            ys.append(number)
    return xs, ys


def write_plots(results_path: Path, plots_dir: Path) -> list[Path]:
    """Loss and metric curves from results.csv as PNGs; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_results(results_path)
    if not rows:
        return []
    written = []
    loss_columns = [c for c in rows[0] if c == "loss" or c.startswith("loss_")]
    metric_columns = [c for c in METRIC_COLUMNS if c in rows[-1]]
    for name, columns, ylabel in (
        (LOSS_PLOT, loss_columns, "loss"),
        (METRIC_PLOT, metric_columns, "metric"),
    ):
        if not columns:
            continue
        figure, axes = plt.subplots(figsize=(6, 4), dpi=100)
        for column in columns:
            xs, ys = _series(rows, column)
            if ys:
                axes.plot(xs, ys, marker="o", label=column)
        axes.set_xlabel("epoch")
        axes.set_ylabel(ylabel)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        plt.close(figure)
        atomic_write_bytes(plots_dir / name, buffer.getvalue())
        written.append(plots_dir / name)
    return written


class TensorBoardLog:
    """A SummaryWriter when TensorBoard is installed, else a silent stand-in."""

    def __init__(self, log_dir: Path, enabled: bool = True) -> None:
        self.writer = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # pragma: no cover - tensorboard is a dependency
                return
            self.writer = SummaryWriter(log_dir=str(log_dir))

    def scalars(self, values: dict[str, float], step: int, prefix: str) -> None:
        if self.writer is None:
            return
        for key, value in values.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
