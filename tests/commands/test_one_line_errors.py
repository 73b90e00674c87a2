"""What used to end in a traceback ends in one line naming the file or setting, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from posekit.cli import main
from posekit.engine.loop import pick_device
from posekit.errors import ConfigError

OLD = Path(__file__).resolve().parents[1] / "data" / "before_family_sections"
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TOPDOWN = [
    "model.name=topdown", "data.num_workers=0", "--max-epochs", "1", "--batch-size", "2",
    "model.params={backbone: mobilenet_v2, width_mult: 0.25, input_size: [64, 64], "
    "deconv_channels: [16]}",
]  # fmt: skip


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from posekit.data.synthetic.generate import generate_synthetic

    root = tmp_path_factory.mktemp("one_line_people")
    generate_synthetic(root, num_train=3, num_val=2, size=(96, 96), seed=4)
    return root


def labels_without_people(source: Path, target: Path, invisible: bool) -> Path:
    data = json.loads(source.read_text())
    if invisible:
        for annotation in data["annotations"]:
            annotation["keypoints"] = [0] * len(annotation["keypoints"])
            annotation["num_keypoints"] = 0
    else:
        data["annotations"] = []
    target.write_text(json.dumps(data))
    return target


@pytest.mark.parametrize("invisible", [False, True])
def test_top_down_labels_without_people(
    people: Path, tmp_path: Path, invisible: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    train = labels_without_people(people / "train.json", tmp_path / "train.json", invisible)
    words = ["train", "--work-dir", str(tmp_path / "run"), *TOPDOWN,
             f"data.train.labels={train}", f"data.train.images={people / 'train'}"]  # fmt: skip
    assert main(words) == 2
    assert f"{train}: no annotation" in one_error_line(capsys)
    val = labels_without_people(people / "val.json", tmp_path / "val.json", invisible)
    words = ["train", "--work-dir", str(tmp_path / "run2"), *TOPDOWN,
             f"data.train.labels={people / 'train.json'}",
             f"data.train.images={people / 'train'}",
             f"data.val.labels={val}", f"data.val.images={people / 'val'}"]  # fmt: skip
    assert main(words) == 2
    assert f"{val}: no annotation" in one_error_line(capsys)


def test_devices_this_pytorch_cannot_use() -> None:
    assert pick_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match=r"device 'gpu' is not a device name; use one of"):
        pick_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="device 'cuda': this PyTorch .* use device=cpu"):
            pick_device("cuda")
        with pytest.raises(ConfigError, match="device 'cuda:1'"):
            pick_device("cuda:1")


def test_train_on_a_device_that_is_not_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here")
    assert main(["train", "--device", "cuda", "--work-dir", str(tmp_path / "run")]) == 2
    assert "device 'cuda'" in one_error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_weights_that_are_not_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = CONFIGS / "topdown" / "synthetic.yaml"
    assert main(["predict", str(tmp_path), "--weights", str(config)]) == 2
    assert "is a config file, not weights" in one_error_line(capsys)
    garbage = tmp_path / "model.pth"
    garbage.write_text("not a checkpoint")
    assert main(["val", "--weights", str(garbage)]) == 2
    assert "not a PyTorch checkpoint" in one_error_line(capsys)


def test_resume_with_another_model_or_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    run = tmp_path / "run" / "checkpoints"
    run.mkdir(parents=True)
    shutil.copy(OLD / "bottomup.pth", run / "last.pth")
    for override in ("model.params.num_channels=32", "data.schema=crowdpose"):
        code = main(["train", "--resume", "--work-dir", str(tmp_path / "run"), override])
        assert code == 2
        line = one_error_line(capsys)
        assert "cannot change when resuming" in line and override.split("=")[0] in line


def test_a_pose_model_given_as_the_detector(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pose = str(OLD / "bottomup.pth")
    assert main(["predict", str(tmp_path), "--detector", pose, "--pose", pose]) == 2
    line = one_error_line(capsys)
    assert line.endswith(
        "--detector: these weights are not a detector's; give a detector checkpoint "
        "(model.name rtdetr), or pass the pose model with --weights alone"
    )
