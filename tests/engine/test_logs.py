"""What a run leaves to look at: plots per evaluation with every metric visible, and the
validation drawings with the ground truth beside the prediction."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from posekit.config import PosekitConfig
from posekit.engine.logs import plot_rows, read_results, write_plots

from .conftest import make_trainer

Build = Callable[..., PosekitConfig]


def test_few_epochs_plot_by_iteration_with_every_evaluation() -> None:
    rows = [{"epoch": "1", "iter": "6", "loss": "0.5", "AP": "0.4"}]
    progress = [
        {"iter": "2", "epoch": "0.33", "loss": "0.9"},
        {"iter": "3", "epoch": "0.5", "AP": "0.1", "APm": "0.1"},
        {"iter": "4", "epoch": "0.67", "loss": "0.7"},
    ]
    axis, losses, metrics = plot_rows(rows, progress)
    assert axis == "iter"
    assert [r["iter"] for r in losses] == ["2", "4"]
    assert [r["iter"] for r in metrics] == ["3", "6"]  # the mid-epoch evaluation, then epoch 1
    many = [{"epoch": str(e), "iter": str(6 * e), "loss": "0.5"} for e in range(1, 6)]
    assert plot_rows(many, progress) == ("epoch", many, many)


def test_a_one_epoch_run_plots_its_loss_over_iterations(make_config: Build) -> None:
    cfg = make_config("training.max_epochs=1", "training.log_after=2", "training.val_after=3",
                      "training.eval_interval=1")  # fmt: skip
    make_trainer(cfg).fit()
    work = cfg.resolved_work_dir()
    progress = read_results(work / "progress.csv")
    assert [r["iter"] for r in progress if r.get("loss")] == ["2", "4", "6"]
    assert [r["iter"] for r in progress if r.get("AP")] == ["3", "6"]
    for name in ("loss.png", "metrics.png"):
        image = cv2.imread(str(work / "plots" / name))
        assert image is not None and image.shape[0] > 100


def test_ap_is_drawn_over_the_other_metrics(tmp_path: Path) -> None:
    results = tmp_path / "results.csv"
    with results.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["epoch", "iter", "loss", "AP", "APm"])
        writer.writeheader()
        for epoch in range(1, 7):  # AP and APm equal: AP must stay visible
            writer.writerow({"epoch": epoch, "iter": epoch * 10, "loss": 1 / epoch,
                             "AP": epoch / 10, "APm": epoch / 10})  # fmt: skip
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines: list = []
    original = plt.Axes.plot

    def recording(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        lines.append(kwargs)
        return original(self, *args, **kwargs)

    plt.Axes.plot = recording  # type: ignore[method-assign]
    try:
        write_plots(results, tmp_path / "plots")
    finally:
        plt.Axes.plot = original  # type: ignore[method-assign]
    by_label = {kwargs["label"]: kwargs for kwargs in lines}
    assert by_label["AP"]["zorder"] > by_label["APm"].get("zorder", 2)
    assert by_label["AP"]["linewidth"] > by_label["APm"]["linewidth"]
    assert by_label["APm"]["linestyle"] == "--"


def test_validation_drawings_show_truth_beside_prediction(make_config: Build) -> None:
    cfg = make_config("training.max_epochs=1", "training.eval_interval=1")
    trainer = make_trainer(cfg)
    trainer.fit()
    drawing = sorted((cfg.resolved_work_dir() / "plots").glob("val_*.jpg"))[0]
    image = cv2.imread(str(drawing))
    record = trainer.task.val_data.images[0]
    gap = max(4, record.height // 50)
    assert image.shape[:2] == (record.height, 2 * record.width + gap)
    separator = image[:, record.width : record.width + gap].astype(np.int16)
    assert np.abs(separator - 128).max() < 40  # the grey gap between the two panels


def test_the_loss_plot_draws_loss_terms_only() -> None:
    from posekit.engine.logs import is_loss_column

    columns = ["epoch", "iter", "stage", "loss", "loss_stage1_pafs", "stage1_heatmaps", "vfl",
               "lr", "AP", "APm", "AR50", "epoch_time", "peak_memory_mb", "skipped"]  # fmt: skip
    assert [c for c in columns if is_loss_column(c)] == [
        "loss", "loss_stage1_pafs", "stage1_heatmaps", "vfl",
    ]  # fmt: skip
