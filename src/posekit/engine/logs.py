"""What a run leaves for people to look at: results.csv, TensorBoard events, plots/*.png."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from posekit.atomic import atomic_write_bytes, atomic_write_text

LOSS_PLOT = "loss.png"
PROGRESS = "progress.csv"  # the loss every log_after iterations, mid-epoch evaluations
# progress.csv / results.csv columns that are not loss terms
NOT_LOSS = ("epoch", "iter", "stage", "lr", "epoch_time", "skipped", "peak_memory_mb")
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
    write_rows(path, rows, rows)


def write_rows(path: Path, rows: list[dict[str, str]], header_from: list[dict[str, str]]) -> None:
    """``rows`` as a CSV (atomically) whose columns are every key of ``header_from``."""
    columns: list[str] = []
    for existing in header_from:
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


FEW_EPOCHS = 5  # below this many epoch rows the plots use the iteration axis
# AP drawn last and thickest, every other metric its own marker and dashes: none hides another
STYLES = {"AP": {"linewidth": 2.5, "marker": "o", "zorder": 3}}
MARKERS = ("s", "^", "v", "D", "x", "P", "*", "<", ">")


def _series(rows: list[dict[str, str]], column: str, axis: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for row in rows:
        try:
            number, position = float(row.get(column, "")), float(row.get(axis) or "nan")
        except ValueError:
            continue
        if math.isfinite(number) and math.isfinite(position):
            xs.append(position)
            ys.append(number)
    return xs, ys


def plot_rows(
    rows: list[dict[str, str]], progress: list[dict[str, str]]
) -> tuple[str, list[dict[str, str]], list[dict[str, str]]]:
    """(x axis, rows for the loss plot, rows for the metric plot): epochs when there are
    enough of them, else iterations, with the loss logged every ``log_after`` iterations and
    every evaluation (also those every ``val_after`` iterations) a point. Pure."""
    if len(rows) >= FEW_EPOCHS or not progress:
        return "epoch", rows, rows
    losses = [row for row in progress if row.get("loss")]
    evaluations = [row for row in progress if not row.get("loss")]
    merged = sorted([*evaluations, *rows], key=lambda row: float(row.get("iter") or 0))
    return "iter", losses or rows, merged


def write_plots(
    results_path: Path, plots_dir: Path, progress_path: Path | None = None
) -> list[Path]:
    """Loss and metric curves from results.csv (and progress.csv: the loss every
    ``log_after`` iterations, mid-epoch evaluations) as PNGs; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_results(results_path)
    progress = read_results(progress_path) if progress_path is not None else []
    if not rows and not progress:
        return []
    axis, loss_rows, metric_rows = plot_rows(rows, progress)
    written = []
    loss_columns = _columns(loss_rows, is_loss_column)
    metric_columns = [c for c in METRIC_COLUMNS if any(row.get(c) for row in metric_rows)]
    for name, columns, ylabel, source in (
        (LOSS_PLOT, loss_columns, "loss", loss_rows),
        (METRIC_PLOT, metric_columns, "metric", metric_rows),
    ):
        if not columns:
            continue
        figure, axes = plt.subplots(figsize=(6, 4), dpi=100)
        for index, column in enumerate(columns):
            xs, ys = _series(source, column, axis)
            if not ys:
                continue
            style = STYLES.get(column) or {
                "marker": MARKERS[index % len(MARKERS)], "linestyle": "--", "linewidth": 1.2,
                "markersize": 5,
            }  # fmt: skip
            axes.plot(xs, ys, label=column, **style)
        axes.set_xlabel("iteration" if axis == "iter" else "epoch")
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


def is_loss_column(column: str) -> bool:
    """``loss`` and its terms: ``loss_*`` in results.csv, the bare term names (``stage1_pafs``,
    ``heatmap``, ``vfl``...) in progress.csv; not ``stage``, ``iter``, ``lr`` or metrics."""
    if column == "loss" or column.startswith("loss_"):
        return True
    return (
        column not in NOT_LOSS
        and column not in METRIC_COLUMNS
        and not column.startswith(("AP", "AR", "PCK"))
    )


def _columns(rows: list[dict[str, str]], keep: Any) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns.extend(c for c in row if keep(c) and c not in columns)
    return columns


def drop_rows_after(path: Path, iteration: int) -> None:
    """Remove the rows logged after ``iteration`` (a resumed run logs them again)."""
    rows = read_results(path)
    kept = [row for row in rows if float(row.get("iter") or 0) <= iteration]
    if len(kept) != len(rows):
        write_rows(path, kept, rows)


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
