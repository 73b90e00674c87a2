"""Short real training runs through the command line (CPU, seconds each)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from posekit.data.prepared_labels import prepare_train_labels, save_prepared_labels
from posekit.engine.state import load_checkpoint

TINY_MODEL = (
    "model.params={num_refinement_stages: 1, num_channels: 16, width_mult: 0.25, head_width: 32}"
)


def posekit(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "posekit", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def tiny_synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    posekit("synth", "--out", str(root), "--images", "16", "--val", "4", "--size", "128x128",
            cwd=root)  # fmt: skip
    return root


def test_two_iteration_run_on_synthetic_data(tiny_synthetic: Path, tmp_path: Path) -> None:
    work = tmp_path / "run"
    posekit(
        "train", "--max-iter", "2", "--batch-size", "4", "--num-workers", "0",
        "--work-dir", str(work), "--checkpoint-after", "1",
        f"data.train.labels={tiny_synthetic / 'train.json'}",
        f"data.train.images={tiny_synthetic / 'train'}",
        f"data.val.labels={tiny_synthetic / 'val.json'}",
        f"data.val.images={tiny_synthetic / 'val'}",
        "data.input_size=128", "bottomup.inference.input_height=128", TINY_MODEL,
        cwd=tmp_path,
    )  # fmt: skip
    assert (work / "config.yaml").is_file()
    for name in ("last.pth", "best.pth", "checkpoint_iter_1.pth", "checkpoint_iter_2.pth"):
        assert (work / "checkpoints" / name).is_file(), name
    rows = list(csv.DictReader((work / "results.csv").open()))
    assert rows[-1]["iter"] == "2"
    assert {"epoch", "AP", "AP50", "AP75", "APm", "APl", "AR"} <= set(rows[-1])
    assert (work / "plots" / "loss.png").is_file()
    checkpoint = load_checkpoint(work / "checkpoints" / "last.pth")
    assert checkpoint["train_state"]["iteration"] == 2
    assert checkpoint["schema"]["name"] == "coco17"


def test_original_flags_on_the_real_coco_sample(real_coco_dir: Path, tmp_path: Path) -> None:
    prepared = tmp_path / "prepared_train_annotation.json"
    save_prepared_labels(prepare_train_labels(real_coco_dir / "test_coco.json"), prepared)
    posekit(
        "train",
        "--prepared-train-labels", str(prepared),
        "--train-images-folder", str(real_coco_dir),
        "--val-labels", str(real_coco_dir / "test_coco.json"),
        "--val-images-folder", str(real_coco_dir),
        "--val-output-name", "detections.json",
        "--experiment-name", "sample",
        "--batch-size", "2", "--num-workers", "0",
        "--checkpoint-after", "1", "--val-after", "2", "--log-after", "1",
        "--max-iter", "2", "--base-lr", "1e-4",
        TINY_MODEL, "data.input_size=128", "bottomup.inference.input_height=128",
        cwd=tmp_path,
    )  # fmt: skip
    run = tmp_path / "runs" / "sample"
    assert (run / "checkpoints" / "checkpoint_iter_1.pth").is_file()
    assert (run / "checkpoints" / "checkpoint_iter_2.pth").is_file()
    results = json.loads((run / "detections.json").read_text())
    assert isinstance(results, list)
    valid_ids = {785, 40083, 196141, 197388}
    for entry in results:
        assert entry["image_id"] in valid_ids
        assert len(entry["keypoints"]) == 51
        assert entry["score"] >= 0


@pytest.fixture(scope="module")
def one_iteration(tiny_synthetic: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkpoint of a 1-iteration run (weights for val / predict / export tests)."""
    work = tmp_path_factory.mktemp("one_iteration")
    posekit(
        "train", "--max-iter", "1", "--batch-size", "4", "--num-workers", "0",
        "--work-dir", str(work), "--eval-interval", "0",
        f"data.train.labels={tiny_synthetic / 'train.json'}",
        f"data.train.images={tiny_synthetic / 'train'}",
        "data.input_size=128", TINY_MODEL,
        cwd=work,
    )  # fmt: skip
    return work / "checkpoints" / "last.pth"


def test_val_command_prints_json_last(
    tiny_synthetic: Path, one_iteration: Path, tmp_path: Path
) -> None:
    result = posekit(
        "val", "--weights", str(one_iteration),
        "--val-labels", str(tiny_synthetic / "val.json"),
        "--val-images-folder", str(tiny_synthetic / "val"),
        "--val-output-name", str(tmp_path / "out.json"), "--json",
        "bottomup.inference.input_height=128",
        cwd=tmp_path,
    )  # fmt: skip
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"AP", "AP50", "AP75", "APm", "APl", "AR"} <= set(metrics)
    assert (tmp_path / "out.json").is_file()
    predicted = posekit(
        "predict", str(tiny_synthetic / "val"), "--weights", str(one_iteration),
        "--out", str(tmp_path / "pred"), "bottomup.inference.input_height=128",
        cwd=tmp_path,
    )  # fmt: skip
    assert "people" in predicted.stdout
    assert len(list((tmp_path / "pred").glob("*.jpg"))) == 4
    assert set(json.loads((tmp_path / "pred" / "people.json").read_text())) == {
        p.name for p in (tiny_synthetic / "val").glob("*.jpg")
    }


def test_predict_on_a_video(tiny_synthetic: Path, one_iteration: Path, tmp_path: Path) -> None:
    import cv2

    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"mp4v"), 5.0, (128, 128))
    for frame in sorted((tiny_synthetic / "val").glob("*.jpg")):
        writer.write(cv2.imread(str(frame)))
    writer.release()
    posekit(
        "predict", str(video), "--weights", str(one_iteration),
        "--out", str(tmp_path / "pred"), "bottomup.inference.input_height=128",
        cwd=tmp_path,
    )  # fmt: skip
    assert (tmp_path / "pred" / "clip_pose.mp4").stat().st_size > 0
    frames = json.loads((tmp_path / "pred" / "people.json").read_text())["clip.mp4"]
    assert len(frames) == 4
