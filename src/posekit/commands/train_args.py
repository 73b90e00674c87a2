"""``posekit train`` arguments: the original Lightweight OpenPose train.py flags, the training
guide's flags and MMPose-style options, each mapped to one config key.

Precedence: the config file (``--config``, else a built-in one), then these flags, then the
``key.path=value`` words and ``--cfg-options``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from posekit.bottomup.original_checkpoints import ORIGINAL_CONFIG
from posekit.config import (
    CONFIGS_DIR,
    PosekitConfig,
    config_from_mapping,
    load_config,
    load_merged_mapping,
    without_other_families,
)
from posekit.tasks import family_of

DEFAULT_CONFIG = CONFIGS_DIR / "lw_openpose" / "synthetic.yaml"

# flag (argparse dest) -> (config key, type, help)
VALUE_FLAGS: dict[str, tuple[str, type, str]] = {
    "prepared_train_labels": ("data.train.labels", str, "training labels (COCO JSON or prepared)"),
    "train_images_folder": ("data.train.images", str, "training images folder"),
    "num_refinement_stages": ("model.params.num_refinement_stages", int, "refinement stages"),
    "base_lr": ("training.optimizer.lr", float, "base learning rate"),
    "batch_size": ("training.batch_size", int, "images per batch"),
    "batches_per_iter": ("training.batches_per_iter", int, "batches per optimizer step"),
    "num_workers": ("data.num_workers", int, "data loader worker processes"),
    "checkpoint_path": ("training.checkpoint_path", str, "checkpoint to continue or load"),
    "experiment_name": ("experiment_name", str, "run name (run folder runs/<name>)"),
    "log_after": ("training.log_after", int, "log every N iterations"),
    "val_labels": ("data.val.labels", str, "validation labels (COCO JSON)"),
    "val_images_folder": ("data.val.images", str, "validation images folder"),
    "val_output_name": ("training.val_output_name", str, "file name of the results JSON"),
    "checkpoint_after": ("training.checkpoint_after", int, "checkpoint_iter_N.pth every N"),
    "val_after": ("training.val_after", int, "evaluate every N iterations"),
    "max_iter": ("training.max_iter", int, "stop after N optimizer steps"),
    "max_epochs": ("training.max_epochs", int, "epochs"),
    "work_dir": ("work_dir", str, "run folder (default runs/<experiment-name>)"),
    "subset_size": ("training.subset_size", int, "train on a fixed random subset of N"),
    "eval_interval": ("training.eval_interval", int, "evaluate every N epochs (0 = never)"),
    "device": ("device", str, "cpu, cuda, mps or auto"),
    "seed": ("seed", int, "random seed"),
}
SWITCH_FLAGS: dict[str, tuple[str, str]] = {
    "from_mobilenet": ("training.from_mobilenet", "--checkpoint-path holds ImageNet MobileNet"),
    "weights_only": ("training.weights_only", "load only weights from --checkpoint-path"),
    "amp": ("training.amp", "mixed precision (bf16 on CPU, fp16 on CUDA)"),
    "overfit": ("training.overfit", "first samples only, no augmentation, no shuffling"),
    "compile": ("training.compile", "torch.compile the training forward (slow first steps)"),
    "exist_ok": ("training.exist_ok", "start over in a run folder holding a run (moved aside)"),
}


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="config YAML (default: the built-in synthetic one)")
    for dest, (key, kind, text) in VALUE_FLAGS.items():
        flag = "--" + dest.replace("_", "-")
        parser.add_argument(flag, dest=dest, type=kind, default=None, help=f"{text} [{key}]")
    parser.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        help="continue a run: a checkpoint path, or 'auto' (the latest in the run folder; "
        "also when given alone) [training.resume]",
    )
    for dest, (key, text) in SWITCH_FLAGS.items():
        flag = "--" + dest.replace("_", "-")
        parser.add_argument(flag, dest=dest, action="store_true", help=f"{text} [{key}]")
    parser.add_argument(
        "overrides", nargs="*", default=[], metavar="[CONFIG] KEY=VALUE",
        help="a config YAML first (as MMPose's tools/train.py CONFIG; or --config), then "
        "key.path=value overrides, e.g. training.optimizer.lr=1e-3",
    )  # fmt: skip
    parser.add_argument(
        "--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
        help="more key.path=value overrides (MMPose's flag)",
    )  # fmt: skip


def flag_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The config keys set by the flags that were given (pure)."""
    settings: dict[str, Any] = {}
    for dest, (key, _, _) in VALUE_FLAGS.items():
        value = getattr(args, dest, None)
        if value is not None:
            settings[key] = value
    for dest, (key, _) in SWITCH_FLAGS.items():
        if getattr(args, dest, False):
            settings[key] = True
    if getattr(args, "resume", None) is not None:
        settings["training.resume"] = args.resume
    return settings


def take_positional_config(args: argparse.Namespace) -> None:
    """MMPose's ``tools/train.py CONFIG ...``: a first positional word without ``=`` that
    names a YAML file is the config (as ``--config``)."""
    words = list(args.overrides)
    if words and "=" not in words[0] and Path(words[0]).suffix in (".yaml", ".yml"):
        if args.config and args.config != words[0]:
            from posekit.errors import ConfigError

            raise ConfigError(
                f"two configs given ({words[0]} and --config {args.config}); give one"
            )
        args.config, args.overrides = words[0], words[1:]


def base_config_path(args: argparse.Namespace) -> Path:
    """``--config``; else the original recipe when the original's data flags are used, else
    the built-in synthetic one."""
    if args.config:
        return Path(args.config)
    if args.prepared_train_labels is not None:
        return ORIGINAL_CONFIG
    return DEFAULT_CONFIG


def train_config(args: argparse.Namespace) -> PosekitConfig:
    """The run's config. Resuming without ``--config`` starts from the config stored in the
    checkpoint (flags and overrides still apply on top), so a run continues as it was."""
    take_positional_config(args)
    resume = getattr(args, "resume", None)
    if resume is not None and "=" in resume and not Path(resume).exists():
        # `--resume key=value`: argparse gave the override to --resume's optional path
        args.resume, args.overrides = "auto", [resume, *args.overrides]
    overrides = [*args.overrides, *args.cfg_options]
    settings = flag_settings(args)
    base_path = base_config_path(args)
    if args.config:
        return load_config(base_path, overrides=overrides, settings=settings)
    # a base the user did not write (the built-in config, or the one stored with the run
    # being resumed): only the section of the model's family applies
    base, source = load_merged_mapping(base_path), str(base_path)
    cfg = config_from_mapping(base, settings, overrides, source, announce=False)
    if cfg.training.resume is not None:
        from posekit.commands.train import resume_path
        from posekit.engine.state import load_checkpoint

        path = resume_path(cfg)
        assert path is not None
        stored = load_checkpoint(path).get("config")
        if stored is not None:
            base, source = stored, f"{path} (stored config) + flags"
            cfg = config_from_mapping(base, settings, overrides, source, announce=False)
    family = family_of(cfg.model.name)
    mapping = without_other_families(base, family)
    return config_from_mapping(mapping, settings, overrides, source)
