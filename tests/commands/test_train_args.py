"""The original Lightweight OpenPose train.py flags map onto the config."""

from __future__ import annotations

from pathlib import Path

import pytest

from posekit.cli import build_parser
from posekit.commands.train_args import (
    DEFAULT_CONFIG,
    ORIGINAL_CONFIG,
    base_config_path,
    train_config,
)

ORIGINAL_COMMAND = [
    "train",
    "--prepared-train-labels", "prepared_train_annotation.pkl",
    "--train-images-folder", "coco/train2017/",
    "--num-refinement-stages", "3",
    "--base-lr", "4e-5",
    "--batch-size", "80",
    "--batches-per-iter", "2",
    "--num-workers", "8",
    "--checkpoint-path", "mobilenet_sgd_68.848.pth.tar",
    "--from-mobilenet",
    "--experiment-name", "coco_mobilenet",
    "--log-after", "100",
    "--val-labels", "val_subset.json",
    "--val-images-folder", "coco/val2017/",
    "--val-output-name", "detections.json",
    "--checkpoint-after", "5000",
    "--val-after", "5000",
]  # fmt: skip


def parse(words: list[str]):
    return build_parser().parse_args(words)


def test_original_flags_parse_into_the_config() -> None:
    args = parse(ORIGINAL_COMMAND)
    assert base_config_path(args) == ORIGINAL_CONFIG
    cfg = train_config(args)
    assert cfg.data.train.labels == "prepared_train_annotation.pkl"
    assert cfg.data.train.images == "coco/train2017/"
    assert cfg.model.params["num_refinement_stages"] == 3
    assert cfg.training.optimizer.lr == pytest.approx(4e-5)
    assert cfg.training.batch_size == 80
    assert cfg.training.batches_per_iter == 2
    assert cfg.data.num_workers == 8
    assert cfg.training.checkpoint_path == "mobilenet_sgd_68.848.pth.tar"
    assert cfg.training.from_mobilenet is True
    assert cfg.training.weights_only is False
    assert cfg.experiment_name == "coco_mobilenet"
    assert cfg.resolved_work_dir().as_posix() == "runs/coco_mobilenet"
    assert cfg.training.log_after == 100
    assert cfg.data.val.labels == "val_subset.json"
    assert cfg.data.val.images == "coco/val2017/"
    assert cfg.training.val_output_name == "detections.json"
    assert cfg.training.checkpoint_after == 5000
    assert cfg.training.val_after == 5000
    # the original recipe's other defaults come from configs/lw_openpose/original.yaml
    assert cfg.training.optimizer.weight_decay == pytest.approx(5e-4)
    assert cfg.training.schedule.name == "step"
    assert cfg.training.schedule.milestones == [100, 200, 260]


def test_posekit_flags_and_overrides_take_precedence() -> None:
    args = parse(
        ["train", "--max-iter", "7", "--work-dir", "/tmp/x", "--amp", "--weights-only",
         "training.batch_size=3", "--cfg-options", "seed=5"]
    )  # fmt: skip
    assert base_config_path(args) == DEFAULT_CONFIG
    cfg = train_config(args)
    assert cfg.training.max_iter == 7
    assert cfg.work_dir == "/tmp/x"
    assert cfg.training.amp is True
    assert cfg.training.weights_only is True
    assert cfg.training.batch_size == 3
    assert cfg.seed == 5


def test_override_beats_flag() -> None:
    cfg = train_config(parse(["train", "--batch-size", "4", "training.batch_size=6"]))
    assert cfg.training.batch_size == 6


def test_resume_without_config_starts_from_the_stored_config(tmp_path: Path) -> None:
    from posekit.config import load_config
    from posekit.engine.state import save_checkpoint

    stored = load_config(None, ["training.batch_size=3", "model.params.width_mult=0.5"])
    save_checkpoint(tmp_path / "run" / "checkpoints" / "last.pth", {"config": stored.to_dict()})
    args = parse(["train", "--resume", "--work-dir", str(tmp_path / "run"), "--max-epochs", "9"])
    cfg = train_config(args)
    assert cfg.training.resume == "auto"
    assert cfg.training.batch_size == 3  # from the checkpoint, not the built-in config
    assert cfg.model.params == {"width_mult": 0.5}
    assert cfg.training.max_epochs == 9  # flags still apply on top


def test_a_built_in_or_stored_base_gives_only_the_models_familys_section(
    tmp_path: Path,
) -> None:
    import shutil

    from posekit.config import BottomUpConfig, check_family_sections
    from posekit.engine.state import load_checkpoint
    from posekit.errors import ConfigError

    # the built-in config is bottom-up's (its bottomup section is tuned): a top-down run
    # made from it gets none of that section, and no refusal
    cfg = train_config(parse(["train", "model.name=topdown", "--max-epochs", "2"]))
    assert cfg.model.name == "topdown" and cfg.bottomup == BottomUpConfig()
    check_family_sections(cfg, "topdown")
    assert train_config(parse(["train"])).bottomup.loss.foreground_weight == 10.0
    # the user's own key of another family is still refused (by train; see test_config)
    cfg = train_config(parse(["train", "model.name=topdown", "loss.heatmap_weight=5"]))
    with pytest.raises(ConfigError, match="formerly loss.heatmap_weight"):
        check_family_sections(cfg, "topdown")
    # resuming a top-down run written before the sections: its stored config has bottom-up
    # settings at the top level (from the built-in config); they are dropped
    old = Path(__file__).resolve().parents[1] / "data" / "before_family_sections"
    run = tmp_path / "run" / "checkpoints"
    run.mkdir(parents=True)
    shutil.copy(old / "topdown.pth", run / "last.pth")
    stored = load_checkpoint(run / "last.pth")["config"]
    assert stored["loss"]["foreground_weight"] == 10.0
    cfg = train_config(parse(["train", "--resume", "--work-dir", str(tmp_path / "run")]))
    assert cfg.model.name == "topdown" and cfg.bottomup == BottomUpConfig()
    check_family_sections(cfg, "topdown")


def test_mmpose_train_command_line() -> None:
    """``tools/train.py CONFIG --work-dir D --amp --cfg-options k=v`` as in MMPose."""
    config = "configs/topdown/overfit_coco_sample.yaml"
    args = parse(
        ["train", config, "--work-dir", "/tmp/td", "--amp",
         "--cfg-options", "training.batch_size=5", "model.params.head=simcc"]
    )  # fmt: skip
    cfg = train_config(args)
    assert args.config == config
    assert cfg.model.name == "topdown" and cfg.model.params["head"] == "simcc"
    assert cfg.work_dir == "/tmp/td"
    assert cfg.training.amp is True
    assert cfg.training.batch_size == 5
    assert parse(["train", config, "--resume"]).resume == "auto"


def test_two_configs_are_refused() -> None:
    from posekit.errors import ConfigError

    args = parse(["train", "a.yaml", "--config", "b.yaml"])
    with pytest.raises(ConfigError, match="two configs given"):
        train_config(args)


@pytest.mark.parametrize(
    "words",
    [["--resume", "training.max_epochs=2"], ["training.max_epochs=2", "--resume"],
     ["--resume", "auto", "training.max_epochs=2"]],
)  # fmt: skip
def test_resume_parses_the_same_whatever_the_order(words: list[str], tmp_path: Path) -> None:
    from posekit.config import load_config
    from posekit.engine.state import save_checkpoint

    stored = load_config(None, ["training.batch_size=3"])
    save_checkpoint(tmp_path / "run" / "checkpoints" / "last.pth", {"config": stored.to_dict()})
    cfg = train_config(parse(["train", "--work-dir", str(tmp_path / "run"), *words]))
    assert cfg.training.resume == "auto" and cfg.training.max_epochs == 2
    assert cfg.training.batch_size == 3
