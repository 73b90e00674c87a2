"""Bottom-up training samples: image -> augmented crop -> heatmaps, PAFs and loss weights."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from posekit.bottomup.augment import (
    BottomUpAugmentParams,
    bottomup_augment,
    bottomup_eval_transform,
)
from posekit.bottomup.heatmaps import gaussian_heatmaps, mask_weights
from posekit.bottomup.layouts import KeypointLayout
from posekit.bottomup.pafs import part_affinity_fields
from posekit.config import AugmentConfig
from posekit.data.coco import CocoKeypoints, ignore_mask
from posekit.data.images import read_image
from posekit.data.transforms import normalize_image, warp_mask
from posekit.engine.sampling import SampleKey


def augment_params(cfg: AugmentConfig) -> BottomUpAugmentParams:
    """The config's random ranges as the augmentation's parameters."""
    jitter = min(cfg.color_jitter, 0.99)
    return BottomUpAugmentParams(
        scale_min=cfg.scale_min,
        scale_max=cfg.scale_max,
        target_dist=cfg.target_dist,
        max_rotate=cfg.max_rotate,
        center_perturb_max=cfg.center_perturb,
        flip_prob=cfg.flip_prob,
        brightness=jitter,
        contrast=jitter,
        saturation=jitter,
        hue=min(0.5, jitter / 10),
        whole_image=cfg.whole_image,
    )


@dataclass(frozen=True)
class TargetSpec:
    input_size: int
    stride: int
    sigma: float
    paf_width: float


class BottomUpDataset(torch.utils.data.Dataset):
    """Indexed by :class:`SampleKey`: the seed makes each sample's augmentation reproducible."""

    def __init__(
        self,
        data: CocoKeypoints,
        layout: KeypointLayout,
        spec: TargetSpec,
        augment: BottomUpAugmentParams | None,
    ) -> None:
        """``augment`` None: no randomness, each image letterboxed whole into the input."""
        self.data = data
        self.layout = layout
        self.spec = spec
        self.augment = augment
        self.flip_index = layout.network_schema.flip_index()
        self.limbs = np.asarray(layout.network_schema.skeleton, dtype=np.int64).reshape(-1, 2)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key: SampleKey) -> dict[str, Any]:
        record = self.data.images[key.index]
        image = read_image(self.data.image_path(record))
        keypoints = self.layout.to_network(record.keypoints)
        mask = (
            ignore_mask(record, image.shape[0], image.shape[1])
            if record.ignore_boxes.size
            else None
        )
        side = key.input_size or self.spec.input_size
        size = (side, side)
        if self.augment is None:
            crop, crop_keypoints, matrix = bottomup_eval_transform(image, size, keypoints)
            assert crop_keypoints is not None
            crop_mask = np.zeros(size, np.uint8) if mask is None else warp_mask(mask, matrix, size)
        else:
            rng = np.random.default_rng(key.seed)
            crop, crop_keypoints, crop_mask = bottomup_augment(
                image, keypoints, mask, size, self.flip_index, rng, self.augment, record.boxes
            )
        spec = self.spec if side == self.spec.input_size else replace(self.spec, input_size=side)
        return make_sample(crop, crop_keypoints, crop_mask, self.limbs, spec)


def make_sample(
    image: np.ndarray,  # (S, S, 3) uint8
    keypoints: np.ndarray,  # (N, K, 3) in crop pixels
    ignore: np.ndarray,  # (S, S) uint8, 1 = ignore
    limbs: np.ndarray,  # (L, 2)
    spec: TargetSpec,
) -> dict[str, Any]:
    """Tensors of one training sample (pure)."""
    out_hw = (spec.input_size // spec.stride, spec.input_size // spec.stride)
    heatmaps = gaussian_heatmaps(keypoints, out_hw, spec.stride, spec.sigma)
    pafs = part_affinity_fields(keypoints, limbs, out_hw, spec.stride, spec.paf_width)
    weights = mask_weights(ignore, spec.stride, out_hw)
    return {
        "image": torch.from_numpy(normalize_image(image)),
        "heatmaps": torch.from_numpy(heatmaps),
        "pafs": torch.from_numpy(pafs),
        "weights": torch.from_numpy(weights)[None],
    }
