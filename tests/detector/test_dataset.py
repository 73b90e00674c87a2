"""Detector samples: tensors, padding, seeded strong augmentation, stage-2 weak augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from posekit.config import DetectorAugmentConfig, DetectorConfig
from posekit.data.synthetic.generate import generate_synthetic
from posekit.detector.augment import Annotated
from posekit.detector.coco_boxes import load_coco_boxes
from posekit.detector.dataset import (
    DetectionDataset,
    load_annotated,
    make_detection_sample,
    pad_detection_batch,
    strong_augment,
    unpad_targets,
)
from posekit.detector.task import resized_input
from posekit.engine.sampling import SampleKey

NONE = DetectorAugmentConfig(
    mosaic_prob=0, mixup_prob=0, copy_paste_prob=0, photometric_prob=0, zoom_out_prob=0,
    iou_crop_prob=0, flip_prob=0,
)  # fmt: skip


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    generate_synthetic(root, 8, 0, (96, 80), seed=3)
    return root


def test_a_sample_holds_normalised_centre_size_boxes() -> None:
    image = np.zeros((50, 100, 3), np.uint8)
    sample = Annotated(image, np.array([[10, 5, 30, 45]], np.float32), np.array([2]))
    tensors = make_detection_sample(sample, 64)
    assert tensors["image"].shape == (3, 64, 64)
    torch.testing.assert_close(tensors["boxes"], torch.tensor([[0.2, 0.5, 0.2, 0.8]]))
    assert tensors["labels"].tolist() == [2]


def test_padding_round_trips_and_keeps_other_entries() -> None:
    samples = [
        {"image": torch.zeros(3, 4, 4), "boxes": torch.rand(n, 4), "labels": torch.arange(n),
         "skipped": torch.tensor(0)}
        for n in (2, 0, 3)
    ]  # fmt: skip
    batch = pad_detection_batch(samples)
    assert batch["boxes"].shape == (3, 3, 4) and batch["box_mask"].sum() == 5
    assert batch["image"].shape == (3, 3, 4, 4) and batch["skipped"].shape == (3,)
    for sample, target in zip(samples, unpad_targets(batch), strict=True):
        torch.testing.assert_close(target["boxes"], sample["boxes"])
        assert target["labels"].tolist() == sample["labels"].tolist()


def test_strong_augmentation_is_a_function_of_the_seed(synthetic: Path) -> None:
    data = load_coco_boxes(synthetic / "train.json", synthetic / "train")
    dataset = DetectionDataset(data, 64, DetectorConfig().augment)
    first = dataset[SampleKey(1, (0, 4, 1))]
    again = dataset[SampleKey(1, (0, 4, 1))]
    other = dataset[SampleKey(1, (0, 5, 1))]
    assert torch.equal(first["image"], again["image"])
    assert torch.equal(first["boxes"], again["boxes"])
    assert not torch.equal(first["image"], other["image"])
    assert ((first["boxes"] >= 0) & (first["boxes"] <= 1)).all()


def test_every_step_of_the_pipeline_runs_and_mosaic_draws_from_the_pool(synthetic: Path) -> None:
    data = load_coco_boxes(synthetic / "train.json", synthetic / "train")
    everything = DetectorAugmentConfig(
        mosaic_prob=1, mixup_prob=1, copy_paste_prob=1, photometric_prob=1, zoom_out_prob=1,
        iou_crop_prob=1, flip_prob=1,
    )  # fmt: skip
    drawn: list[int] = []
    dataset = DetectionDataset(data, 64, everything, pool=np.array([5]))

    def draw_other(rng: np.random.Generator) -> Annotated:
        drawn.append(int(dataset.pool[rng.integers(len(dataset.pool))]))
        return dataset.draw_other(rng)

    rng = np.random.default_rng(0)
    out = strong_augment(load_annotated(data, 0), draw_other, rng, everything, (64, 64))
    assert drawn == [5] * 5  # three for the mosaic, one each for MixUp and copy-paste
    height, width = out.image.shape[:2]
    assert height >= 64 and width >= 64 and len(out.boxes) == len(out.labels)  # zoomed out
    assert (out.boxes[:, [0, 2]] <= width).all() and (out.boxes[:, [1, 3]] <= height).all()


def test_the_weak_stage_only_flips(synthetic: Path) -> None:
    data = load_coco_boxes(synthetic / "train.json", synthetic / "train")
    weak = DetectorConfig().augment_stage2
    assert weak.mosaic_prob == weak.mixup_prob == weak.iou_crop_prob == 0 and weak.flip_prob
    plain = DetectionDataset(data, 64, None)[SampleKey(2, (0, 0, 2))]
    flipped_or_not = [
        DetectionDataset(data, 64, weak)[SampleKey(2, (0, 0, seed))]["boxes"] for seed in range(8)
    ]
    mirrored = plain["boxes"].clone()
    mirrored[:, 0] = 1 - mirrored[:, 0]
    for boxes in flipped_or_not:
        assert torch.allclose(boxes, plain["boxes"], atol=1e-5) or torch.allclose(
            boxes, mirrored, atol=1e-5
        )
    assert any(torch.allclose(b, mirrored, atol=1e-5) for b in flipped_or_not)


def test_batches_of_another_input_size_follow_the_sample_key(synthetic: Path) -> None:
    data = load_coco_boxes(synthetic / "train.json", synthetic / "train")
    dataset = DetectionDataset(data, 64, NONE)
    assert dataset[SampleKey(0, (0, 0, 0), input_size=96)]["image"].shape == (3, 96, 96)
    assert dataset[SampleKey(0, (0, 0, 0))]["image"].shape == (3, 64, 64)


def test_inference_inputs_are_resized_like_training_samples() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (120, 200, 3), dtype=np.uint8)
    sample = Annotated(image, np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
    assert torch.equal(resized_input(image, 64), make_detection_sample(sample, 64)["image"])
