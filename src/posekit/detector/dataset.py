"""Detector training samples: an image and its boxes, strongly augmented in stage 1 (Mosaic,
photometric distortion, zoom-out, IoU crop, flip, MixUp, copy-paste) and weakly in stage 2,
resized to the batch's input size (square, not keeping the aspect: RT-DETR's resize).

Every random choice comes from the sample's seed (:class:`SampleKey`), including which other
images a Mosaic, MixUp or copy-paste draws in, so a resumed run sees the same samples. Mosaic
packs four images' objects into one, which also gives the one-to-one matcher more targets per
image (DEIM's "dense one-to-one").
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from posekit.config import DetectorAugmentConfig
from posekit.data.images import read_image
from posekit.data.transforms import normalize_image
from posekit.detector.augment import (
    Annotated,
    copy_paste,
    hflip,
    iou_crop,
    mixup,
    mosaic,
    photometric_distort,
    resize,
    sanitize,
    zoom_out,
)
from posekit.detector.boxes import xyxy_to_cxcywh
from posekit.detector.coco_boxes import CocoBoxes
from posekit.engine.sampling import SampleKey


def load_annotated(data: CocoBoxes, index: int) -> Annotated:
    record = data.images[index]
    image = read_image(data.image_path(record))
    return Annotated(image, record.boxes.astype(np.float32), record.labels.astype(np.int64))


def strong_augment(
    sample: Annotated,
    draw_other: Any,  # (rng) -> Annotated: another training image, chosen by rng
    rng: np.random.Generator,
    params: DetectorAugmentConfig,
    mosaic_size: tuple[int, int],
) -> Annotated:
    """The stage-1 pipeline (each step with its probability); stage 2 uses the same function
    with its own probabilities (by default flip only)."""
    if rng.random() < params.mosaic_prob:
        sample = mosaic([sample, *(draw_other(rng) for _ in range(3))], rng, mosaic_size)
    if rng.random() < params.photometric_prob:
        sample = Annotated(photometric_distort(sample.image, rng), sample.boxes, sample.labels)
    if rng.random() < params.zoom_out_prob:
        sample = zoom_out(sample, rng, max_scale=params.zoom_out_max)
    if rng.random() < params.iou_crop_prob:
        sample = iou_crop(sample, rng)
    if rng.random() < params.flip_prob:
        sample = hflip(sample)
    if rng.random() < params.mixup_prob:
        sample = mixup(sample, draw_other(rng), rng)
    if rng.random() < params.copy_paste_prob:
        sample = copy_paste(sample, draw_other(rng), rng)
    return sanitize(sample)


def make_detection_sample(sample: Annotated, input_size: int) -> dict[str, torch.Tensor]:
    """Tensors of one sample (pure): the resized image and its boxes as normalised cxcywh."""
    resized = sanitize(resize(sample, (input_size, input_size)))
    boxes = torch.from_numpy(resized.boxes.astype(np.float32).reshape(-1, 4)) / input_size
    return {
        "image": torch.from_numpy(normalize_image(resized.image)),
        "boxes": xyxy_to_cxcywh(boxes),
        "labels": torch.from_numpy(resized.labels.astype(np.int64)),
    }


def pad_detection_batch(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Boxes and labels padded to the batch's largest count, with ``box_mask`` marking the
    real ones; the other entries (the image...) stacked. Every entry stays a tensor."""
    longest = max(1, *(len(s["labels"]) for s in samples))
    boxes = torch.zeros(len(samples), longest, 4)
    labels = torch.zeros(len(samples), longest, dtype=torch.int64)
    mask = torch.zeros(len(samples), longest, dtype=torch.bool)
    for row, sample in enumerate(samples):
        count = len(sample["labels"])
        boxes[row, :count] = sample["boxes"]
        labels[row, :count] = sample["labels"]
        mask[row, :count] = True
    padded = {"boxes": boxes, "labels": labels, "box_mask": mask}
    others = [key for key in samples[0] if key not in padded]  # the image, "skipped"...
    return {**{key: torch.stack([s[key] for s in samples]) for key in others}, **padded}


def unpad_targets(batch: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """Per image ``{"labels": (T,), "boxes": (T, 4)}`` from a padded batch."""
    return [
        {"labels": labels[mask], "boxes": boxes[mask]}
        for labels, boxes, mask in zip(
            batch["labels"], batch["boxes"], batch["box_mask"], strict=True
        )
    ]


class DetectionDataset(torch.utils.data.Dataset):
    """Indexed by :class:`SampleKey`; ``augment`` None gives the plain resized image."""

    def __init__(
        self,
        data: CocoBoxes,
        input_size: int,
        augment: DetectorAugmentConfig | None,
        pool: np.ndarray | None = None,  # the images Mosaic / MixUp may draw in (subset)
    ) -> None:
        self.data = data
        self.input_size = input_size
        self.augment = augment
        self.pool = np.arange(len(data)) if pool is None else np.asarray(pool)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key: SampleKey) -> dict[str, torch.Tensor]:
        size = key.input_size or self.input_size
        sample = load_annotated(self.data, key.index)
        if self.augment is not None:
            rng = np.random.default_rng(key.seed)
            sample = strong_augment(sample, self.draw_other, rng, self.augment, (size, size))
        return make_detection_sample(sample, size)

    def draw_other(self, rng: np.random.Generator) -> Annotated:
        return load_annotated(self.data, int(self.pool[rng.integers(len(self.pool))]))
