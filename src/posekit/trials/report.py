"""What ``posekit trials`` leaves behind: ``trials_{timestamp}.csv`` (one row per entry),
``best_config.yaml`` (the best complete trial, ready to train) and ``trials.png``.

An entry that was interrupted and run again appears once, as its last run; a trial that
stepped aside because another already held its entry does not appear.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optuna.trial import FrozenTrial, TrialState

from posekit.atomic import atomic_write_bytes, atomic_write_text
from posekit.trials.store import frozen_candidate, groups, is_interrupted

if TYPE_CHECKING:
    import optuna

    from posekit.trials.options import TrialsRun

CSV_COLUMNS = ("trial_id", "status", "final_map", "final_loss", "duration_s")
STATUS = {TrialState.COMPLETE: "completed", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed"}
BEST_CONFIG = "best_config.yaml"
PLOT = "trials.png"


@dataclass
class TrialRow:
    trial_id: int
    status: str
    final_map: float | None
    final_loss: float | None
    duration_s: float | None
    params: dict[str, Any]
    note: str = ""  # why it failed or was pruned
    curve: dict[int, float] = field(default_factory=dict)  # metric per epoch


def representative(group: list[FrozenTrial]) -> FrozenTrial | None:
    """The trial that stands for an entry: its finished run (complete before pruned before
    failed), else its last interrupted run; None while it is only waiting or running."""
    finished = [t for t in group if t.state in STATUS and not is_interrupted(t)]
    if finished:
        order = list(STATUS)
        return min(finished, key=lambda t: (order.index(t.state), t.number))
    interrupted = [t for t in group if is_interrupted(t)]
    return interrupted[-1] if interrupted else None


def trial_rows(run: TrialsRun, trials: list[FrozenTrial]) -> list[TrialRow]:
    entries = run.plan.entries
    rows = []
    for group in groups(trials, entries is not None).values():
        trial = representative(group)
        if trial is None:
            continue
        if entries is not None:
            candidate = frozen_candidate(trial)
            if candidate is None or not 0 <= candidate < len(entries):
                continue
            params = dict(entries[candidate])
        else:
            params = dict(trial.params)
        curve = {int(k): float(v) for k, v in sorted(trial.intermediate_values.items())}
        value = trial.value if trial.state == TrialState.COMPLETE else None
        if value is None and curve:
            value = curve[max(curve)]
        loss = trial.user_attrs.get("loss")
        duration = trial.duration.total_seconds() if trial.duration is not None else None
        note = trial.user_attrs.get("error") or trial.user_attrs.get("pruned_reason") or ""
        if trial.state == TrialState.FAIL and not note:
            note = "interrupted"
        rows.append(
            TrialRow(
                trial.number,
                STATUS[trial.state],
                value,
                float(loss) if loss is not None else None,
                round(duration, 2) if duration is not None else None,
                params,
                note,
                curve,
            )
        )
    return sorted(rows, key=lambda r: r.trial_id)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (bool, int, str)):
        return str(value)
    return json.dumps(value)


def csv_text(rows: list[TrialRow], keys: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*CSV_COLUMNS, *(f"param_{k}" for k in keys)])
    for row in rows:
        fixed = (row.trial_id, row.status, row.final_map, row.final_loss, row.duration_s)
        writer.writerow([*(_cell(v) for v in fixed), *(_cell(row.params.get(k)) for k in keys)])
    return buffer.getvalue()


def best_row(rows: list[TrialRow]) -> TrialRow | None:
    complete = [r for r in rows if r.status == "completed" and r.final_map is not None]
    return max(complete, key=lambda r: (r.final_map, -r.trial_id), default=None)


def write_best_config(run: TrialsRun, best: TrialRow, path: Path) -> None:
    """The base config (with the command's overrides) plus the best entry: no budget, no
    trial folder, ready for ``posekit train --config``."""
    from posekit.config import config_from_mapping, save_config

    cfg = config_from_mapping(run.base, best.params, None, f"best trial {best.trial_id}")
    save_config(cfg, path)


def plot_png(rows: list[TrialRow], metric: str) -> bytes:
    """Left: the final metric per trial (pruned at its last value, failed at the bottom);
    right: the metric per epoch of every trial."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (by_trial, by_epoch) = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    values = [r.final_map for r in rows if r.final_map is not None and math.isfinite(r.final_map)]
    floor = min(values, default=0.0)
    styles = {
        "completed": ("tab:blue", "o", "completed"),
        "pruned": ("tab:orange", "v", "pruned"),
        "failed": ("tab:red", "x", "failed"),
    }
    for status, (color, marker, label) in styles.items():
        chosen = [r for r in rows if r.status == status]
        if not chosen:
            continue
        ys = [r.final_map if r.final_map is not None else floor for r in chosen]
        xs = [r.trial_id for r in chosen]
        by_trial.scatter(xs, ys, c=color, marker=marker, s=60, label=label, zorder=3)
        for row in chosen:
            if row.curve:
                style = "-" if status == "completed" else "--"
                by_epoch.plot(list(row.curve), list(row.curve.values()), style, color=color)
    best = best_row(rows)
    if best is not None:
        label = f"best (trial {best.trial_id})"
        by_trial.scatter(
            [best.trial_id], [best.final_map], marker="*", s=250, c="gold", label=label, zorder=4
        )
    by_trial.set_xlabel("trial")
    by_trial.set_ylabel(f"final {metric}")
    by_trial.set_title("trials (failed ones drawn at the bottom)")
    by_trial.grid(alpha=0.3)
    if rows:
        by_trial.legend(fontsize=8)
    by_epoch.set_xlabel("epoch")
    by_epoch.set_ylabel(metric)
    by_epoch.set_title("per epoch (dashed: pruned or failed)")
    by_epoch.grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def write_report(run: TrialsRun, study: optuna.Study, say: Any = print) -> list[Path]:
    """Write the CSV, the plot and (when a trial completed) the best config; say a summary."""
    rows = trial_rows(run, study.get_trials(deepcopy=False))
    out = run.output_dir
    stamp = time.strftime("%Y%m%d-%H%M%S")
    csv_path, plot_path = out / f"trials_{stamp}.csv", out / PLOT
    atomic_write_text(csv_path, csv_text(rows, run.plan.keys))
    atomic_write_bytes(plot_path, plot_png(rows, run.metric))
    written = [csv_path, plot_path]
    for row in rows:
        shown = f"{row.final_map:.4g}" if row.final_map is not None else "-"
        note = f" ({row.note})" if row.note else ""
        say(f"  trial {row.trial_id}: {row.status}, {run.metric} {shown}{note}")
    best = best_row(rows)
    if best is None:
        say("no trial completed: best_config.yaml not written")
    else:
        write_best_config(run, best, out / BEST_CONFIG)
        written.append(out / BEST_CONFIG)
        say(f"best: trial {best.trial_id}, {run.metric} {best.final_map:.4g}")
    return written
