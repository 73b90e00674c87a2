"""Where a run's labels come from: one split, or several training sets combined.

Each source is a COCO keypoint file (or prepared labels) with its own keypoint set. When that
set differs from the run's schema, its points are mapped onto the run's keypoints (MMPose's
KeypointConverter): by explicit ``[source index, run index]`` pairs, else by keypoint name.
Run keypoints with no source are unlabelled (v = 0) in that set.

Combined training samples each set ``sample_ratio`` x its size per epoch through a fixed table
of (set, item) pairs (a fractional part drawn once from the run's seed), so resuming sees the
same samples; the loop shuffles the table each epoch.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from posekit.config import DataSource, PosekitConfig
from posekit.data.coco import CocoKeypoints
from posekit.data.training_labels import (
    is_yolo_data_yaml,
    load_training_labels,
    looks_like_mpii,
)
from posekit.data.ultralytics import yolo_schema
from posekit.errors import ConfigError
from posekit.schema import KeypointSchema, load_schema


def mapping_by_names(source: KeypointSchema, target: KeypointSchema) -> np.ndarray:  # (M, 2)
    """[source index, target index] pairs of the keypoints both sets name alike."""
    index_of = {name: i for i, name in enumerate(source.keypoints)}
    pairs = [(index_of[name], j) for j, name in enumerate(target.keypoints) if name in index_of]
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


def check_mapping(
    pairs: Any, source_count: int, target_count: int, where: str
) -> np.ndarray:  # (M, 2) int64
    """Validated mapping: indices in range, each run keypoint filled at most once."""
    mapping = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if mapping.size == 0:
        raise ConfigError(f"{where}: no keypoint maps onto the run's schema; give the pairs")
    bad_source = (mapping[:, 0] < 0) | (mapping[:, 0] >= source_count)
    bad_target = (mapping[:, 1] < 0) | (mapping[:, 1] >= target_count)
    if bad_source.any() or bad_target.any():
        pair = mapping[np.argmax(bad_source | bad_target)].tolist()
        raise ConfigError(
            f"{where}: pair {pair} is out of range (source has {source_count} keypoints, "
            f"the run's schema {target_count}); fix the indices (0-based)"
        )
    if len(np.unique(mapping[:, 1])) != len(mapping):
        raise ConfigError(f"{where}: a run keypoint is mapped twice; keep one pair per target")
    return mapping


def remap_keypoints(
    keypoints: np.ndarray,  # (N, Ks, 3)
    mapping: np.ndarray,  # (M, 2) source index, target index
    target_count: int,
) -> np.ndarray:  # (N, Kt, 3) float32, unmapped points zero
    result = np.zeros((keypoints.shape[0], target_count, 3), dtype=np.float32)
    result[:, mapping[:, 1]] = keypoints[:, mapping[:, 0]]
    return result


def remap_data(data: CocoKeypoints, target: KeypointSchema, mapping: np.ndarray) -> CocoKeypoints:
    """The data set with every person's keypoints in the ``target`` schema."""
    images = []
    for record in data.images:
        keypoints = remap_keypoints(record.keypoints, mapping, target.num_keypoints)
        keypoints.flags.writeable = False
        images.append(replace(record, keypoints=keypoints))
    return CocoKeypoints(images, target, data.labels_path, data.images_root, remapped=True)


def load_source(
    source: DataSource, cfg: PosekitConfig, run_schema: KeypointSchema, where: str
) -> CocoKeypoints:
    """One labels file, its keypoints mapped onto ``run_schema`` when its own set differs."""
    if source.labels is None:
        raise ConfigError(f"{where}.labels is not set; give the labels file")
    yolo = is_yolo_data_yaml(Path(source.labels))
    if source.images is None and not yolo:
        raise ConfigError(f"{where}.images is not set; give the images folder of {source.labels}")
    own = load_schema(source.keypoint_schema) if source.keypoint_schema else run_schema
    field = source.keypoints_field or cfg.data.keypoints_field
    split = "val" if where == "data.val" else "train"
    data = load_training_labels(
        source.labels, source.images, own, cfg.data.category_ids, field, split, source.head_boxes
    )
    report_repairs(data)
    if source.keypoint_mapping is None and own == run_schema:
        return data
    pairs = source.keypoint_mapping
    if pairs is None:
        pairs = mapping_by_names(own, run_schema)
    mapping = check_mapping(
        pairs, own.num_keypoints, run_schema.num_keypoints, f"{where}.keypoint_mapping"
    )
    return remap_data(data, run_schema, mapping)


def report_repairs(data: CocoKeypoints) -> None:
    """One line per repair the loader made (posekit check-data lists the same)."""
    for repair in data.repairs:
        print(f"posekit: {data.labels_path}: {repair.to_line()}", file=sys.stderr)


def run_schema(cfg: PosekitConfig) -> KeypointSchema:
    """The run's keypoint schema: ``data.schema``; when that is the default (coco17) and the
    labels are a YOLO data set, the schema its data.yaml defines (kpt_shape, flip_idx, names;
    coco17 itself for a COCO-17 data.yaml)."""
    if cfg.data.keypoint_schema == "coco17":
        for source in (cfg.data.train, cfg.data.val):
            if source.labels is not None and is_yolo_data_yaml(Path(source.labels)):
                return yolo_schema(Path(source.labels))
    return load_schema(cfg.data.keypoint_schema)


def expected_metric(cfg: PosekitConfig) -> str:
    """The metric a run of ``cfg`` reports (see :func:`posekit.data.ground_truth.metric_name`),
    known before any labels are loaded."""
    if run_schema(cfg).has_sigmas:
        return "AP"
    labels = cfg.data.val.labels
    return "PCKh" if labels is not None and looks_like_mpii(Path(labels)) else "PCK"


def load_split(cfg: PosekitConfig, split: str, schema: KeypointSchema) -> CocoKeypoints | None:
    """``data.train`` or ``data.val`` in the run's schema; None when its labels are not set."""
    source = getattr(cfg.data, split)
    if source.labels is None:
        return None
    return load_source(source, cfg, schema, f"data.{split}")


@dataclass
class CombinedKeypoints:
    """Several training sets in the run's schema, and the epoch's (set, item) table."""

    sets: list[CocoKeypoints]
    table: np.ndarray  # (L, 2) int64: set index, item index


def sample_table(sizes: list[int], ratios: list[float], seed: int) -> np.ndarray:  # (L, 2)
    """``round(size * ratio)`` items of each set: whole passes in order, then a seeded random
    part of the set for the fraction left (ratio 2.5 = every item twice, half of them a third
    time). Pure; ratio 1 everywhere is the plain concatenation."""
    rows = []
    for index, (size, ratio) in enumerate(zip(sizes, ratios, strict=True)):
        count = round(size * ratio)
        if size == 0 or count == 0:
            continue
        passes, rest = divmod(count, size)
        part = np.random.default_rng([seed, index]).permutation(size)[:rest]
        items = np.concatenate([np.tile(np.arange(size), passes), np.sort(part)])
        rows.append(np.stack([np.full(count, index), items], axis=1))
    if not rows:
        return np.zeros((0, 2), dtype=np.int64)
    return np.concatenate(rows).astype(np.int64)


def load_train_sets(
    cfg: PosekitConfig, schema: KeypointSchema, sizes_of: Any = len
) -> CombinedKeypoints | None:
    """``data.train_sets`` (several sets) or ``data.train`` (one, ratio 1); None when neither.

    ``sizes_of(data)`` counts a set's samples (images for bottom-up, people for top-down)."""
    if cfg.data.train_sets and cfg.data.train.labels is not None:
        raise ConfigError(
            "data.train and data.train_sets are both set; list every training set under "
            "data.train_sets (or use data.train alone)"
        )
    if cfg.data.train_sets:
        sets = [
            load_source(source, cfg, schema, f"data.train_sets[{i}]")
            for i, source in enumerate(cfg.data.train_sets)
        ]
        ratios = [source.sample_ratio for source in cfg.data.train_sets]
    else:
        single = load_split(cfg, "train", schema)
        if single is None:
            return None
        sets, ratios = [single], [1.0]
    table = sample_table([sizes_of(data) for data in sets], ratios, cfg.seed)
    return CombinedKeypoints(sets, table)
