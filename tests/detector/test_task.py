"""The detector family through the shared engine: post-processing and COCO bbox AP checked
with a model that outputs the ground truth, the two-stage schedule's files, exact resume,
classes resolved into the saved config, ``posekit val`` and ``posekit predict``."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from posekit.cli import main
from posekit.config import PosekitConfig, load_config
from posekit.detector.coco_boxes import CocoBoxes
from posekit.detector.model import DetectorOutputs
from posekit.detector.task import DetectorTask, select_detections
from posekit.engine.checkpoints import latest_checkpoint
from posekit.engine.control import TrainingStopped
from posekit.engine.loop import Trainer
from posekit.topdown.detections import load_detections

from ..engine.conftest import stop_after_batches
from .conftest import TINY_DETECTOR

CPU = torch.device("cpu")


def test_select_detections_takes_the_best_pairs_and_scales_to_the_image() -> None:
    logits = torch.tensor([[-5.0, 2.0], [1.0, -5.0], [-9.0, -9.0]])
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.4], [0.25, 0.5, 0.5, 1.0], [0.1, 0.1, 0.1, 0.1]])
    xywh, scores, classes = select_detections(logits, boxes, (100, 200), max_detections=2)
    np.testing.assert_allclose(scores, torch.sigmoid(torch.tensor([2.0, 1.0])).numpy())
    assert classes.tolist() == [1, 0]
    np.testing.assert_allclose(xywh, [[80, 30, 40, 40], [0, 0, 100, 100]], atol=1e-4)
    _, kept, _ = select_detections(logits, boxes, (100, 200), 6, score_threshold=0.8)
    assert len(kept) == 1


class GroundTruthDetector(nn.Module):
    """Outputs each image's ground-truth boxes as confident queries, image by image."""

    def __init__(self, data: CocoBoxes, queries: int = 30) -> None:
        super().__init__()
        self.records = list(data.images)
        self.queries = queries

    def forward(self, images: torch.Tensor) -> DetectorOutputs:
        logits = torch.full((len(images), self.queries, 1), -10.0)
        boxes = torch.full((len(images), self.queries, 4), 0.5)
        for row in range(len(images)):
            record = self.records.pop(0)
            scale = np.array([record.width, record.height] * 2, np.float32)
            xyxy = record.boxes / scale
            count = len(xyxy)
            boxes[row, :count] = torch.from_numpy(
                np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], 1)
            )
            logits[row, :count] = 5.0
        return DetectorOutputs([(logits, boxes)], (logits, boxes))


def test_perfect_outputs_give_ap_one_on_the_real_coco_sample(
    real_coco_dir: Path, detector_config: Callable[..., PosekitConfig], tmp_path: Path
) -> None:
    cfg = detector_config(
        f"data.val.labels={real_coco_dir / 'test_coco.json'}",
        f"data.val.images={real_coco_dir}", "detector.eval_batch_size=3",
    )  # fmt: skip
    task = DetectorTask(cfg, CPU)
    assert task.val_data is not None
    metrics = task.evaluate(GroundTruthDetector(task.val_data), tmp_path / "dets.json")
    assert metrics["AP"] == pytest.approx(1.0) and metrics["AP75"] == pytest.approx(1.0)
    assert {"AP50", "APs", "APm", "APl", "AR100"} <= set(metrics)
    written = json.loads((tmp_path / "dets.json").read_text())
    assert len(written) == 4 * 30 and {d["category_id"] for d in written} == {1}


def test_training_keeps_both_stages_best_and_records_the_classes(
    detector_config: Callable[..., PosekitConfig],
) -> None:
    from posekit.commands.train import train

    cfg = detector_config(
        "training.max_epochs=3", "training.stop_epoch=3", "training.eval_interval=1",
        "training.ema.enabled=true", "training.multiscale=[64, 96]",
    )  # fmt: skip
    state = train(cfg, say=lambda _: None)
    checkpoints = cfg.resolved_work_dir() / "checkpoints"
    assert state.stage == 2
    assert {"best_stg1.pth", "best_stg2.pth", "best.pth", "last.pth"} <= {
        p.name for p in checkpoints.iterdir()
    }
    saved = load_config(cfg.resolved_work_dir() / "config.yaml")
    assert saved.data.category_ids == [1] and saved.detector.category_names == ["person"]
    rows = (cfg.resolved_work_dir() / "results.csv").read_text().splitlines()
    assert "vfl_enc" in rows[0] and "AP50" in rows[0] and len(rows) == 4


def test_stop_and_resume_is_bit_identical(detector_config: Callable[..., PosekitConfig]) -> None:
    words = ("training.amp=true", "training.ema.enabled=true", "training.batches_per_iter=2",
             "training.eval_interval=1")  # fmt: skip

    def trainer(cfg: PosekitConfig) -> Trainer:
        torch.manual_seed(cfg.seed)
        task = DetectorTask(cfg, CPU)
        return Trainer(task.cfg, task, cfg.resolved_work_dir(), CPU, lambda _: None)

    straight = trainer(detector_config(*words, work="straight"))
    straight.fit()
    cfg = detector_config(*words, work="resumed")
    first = trainer(cfg)
    stop_after_batches(first, 3)  # inside an accumulation window of the second epoch
    with pytest.raises(TrainingStopped):
        first.fit()
    second = trainer(cfg)
    second.resume_from(latest_checkpoint(cfg.resolved_work_dir()))
    second.fit()
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[key]), key
    assert straight.state.best_metric == second.state.best_metric


def test_every_part_of_the_state_is_restored(
    detector_config: Callable[..., PosekitConfig],
) -> None:
    from ..engine.resume_check import check_exact_resume

    def trainer(cfg: PosekitConfig) -> Trainer:
        torch.manual_seed(cfg.seed)
        task = DetectorTask(cfg, CPU)
        return Trainer(task.cfg, task, cfg.resolved_work_dir(), CPU, lambda _: None)

    check_exact_resume(detector_config, trainer, "training.multiscale=[64, 96]")


def test_val_and_predict_from_the_command_line(
    detector_config: Callable[..., PosekitConfig],
    boxes_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from posekit.commands.train import train

    cfg = detector_config("training.max_epochs=1")
    train(cfg, say=lambda _: None)
    weights = cfg.resolved_work_dir() / "checkpoints" / "last.pth"
    detections = tmp_path / "detections.json"
    command = ["val", "--weights", str(weights), "--json", "--val-output-name", str(detections)]
    assert main(command) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(metrics) >= {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    # the detections JSON is what top-down evaluation takes as its person boxes
    boxes_of = load_detections(detections)
    val_ids = {image["id"] for image in json.loads((boxes_data / "val.json").read_text())["images"]}
    assert set(boxes_of) == val_ids
    assert all(len(boxes) == 10 for boxes, _ in boxes_of.values())  # every query, threshold 0
    out = tmp_path / "drawn"
    image = boxes_data / "val" / sorted(p.name for p in (boxes_data / "val").iterdir())[0]
    assert main(["predict", str(image), "--detector", str(weights), "--out", str(out)]) == 0
    listing = json.loads((out / "detections.json").read_text())
    assert list(listing) == [image.name] and (out / f"{image.stem}.jpg").exists()
    found = {}
    for threshold in ("0", "1"):
        command = ["predict", str(image), "--detector", str(weights), "--out", str(out),
                   "--box-threshold", threshold]  # fmt: skip
        assert main(command) == 0
        found[threshold] = json.loads((out / "detections.json").read_text())[image.name]
    assert len(found["0"]) == 10 and found["1"] == []  # every query scores above 0, none 1
    # a detector is no pose model: the two-step pipeline refuses it as --pose
    code = main(["predict", str(image), "--detector", str(weights), "--pose", str(weights)])
    assert code == 2
    assert "--pose: a top-down pose model is needed" in capsys.readouterr().err


def test_category_ids_of_another_family_key_are_refused(
    detector_config: Callable[..., PosekitConfig],
) -> None:
    from posekit.errors import ConfigError

    with pytest.raises(ConfigError, match="model.params.num_classes"):
        DetectorTask(detector_config("model.params.num_classes=3"), CPU)


def test_the_detr_guide_flags_and_trials_drive_the_detector(
    detector_config: Callable[..., PosekitConfig],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = tmp_path / "detector.yaml"
    base.write_text(yaml.safe_dump(detector_config(work="guide").to_dict()))
    flags = ["--subset-size", "4", "--max-iter", "3", "--eval-interval", "1", "--amp",
             "--max-epochs", "10"]  # fmt: skip
    assert main(["train", "--config", str(base), *flags, "training.resize_schedule=[[2, 96]]"]) == 0
    run = tmp_path / "guide"
    saved = load_config(run / "config.yaml")
    assert saved.training.subset_size == 4 and saved.training.amp
    assert (run / "checkpoints" / "last.pth").exists()
    more = ["--subset-size", "4", "--max-iter", "4", "--eval-interval", "1", "--amp",
            "--max-epochs", "10"]  # fmt: skip
    assert main(["train", "--config", str(base), *more, "--resume", "auto"]) == 0
    rows = (run / "results.csv").read_text().splitlines()
    assert rows[-1].split(",")[1] == "4"  # continued to iteration 4

    trials = tmp_path / "trials.json"
    trials.write_text(
        json.dumps([{"training.optimizer.lr": 1e-3}, {"training.optimizer.lr": 3e-3}])
    )
    out = tmp_path / "search"
    budget = ["--budget-epochs", "1", "--budget-subset", "4", "--budget-size", "64"]
    code = main(["trials", "--base-config", str(base), "--trials-file", str(trials),
                 "--output-dir", str(out), *budget])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    with next(out.glob("trials_*.csv")).open() as handle:
        statuses = [row["status"] for row in csv.DictReader(handle)]
    assert statuses == ["completed", "completed"]


def test_torchrun_trains_the_detector_with_sync_bn_and_validation(
    detector_config: Callable[..., PosekitConfig], tmp_path: Path
) -> None:
    """Two processes, synchronised BatchNorm, validation and its drawings every epoch (rank 0
    alone runs the network there, so it must not wait for the other rank)."""
    config = tmp_path / "detector.yaml"
    work = tmp_path / "ddp"
    config.write_text(yaml.safe_dump(detector_config(work="ddp").to_dict()))
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "posekit", "train", "--config", str(config), "training.batch_size=2",
        "training.sync_bn=true", "training.eval_interval=1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = (work / "results.csv").read_text().splitlines()
    assert len(rows) == 3 and "AP50" in rows[0]
    assert len(list((work / "plots").glob("val_*.jpg"))) == 3


def test_a_config_with_class_ids_alone_names_them() -> None:
    cfg = load_config(None, [*TINY_DETECTOR, "data.category_ids=[1, 18]"])
    task = DetectorTask(cfg, CPU)
    assert task.category_names == ["person", "category 18"]
    assert task.model.num_classes == 2


def test_imagenet_backbone_trains_and_its_file_is_not_needed_after(
    detector_config: Callable[..., PosekitConfig],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from posekit.commands.train import train

    from ..layers.test_backbone_weights import imagenet_file

    weights_file = tmp_path / "resnet18-imagenet.pth"
    torch.save(imagenet_file("resnet18", "torchvision"), weights_file)
    cfg = detector_config(
        "training.max_epochs=1",
        "model.params={size: tiny, backbone: resnet18, hidden_dim: 32, num_heads: 2, "
        f"num_queries: 10, num_decoder_layers: 2, backbone_weights: '{weights_file}'}}",
    )
    said: list[str] = []
    train(cfg, say=said.append)
    assert any(
        line.startswith(f"backbone resnet18: ImageNet weights from {weights_file}")
        and "0 shape-mismatched, 0 missing, 0 unexpected" in line
        for line in said
    ), said
    weights_file.unlink()  # the trained weights replace the ImageNet ones
    run_weights = cfg.resolved_work_dir() / "checkpoints" / "last.pth"
    assert main(["val", "--weights", str(run_weights), "--json"]) == 0
    assert "AP" in json.loads(capsys.readouterr().out.strip().splitlines()[-1])
