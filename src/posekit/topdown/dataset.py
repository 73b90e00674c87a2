"""Top-down training samples: one person per sample, cropped from its box, with the codec's
targets (Gaussian heatmaps or SimCC labels) and per-keypoint weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from posekit.config import TopDownAugmentConfig
from posekit.data.coco import CocoKeypoints
from posekit.data.images import read_image
from posekit.data.sources import CombinedKeypoints
from posekit.data.transforms import normalize_image, warp_keypoints
from posekit.engine.sampling import SampleKey
from posekit.schema import KeypointSchema
from posekit.topdown.augment import (
    TopDownAugmentParams,
    box_to_centre_scale,
    topdown_augment,
    topdown_eval_transform,
)
from posekit.topdown.codecs.heatmap import encode_heatmaps
from posekit.topdown.codecs.simcc import encode_simcc


@dataclass(frozen=True)
class TopDownSpec:
    """What a sample looks like: the crop size, the codec and its settings."""

    input_hw: tuple[int, int]
    head: str  # "heatmap" or "simcc"
    heatmap_hw: tuple[int, int]
    heatmap_sigma: float
    simcc_split_ratio: float
    simcc_sigma: tuple[float, float]
    bbox_padding: float

    @property
    def aspect_ratio(self) -> float:
        return self.input_hw[1] / self.input_hw[0]


def augment_params(cfg: TopDownAugmentConfig) -> TopDownAugmentParams:
    return TopDownAugmentParams(
        flip_prob=cfg.flip_prob,
        half_body_prob=cfg.half_body_prob,
        half_body_min_keypoints=cfg.half_body_min_keypoints,
        shift_factor=cfg.shift_factor,
        shift_prob=cfg.shift_prob,
        scale_min=cfg.scale_min,
        scale_max=cfg.scale_max,
        rotate_max=cfg.rotate_max,
        rotate_prob=cfg.rotate_prob,
    )


def person_instances(data: CocoKeypoints) -> np.ndarray:  # (P, 2) image index, person index
    """The trainable people: a labelled keypoint and a box of positive size."""
    rows = []
    for image_index, record in enumerate(data.images):
        sized = (record.boxes[:, 2] > 0) & (record.boxes[:, 3] > 0)
        labelled = (record.keypoints[:, :, 2] > 0).any(axis=1)
        for person in np.flatnonzero(sized & labelled):
            rows.append((image_index, int(person)))
    return np.asarray(rows, dtype=np.int64).reshape(-1, 2)


def count_people(data: CocoKeypoints) -> int:
    return len(person_instances(data))


class TopDownDataset(torch.utils.data.Dataset):
    """Indexed by :class:`SampleKey` over the combined sets' (set, person) table."""

    def __init__(
        self,
        combined: CombinedKeypoints,
        schema: KeypointSchema,
        spec: TopDownSpec,
        augment: TopDownAugmentParams | None,
    ) -> None:
        self.sets = combined.sets
        self.table = combined.table
        self.instances = [person_instances(data) for data in combined.sets]
        self.spec = spec
        self.augment = augment
        self.flip_index = schema.flip_index()
        self.upper_ids, self.lower_ids = schema.body_halves()

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, key: SampleKey) -> dict[str, Any]:
        set_index, item = self.table[key.index]
        image_index, person = self.instances[set_index][item]
        data = self.sets[set_index]
        record = data.images[image_index]
        image = read_image(data.image_path(record))
        spec = self.spec
        centre, scale = box_to_centre_scale(
            record.boxes[person], spec.aspect_ratio, spec.bbox_padding
        )
        keypoints = record.keypoints[person]
        if self.augment is None:
            crop, matrix = topdown_eval_transform(image, centre, scale, spec.input_hw)
            crop_keypoints = warp_keypoints(keypoints[None], matrix, spec.input_hw)[0]
        else:
            rng = np.random.default_rng(key.seed)
            crop, crop_keypoints, _ = topdown_augment(
                image, keypoints, centre, scale, spec.input_hw, self.flip_index,
                self.upper_ids, self.lower_ids, rng, self.augment,
            )  # fmt: skip
        return make_topdown_sample(crop, crop_keypoints, spec)


def make_topdown_sample(
    crop: np.ndarray,  # (H, W, 3) uint8
    keypoints: np.ndarray,  # (K, 3) in crop pixels
    spec: TopDownSpec,
) -> dict[str, Any]:
    """Tensors of one training sample (pure)."""
    sample: dict[str, Any] = {"image": torch.from_numpy(normalize_image(crop))}
    if spec.head == "simcc":
        x_labels, y_labels, weights = encode_simcc(
            keypoints, spec.input_hw, spec.simcc_split_ratio, spec.simcc_sigma
        )
        sample["simcc_x"] = torch.from_numpy(x_labels)
        sample["simcc_y"] = torch.from_numpy(y_labels)
    else:
        heatmaps, weights = encode_heatmaps(
            keypoints, spec.input_hw, spec.heatmap_hw, spec.heatmap_sigma
        )
        sample["heatmaps"] = torch.from_numpy(heatmaps)
    sample["weights"] = torch.from_numpy(weights)
    return sample
