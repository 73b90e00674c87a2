"""Typed configuration: YAML files with ``base:`` inheritance, overrides, validation.

A config file may name one or more ``base:`` files (paths relative to itself). Bases are merged
in order, then the file itself on top: mappings merge key by key, everything else (lists
included) replaces. Overrides (``key.path=value`` words, ``--cfg-options k=v``) apply last.
The merged mapping is validated into :class:`PosekitConfig`; unknown keys and wrong types fail
with the dotted key path and the closest valid key.
"""

from __future__ import annotations

import copy
import math
import os
import re
import reprlib
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from posekit.atomic import atomic_write_text
from posekit.errors import ConfigError, did_you_mean
from posekit.schema import YAML_ERRORS

# the configs shipped in the package (configs/<family>/*.yaml, configs/schemas/*.yaml)
CONFIGS_DIR = Path(__file__).resolve().parent / "configs"


def _over_default(model: type[BaseModel], name: str, value: Any) -> Any:
    """A partial mapping for a nested section, laid over that field's default values."""
    if not isinstance(value, dict):
        return value
    default = model.model_fields[name].default
    return {**default.model_dump(), **value} if isinstance(default, BaseModel) else value


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)


class DataSource(StrictModel):
    """A COCO keypoint file and its images. ``schema`` names the file's own keypoint set when it
    differs from ``data.schema``; its points are then mapped onto the run's set by
    ``keypoint_mapping`` ([source index, run index] pairs, MMPose's KeypointConverter), or by
    keypoint name when no mapping is given."""

    labels: str | None = None
    images: str | None = None
    keypoint_schema: str | None = Field(None, alias="schema")
    keypoints_field: str | None = None  # default: data.keypoints_field
    keypoint_mapping: list[tuple[int, int]] | None = None
    head_boxes: str | None = None  # MPII: mpii_gt_val.mat for the official PCKh head sizes


class SplitData(DataSource):
    # top-down evaluation only: person detections (COCO results JSON) instead of the GT boxes
    detections: str | None = None


class TrainSet(DataSource):
    """One of several training sets combined in a run (``data.train_sets``)."""

    # each epoch draws sample_ratio x this set's size from it (MMPose's sample_ratio_factor)
    sample_ratio: float = Field(1.0, gt=0)


class SyntheticData(StrictModel):
    """The built-in synthetic data set, generated on first use when no labels are given."""

    dir: str = "data/synthetic"
    train_images: int = Field(2000, ge=1)
    val_images: int = Field(200, ge=0)
    size: str = "256x256"
    seed: int = 0


class AugmentConfig(StrictModel):
    """Bottom-up training augmentation (defaults of the original OpenPose recipe)."""

    scale_min: float = Field(0.5, gt=0)
    scale_max: float = Field(1.1, gt=0)
    target_dist: float = Field(0.6, gt=0)
    max_rotate: float = Field(40.0, ge=0)
    center_perturb: float = Field(40.0, ge=0)
    flip_prob: float = Field(0.5, ge=0, le=1)
    color_jitter: float = Field(0.2, ge=0)
    # centre crops on the whole image (scaled to fit) instead of on a random person
    whole_image: bool = False


class DataConfig(StrictModel):
    keypoint_schema: str = Field("coco17", alias="schema")
    input_size: int = Field(368, ge=32)
    train: SplitData = SplitData()
    # several training sets in one run (replaces data.train), each with its sampling ratio
    train_sets: list[TrainSet] = []
    val: SplitData = SplitData()
    synthetic: SyntheticData = SyntheticData()
    category_ids: list[int] | None = None
    keypoints_field: str = "keypoints"
    num_workers: int = Field(2, ge=0)
    # an unreadable training image mid-epoch: stop naming the file, or skip it and count
    bad_images: Literal["stop", "skip"] = "stop"


class ModelConfig(StrictModel):
    name: str = "lw_openpose"
    params: dict[str, Any] = {}


class ParamRule(StrictModel):
    """Learning-rate and weight-decay multipliers of the parameters under one name prefix;
    ``lr_mult: 0`` freezes them (no gradient, BatchNorm statistics kept)."""

    lr_mult: float = Field(1.0, ge=0)
    decay_mult: float = Field(1.0, ge=0)


class OptimizerConfig(StrictModel):
    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(4e-5, gt=0)
    weight_decay: float = Field(5e-4, ge=0)
    momentum: float = Field(0.9, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    # Lightweight OpenPose's multipliers: refinement stages 4x, biases 2x / 8x
    original_lr_mults: bool = True
    # MMPose's paramwise_cfg.custom_keys, by name prefix (the longest matching prefix wins),
    # e.g. {"backbone.": {lr_mult: 0}} freezes the backbone, {"backbone.": {lr_mult: 0.1}} slows it
    custom_keys: dict[str, ParamRule] = {}


class ScheduleConfig(StrictModel):
    """Learning-rate schedule, stepped per optimizer step; milestones are in epochs."""

    name: Literal["step", "cosine", "flat_cosine", "constant"] = "step"
    milestones: list[int] = [100, 200, 260]
    gamma: float = Field(0.333, gt=0)
    warmup_iters: int = Field(0, ge=0)
    warmup_start: float = Field(0.001, ge=0, le=1)
    flat_fraction: float = Field(0.5, ge=0, le=1)
    min_factor: float = Field(0.01, ge=0, le=1)


class TargetsConfig(StrictModel):
    sigma: float = Field(7.0, gt=0)
    paf_width: float = Field(1.0, gt=0)


class LossConfig(StrictModel):
    heatmap_weight: float = Field(1.0, ge=0)
    paf_weight: float = Field(1.0, ge=0)
    # extra weight where the target is non-zero: pixel weight 1 + foreground_weight * |target|
    foreground_weight: float = Field(0.0, ge=0)


class InferenceConfig(StrictModel):
    """Bottom-up inference: input size, scales, flip and decoding thresholds."""

    input_height: int = Field(368, ge=32)
    # a fixed square input holding the whole image (letterboxed), instead of input_height
    letterbox: int | None = Field(None, ge=32)
    flip: bool = False
    scales: list[float] = [1.0]
    heatmap_threshold: float = Field(0.1, ge=0)
    min_keypoints: int = Field(3, ge=1)


class SharedInferenceConfig(StrictModel):
    """Inference settings every family reads."""

    bf16: bool = False  # bf16 autocast for the network on CPU (about 2.5x faster here)


class BottomUpConfig(StrictModel):
    """Bottom-up family (Lightweight OpenPose, OpenPose-VGG19): augmentation, targets, loss
    and inference."""

    augment: AugmentConfig = AugmentConfig()
    # the weak augmentation of stage 2 (after training.stop_epoch)
    augment_stage2: AugmentConfig = AugmentConfig(
        scale_min=0.8, scale_max=1.1, max_rotate=10.0, center_perturb=20.0, color_jitter=0.0
    )
    targets: TargetsConfig = TargetsConfig()
    loss: LossConfig = LossConfig()
    inference: InferenceConfig = InferenceConfig()

    @field_validator("augment_stage2", mode="before")
    @classmethod
    def _stage2_over_its_defaults(cls, value: Any) -> Any:
        """Keys given for stage 2 change the stage-2 defaults, not stage 1's."""
        return _over_default(cls, "augment_stage2", value)


class TopDownAugmentConfig(StrictModel):
    """Top-down training augmentation (MMPose's RandomFlip, RandomHalfBody, RandomBBoxTransform)."""

    flip_prob: float = Field(0.5, ge=0, le=1)
    half_body_prob: float = Field(0.3, ge=0, le=1)
    half_body_min_keypoints: int = Field(9, ge=0)
    shift_factor: float = Field(0.16, ge=0)
    shift_prob: float = Field(0.3, ge=0, le=1)
    scale_min: float = Field(0.75, gt=0)
    scale_max: float = Field(1.25, gt=0)
    rotate_max: float = Field(40.0, ge=0)
    rotate_prob: float = Field(0.6, ge=0, le=1)


class TopDownConfig(StrictModel):
    """Top-down family: person boxes -> crops -> heatmaps or SimCC -> keypoints."""

    bbox_padding: float = Field(1.25, ge=1)
    heatmap_sigma: float = Field(2.0, gt=0)  # heatmap pixels
    simcc_sigma: tuple[float, float] = (4.9, 5.66)  # SimCC bins (x, y)
    simcc_beta: float = Field(10.0, gt=0)
    augment: TopDownAugmentConfig = TopDownAugmentConfig()
    augment_stage2: TopDownAugmentConfig = TopDownAugmentConfig(
        half_body_prob=0.0, shift_prob=0.0, scale_min=0.9, scale_max=1.1, rotate_prob=0.0
    )
    flip_test: bool = True

    @field_validator("augment_stage2", mode="before")
    @classmethod
    def _stage2_over_its_defaults(cls, value: Any) -> Any:
        return _over_default(cls, "augment_stage2", value)

    box_score_threshold: float = Field(0.0, ge=0)  # detections below are dropped
    keypoint_score_threshold: float = Field(0.2, ge=0)  # rescoring uses keypoints above it
    oks_nms_threshold: float = Field(0.9, gt=0)  # 1 or more turns OKS-NMS off
    eval_batch_size: int = Field(32, ge=1)


class DetectorAugmentConfig(StrictModel):
    """Detector augmentation (probabilities per sample). Stage 1's defaults are the strong
    DEIM/RT-DETR set; stage 2 (after ``training.stop_epoch``) keeps only flip."""

    mosaic_prob: float = Field(0.5, ge=0, le=1)
    mixup_prob: float = Field(0.2, ge=0, le=1)
    copy_paste_prob: float = Field(0.2, ge=0, le=1)
    photometric_prob: float = Field(0.5, ge=0, le=1)
    zoom_out_prob: float = Field(0.3, ge=0, le=1)
    zoom_out_max: float = Field(2.5, ge=1)
    iou_crop_prob: float = Field(0.5, ge=0, le=1)
    flip_prob: float = Field(0.5, ge=0, le=1)


class DetectorLossConfig(StrictModel):
    classification: Literal["varifocal", "focal"] = "varifocal"
    class_weight: float = Field(1.0, ge=0)
    l1_weight: float = Field(5.0, ge=0)
    giou_weight: float = Field(2.0, ge=0)
    # the Hungarian matcher's costs (DETR / RT-DETR)
    match_class: float = Field(2.0, ge=0)
    match_l1: float = Field(5.0, ge=0)
    match_giou: float = Field(2.0, ge=0)


class DetectorConfig(StrictModel):
    """Detector family (RT-DETR-style): classes from ``data.category_ids`` (default: person)."""

    augment: DetectorAugmentConfig = DetectorAugmentConfig()
    augment_stage2: DetectorAugmentConfig = DetectorAugmentConfig(
        mosaic_prob=0.0, mixup_prob=0.0, copy_paste_prob=0.0, photometric_prob=0.0,
        zoom_out_prob=0.0, iou_crop_prob=0.0,
    )  # fmt: skip
    loss: DetectorLossConfig = DetectorLossConfig()
    # the classes' names, in data.category_ids order (training fills both from the data)
    category_names: list[str] | None = None
    score_threshold: float = Field(0.0, ge=0, le=1)  # detections below are not written
    max_detections: int = Field(100, ge=1)  # per image
    eval_batch_size: int = Field(16, ge=1)

    @field_validator("augment_stage2", mode="before")
    @classmethod
    def _stage2_over_its_defaults(cls, value: Any) -> Any:
        return _over_default(cls, "augment_stage2", value)


class EmaConfig(StrictModel):
    """EMA of weights and buffers; validation, ``best`` and exports use the average."""

    enabled: bool = False
    decay: float = Field(0.9999, gt=0, lt=1)
    warmup: int = Field(2000, ge=0)
    restart_decay: float | None = Field(None, gt=0, lt=1)  # stage 2 (DEIMv2); None = decay


class TrainingConfig(StrictModel):
    batch_size: int = Field(8, ge=1)
    max_epochs: int = Field(10, ge=1)
    batches_per_iter: int = Field(1, ge=1)
    amp: bool = False
    resume: str | None = None
    subset_size: int | None = Field(None, ge=1)
    subset_seed: int = 0
    overfit: bool = False
    # each epoch passes over the training samples this many times (MMPose's RepeatDataset):
    # fewer, longer epochs for tiny data sets, so evaluation and checkpoints come less often
    repeat: int = Field(1, ge=1)
    resize_schedule: list[tuple[int, int]] | None = None
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    max_iter: int | None = Field(None, ge=1)
    log_after: int = Field(100, ge=1)
    checkpoint_after: int = Field(5000, ge=0)
    val_after: int = Field(5000, ge=0)
    eval_interval: int = Field(1, ge=0)
    # a plain file name inside the run folder (no folders, no "..")
    val_output_name: str = Field("detections.json", pattern=r"^[^/\\]*[^/\\.][^/\\]*$")
    checkpoint_path: str | None = None
    weights_only: bool = False
    from_mobilenet: bool = False
    grad_clip: float | None = Field(None, gt=0)
    load_from: str | None = None  # weights to start a new run from (MMPose's load_from)
    ema: EmaConfig = EmaConfig()
    checkpoint_interval: int = Field(0, ge=0)  # checkpoint_epoch_N.pth every N epochs
    keep_last: int | None = Field(None, ge=1)  # keep only the newest K epoch/iter files
    patience: int | None = Field(None, ge=1)  # early stopping: evaluations without gain
    max_nonfinite: int = Field(5, ge=1)  # non-finite steps in a row before stopping
    stop_epoch: int | None = Field(None, ge=1)  # two-stage: first epoch (1-based) of stage 2
    multiscale: list[int] | None = None  # per-batch input sizes, e.g. [224, 256, 288]
    compile: bool = False  # torch.compile the training forward (first steps pay the compile)
    # torchrun: BatchNorm statistics over the global batch (SyncBatchNorm; posekit's own on CPU)
    sync_bn: bool = False
    # a new run into a folder holding a run: move the old one aside (never deleted)
    exist_ok: bool = False


class PosekitConfig(StrictModel):
    experiment_name: str = "default"
    work_dir: str | None = None
    seed: int = 0
    device: str = "auto"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    inference: SharedInferenceConfig = SharedInferenceConfig()
    bottomup: BottomUpConfig = BottomUpConfig()
    topdown: TopDownConfig = TopDownConfig()
    detector: DetectorConfig = DetectorConfig()
    training: TrainingConfig = TrainingConfig()

    def resolved_work_dir(self) -> Path:
        return Path(self.work_dir) if self.work_dir else Path("runs") / self.experiment_name

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


# ---------------------------------------------------------------------------------------------
# Loading and merging


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """Merge ``top`` over ``base``: mappings merge recursively, anything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    try:
        found = path.is_file()
    except OSError:  # e.g. a name too long for the file system
        found = False
    if not found:
        raise ConfigError(f"config file {path} not found; check the path")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        reason = type(exc).__name__
        raise ConfigError(f"{path}: cannot be read ({reason}); check the file") from None
    except YAML_ERRORS as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        reason = getattr(exc, "problem", None) or _yaml_reason(exc)
        raise ConfigError(f"{path}: {reason}{line}; fix the YAML syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, not a list or value")
    return data


def _yaml_reason(exc: BaseException) -> str:
    """The first line of a YAML error that is not a YAMLError (a bad date, ``!!int x``)."""
    lines = str(exc).strip().splitlines()
    return f"{lines[0]} ({type(exc).__name__})" if lines else type(exc).__name__


MAX_CONFIG_VALUES = 100_000


def check_plain_values(data: Any, source: str) -> None:
    """Refuse what no config holds: YAML aliases that expand to millions of values (or to a
    cycle), and ``!!binary`` bytes, which cannot be written back as YAML or JSON."""
    stack, count = [data], 0
    while stack:
        item = stack.pop()
        count += 1
        if count > MAX_CONFIG_VALUES:
            raise ConfigError(
                f"{source}: over {MAX_CONFIG_VALUES} values once YAML aliases are expanded; "
                "write the config out plainly"
            )
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set)):
            stack.extend(item)
        elif isinstance(item, bytes):
            raise ConfigError(f"{source}: binary (!!binary) values are not supported; use text")


def load_merged_mapping(
    path: str | Path, _chain: tuple[Path, ...] = (), moved: list[str] | None = None
) -> dict[str, Any]:
    """Read a config YAML and its ``base:`` files (recursively) into one mapping. Each
    file's keys from before the family sections are moved to their new place before the
    files merge (so a file's new key overrides its base's old one); the old keys found are
    appended to ``moved``."""
    file_path = Path(os.path.abspath(path))
    if file_path in _chain:
        cycle = " -> ".join(str(p) for p in (*_chain, file_path))
        raise ConfigError(f"{file_path}: 'base' inheritance forms a cycle ({cycle}); remove one")
    data = read_yaml_mapping(file_path)
    bases = data.pop("base", None) or []
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(
        isinstance(b, str) and b.isprintable() for b in bases
    ):
        raise ConfigError(f"{file_path}: 'base' must be a path or a list of paths (printable text)")
    data, found = move_old_keys(data, str(file_path))
    if moved is not None:
        moved.extend(key for key in found if key not in moved)
    merged: dict[str, Any] = {}
    for base in bases:
        base_path = Path(os.path.abspath(file_path.parent / base))
        merged = deep_merge(merged, load_merged_mapping(base_path, (*_chain, file_path), moved))
    return deep_merge(merged, data)


_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")


def expand_env(value: Any) -> Any:
    """``${NAME}`` / ``${NAME:default}`` in strings, recursively (e.g. sample data folders)."""
    if isinstance(value, dict):
        return {k: expand_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v) for v in value]
    if not isinstance(value, str) or "${" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = os.environ.get(name) or default
        if found is None:
            raise ConfigError(f"{value!r}: environment variable {name} is not set; set it")
        return found

    return _ENV_PATTERN.sub(replace, value)


# ---------------------------------------------------------------------------------------------
# Overrides


def parse_override_value(text: str) -> Any:
    """A YAML scalar or flow value; numbers such as ``1e-4`` (a string to YAML 1.1) parse too."""
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except YAML_ERRORS:
        return text
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return number if math.isfinite(number) or value.lower() in ("inf", "nan") else value
    return value


def parse_override(word: str) -> tuple[list[str], Any]:
    if "=" not in word:
        raise ConfigError(
            f"override {word!r} must look like key.path=value (e.g. training.amp=true)"
        )
    key, _, raw = word.partition("=")
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {word!r}: {key!r} is not a dotted key path")
    return parts, parse_override_value(raw)


def set_dotted(data: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """A copy of ``data`` with ``value`` set at the dotted ``key`` (mappings created as needed)."""
    result = copy.deepcopy(data)
    parts = key.split(".")
    node = result
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            where = ".".join(parts[: depth + 1])
            raise ConfigError(f"override {key!r}: {where!r} holds a value, not a mapping")
        node = child
    node[parts[-1]] = value
    return result


def apply_overrides(data: dict[str, Any], words: list[str]) -> dict[str, Any]:
    """``data`` with the ``key.path=value`` words set in order (a key from before the family
    sections lands at its new place and wins over what was there)."""
    result = data
    for word in words:
        parts, value = parse_override(word)
        result, _ = set_layer(result, ".".join(parts), value, "override")
    return result


def set_layer(
    data: dict[str, Any], key: str, value: Any, source: str
) -> tuple[dict[str, Any], list[str]]:
    """``data`` with one later layer's ``key`` set (a setting or an override): an old key
    lands at its new place and wins over what was there; also the old keys it used."""
    return move_old_keys(set_dotted(data, key, value), source, old_wins=True)


# ---------------------------------------------------------------------------------------------
# Family sections and the keys that moved into them

# the section each model family owns (its name is the family's)
FAMILY_SECTIONS = ("bottomup", "topdown", "detector")

# keys of configs written before the family sections (issue 16) -> where they live now
MOVED_KEYS: dict[str, str] = {
    "targets": "bottomup.targets",
    "loss": "bottomup.loss",
    "data.augment": "bottomup.augment",
    "data.augment_stage2": "bottomup.augment_stage2",
    **{
        f"inference.{key}": f"bottomup.inference.{key}"
        for key in ("input_height", "letterbox", "flip", "scales", "heatmap_threshold",
                    "min_keypoints")
    },
}  # fmt: skip


def _pop_dotted(data: dict[str, Any], key: str) -> tuple[bool, Any]:
    """(found, value) of the dotted ``key``, removed from ``data`` (emptied parents too)."""
    parts = key.split(".")
    node: Any = data
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            return False, None
    if parts[-1] not in node:
        return False, None
    value = node.pop(parts[-1])
    if len(parts) > 1 and not node:
        parent = data
        for part in parts[:-2]:
            parent = parent[part]
        parent.pop(parts[-2])
    return True, value


def _leaves(value: Any, prefix: str) -> list[tuple[str, Any]]:
    if isinstance(value, dict) and value:
        return [leaf for k, v in value.items() for leaf in _leaves(v, f"{prefix}.{k}")]
    return [(prefix, value)]


def _get_dotted(data: dict[str, Any], key: str) -> tuple[bool, Any]:
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def move_old_keys(
    data: dict[str, Any], source: str, old_wins: bool = False
) -> tuple[dict[str, Any], list[str]]:
    """``data`` with the keys of :data:`MOVED_KEYS` at their new places, and the old keys
    found. A value given under both the old and the new key is refused in one line, unless
    ``old_wins`` (the old key was set after the new one: a later override)."""
    result = copy.deepcopy(data)
    found = []
    for old, new in MOVED_KEYS.items():
        present, value = _pop_dotted(result, old)
        if not present:
            continue
        found.append(old)
        for leaf, leaf_value in _leaves(value, new):
            if _get_dotted(result, leaf)[0] and not old_wins:
                old_leaf = old + leaf[len(new) :]
                raise ConfigError(
                    f"{source}: {old_leaf!r} and {leaf!r} are both given; {old_leaf!r} is the "
                    f"old name of {leaf!r}: keep only {leaf!r}"
                )
            result = set_dotted(result, leaf, leaf_value)
    return result, found


def moved_keys_line(source: str, old_keys: list[str]) -> str:
    """The one line naming the new place of each old key a config used."""
    moves = ", ".join(f"{old!r} is now {MOVED_KEYS[old]!r}" for old in old_keys)
    return f"{source}: {moves} (the old keys still work; `posekit config show` prints the new form)"


def check_family_sections(cfg: PosekitConfig, family: str) -> None:
    """Refuse, in one line, settings of another family's section than ``family``'s (the
    family of ``model.name``): they would be ignored. Sections left at their defaults pass."""
    for section in FAMILY_SECTIONS:
        if section == family:
            continue
        given = getattr(cfg, section)
        default = type(given)().model_dump(mode="json", by_alias=True)
        changed = [
            key
            for key, value in _leaves(given.model_dump(mode="json", by_alias=True), section)
            if _get_dotted({section: default}, key) != (True, value)
        ]
        if changed:
            moved_from = {new: old for old, new in MOVED_KEYS.items()}
            shown = [
                next(
                    (f"{key} (formerly {moved_from[p]}{key[len(p):]})" for p in moved_from
                     if key == p or key.startswith(p + ".")),
                    key,
                )
                for key in changed
            ]  # fmt: skip
            raise ConfigError(
                f"{', '.join(shown)}: setting(s) of the {section} family, but model.name "
                f"{cfg.model.name!r} is a {family} model, which ignores them; remove them"
            )


# ---------------------------------------------------------------------------------------------
# What may change when a run is resumed

# settings a resumed run takes from the command line (the schedule is rebuilt from them, the
# learning rate applied to the restored optimizer); any other difference is refused
RESUME_CHANGEABLE = (
    "device", "inference.",
    "data.val.", "data.num_workers", "data.bad_images", "data.synthetic.",
    "training.max_epochs", "training.max_iter", "training.eval_interval", "training.patience",
    "training.log_after", "training.checkpoint_after", "training.val_after",
    "training.checkpoint_interval", "training.keep_last", "training.val_output_name",
    "training.grad_clip", "training.max_nonfinite", "training.compile",
    "training.checkpoint_path", "training.weights_only", "training.from_mobilenet",
    "training.load_from", "training.optimizer.lr", "training.schedule.",
    "model.params.backbone_weights",
    # what training draws or aims at from now on (exact continuation needs them unchanged)
    "training.resize_schedule", "training.multiscale", "bottomup.augment", "bottomup.targets.",
    "bottomup.loss.", "topdown.augment", "topdown.heatmap_sigma", "topdown.simcc_sigma",
    "topdown.simcc_beta", "detector.augment", "detector.loss.",
    "bottomup.inference.", "topdown.flip_test", "topdown.box_score_threshold",
    "topdown.keypoint_score_threshold", "topdown.oks_nms_threshold", "topdown.eval_batch_size",
    "detector.score_threshold", "detector.max_detections", "detector.eval_batch_size",
)  # fmt: skip
# how the run is found, not how it trains: neither applied nor refused when resuming
RUN_LOCATION = ("experiment_name", "work_dir", "training.resume", "training.exist_ok")
# filled in from the data by training (a detector's classes): unset on the command line
RESOLVED_BY_TRAINING = ("data.category_ids", "detector.category_names")
PATH_KEYS = ("labels", "images", "head_boxes", "detections")


def _comparable(cfg: PosekitConfig, family: str) -> dict[str, Any]:
    """``cfg``'s leaves without other families' sections, data paths made absolute."""
    data = cfg.to_dict()
    leaves = {}
    for key, value in _leaves(data, ""):
        key = key.lstrip(".")
        section = key.split(".")[0]
        if section in FAMILY_SECTIONS and section != family:
            continue
        if isinstance(value, str) and key.split(".")[-1] in PATH_KEYS and key.startswith("data."):
            value = os.path.abspath(value)
        leaves[key] = value
    return leaves


def resume_changes(
    stored: PosekitConfig, cfg: PosekitConfig, family: str
) -> tuple[list[str], list[str]]:
    """The settings ``cfg`` changes from the run being resumed, as ``key (stored -> given)``:
    (those a resumed run applies, those that cannot change mid-run)."""
    before, after = _comparable(stored, family), _comparable(cfg, family)
    applied, fixed = [], []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old == new or key in RUN_LOCATION:
            continue
        if key.startswith(RESOLVED_BY_TRAINING) and new is None:
            continue
        change = f"{key} ({reprlib.repr(old)} -> {reprlib.repr(new)})"
        (applied if key.startswith(RESUME_CHANGEABLE) else fixed).append(change)
    return applied, fixed


# ---------------------------------------------------------------------------------------------
# Validation with readable errors


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Names (aliases where set) of the fields of the sub-model found at ``loc``; the keys
    of a mapping of sub-models (``custom_keys``) and list positions are stepped over."""
    current: Any = model
    for part in loc:
        inner = _unwrap_container(current)
        if inner is not current and typing.get_origin(current) in (dict, list, tuple):
            current = inner  # ``part`` is a mapping key or a list position
            continue
        current = inner
        fields = getattr(current, "model_fields", None)
        if not fields:
            return []
        match = next(
            (info for name, info in fields.items() if part in (name, info.alias)),
            None,
        )
        if match is None:
            return []
        current = match.annotation
    current = _unwrap_container(current)
    fields = getattr(current, "model_fields", None) or {}
    return [info.alias or name for name, info in fields.items()]


def _unwrap_container(annotation: Any) -> Any:
    """The model inside ``dict[str, Model]`` / ``list[Model]`` / ``Model | None``."""
    for _ in range(3):
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
        if origin in (dict, list, tuple) and args:
            annotation = args[-1]
        elif origin in (typing.Union, types.UnionType):
            models = [a for a in args if getattr(a, "model_fields", None)]
            annotation = models[0] if models else annotation
            break
        else:
            break
    return annotation


def format_validation_error(exc: ValidationError, source: str) -> str:
    messages = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        key = ".".join(str(p) for p in loc)
        if error["type"] == "extra_forbidden":
            siblings = _fields_at(PosekitConfig, loc[:-1])
            prefix = "".join(f"{p}." for p in loc[:-1])
            hint = did_you_mean(str(loc[-1]), siblings).replace("'", f"'{prefix}", 1)
            parent = ".".join(str(p) for p in loc[:-1]) or "the top level"
            messages.append(f"unknown key {key!r}{hint}; valid keys under {parent}: {siblings}")
        else:
            given = error.get("input")
            shown = reprlib.repr(given) if not isinstance(given, dict) else "a mapping"
            messages.append(f"key {key!r}: {error['msg'].lower()} (got {shown})")
    return f"{source}: " + "; ".join(messages)


def validate_config(data: dict[str, Any], source: str = "config") -> PosekitConfig:
    try:
        return PosekitConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def config_from_mapping(
    data: dict[str, Any],
    settings: dict[str, Any] | None = None,
    overrides: list[str] | None = None,
    source: str = "config",
    announce: bool = True,
    moved: list[str] | None = None,
) -> PosekitConfig:
    """``data`` (a merged config mapping), then typed ``settings`` (dotted keys, from CLI
    flags), then ``key.path=value`` overrides, ``${VAR}`` expanded; validated.

    Keys from before the family sections move to their new place layer by layer (the
    mapping, then each setting and override), so a later layer's old key overrides an
    earlier layer's new one; one line on stderr names them (with ``moved``, those the files
    had), unless ``announce`` is false (a config stored with weights)."""
    data, old_keys = move_old_keys(data, source)
    old_keys = [*(moved or []), *(key for key in old_keys if key not in (moved or []))]
    layers = [*(settings or {}).items(), *(parse_override(word) for word in overrides or [])]
    for key, value in layers:
        dotted = key if isinstance(key, str) else ".".join(key)
        data, found = set_layer(data, dotted, value, source)
        old_keys += [key for key in found if key not in old_keys]
    if overrides:
        source += " + overrides"
    check_plain_values(data, source)
    if old_keys and announce:
        print(moved_keys_line(source, old_keys), file=sys.stderr)
    return validate_config(expand_env(data), source)


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    settings: dict[str, Any] | None = None,
) -> PosekitConfig:
    """Load ``path`` (or the defaults when ``None``), then :func:`config_from_mapping`."""
    moved: list[str] = []
    data = load_merged_mapping(path, moved=moved) if path is not None else {}
    source = str(path) if path is not None else "config"
    return config_from_mapping(data, settings, overrides, source, moved=moved)


def without_other_families(data: dict[str, Any], family: str) -> dict[str, Any]:
    """A config mapping the user did not write (the built-in default, a config stored with
    weights) without the sections of the families other than ``family``: those settings
    were never the user's, so they are dropped rather than refused."""
    moved, _ = move_old_keys(data, "config", old_wins=True)
    return {key: value for key, value in moved.items()
            if key not in FAMILY_SECTIONS or key == family}  # fmt: skip


def with_absolute_paths(cfg: PosekitConfig) -> PosekitConfig:
    """``cfg`` with its data files, schema file, ImageNet weights file and run folder made
    absolute (against the current folder), so a saved config works from anywhere."""

    def absolute(value: str | None) -> str | None:
        return os.path.abspath(value) if value else value

    def schema_file(schema: str | None) -> str | None:
        """A schema given as a YAML file, absolute; a built-in name as it is."""
        is_file = schema and Path(schema).suffix in (".yaml", ".yml") and Path(schema).is_file()
        return os.path.abspath(schema) if is_file else schema

    def source(item: Any) -> Any:
        fields = set(PATH_KEYS) & set(type(item).model_fields)
        update = {name: absolute(getattr(item, name)) for name in fields}
        return item.model_copy(
            update={**update, "keypoint_schema": schema_file(item.keypoint_schema)}
        )

    data = cfg.data
    update: dict[str, Any] = {
        "train": source(data.train),
        "val": source(data.val),
        "train_sets": [source(item) for item in data.train_sets],
        "synthetic": data.synthetic.model_copy(update={"dir": os.path.abspath(data.synthetic.dir)}),
        "keypoint_schema": schema_file(data.keypoint_schema),
    }
    params = dict(cfg.model.params)
    if isinstance(params.get("backbone_weights"), str):
        params["backbone_weights"] = os.path.abspath(params["backbone_weights"])
    return cfg.model_copy(
        update={
            "data": data.model_copy(update=update),
            "model": cfg.model.model_copy(update={"params": params}),
            "work_dir": absolute(cfg.work_dir),
        }
    )


def config_to_yaml(cfg: PosekitConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=False)


def save_config(cfg: PosekitConfig, path: str | Path) -> None:
    atomic_write_text(path, config_to_yaml(cfg))
