"""The bottom-up family (Lightweight OpenPose, original OpenPose) as a training task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from posekit.bottomup.dataset import BottomUpDataset, TargetSpec, augment_params
from posekit.bottomup.inference import People, predict_people
from posekit.config import PosekitConfig
from posekit.data.coco import CocoKeypoints
from posekit.data.images import read_image
from posekit.data.sources import ground_truth, load_split
from posekit.drawing import draw_people, write_jpeg
from posekit.engine.optim import lw_openpose_param_groups, plain_param_groups
from posekit.engine.sampling import stack_samples
from posekit.errors import ConfigError
from posekit.evaluation import box_norm, evaluate_keypoints, keypoint_results, pck, save_results
from posekit.layouts import KeypointLayout, default_layout
from posekit.losses import bottomup_loss
from posekit.models.blocks import cpu_layout
from posekit.models.lw_openpose import LightweightOpenPose
from posekit.models.openpose_vgg import OpenPoseVGG19
from posekit.schema import load_schema

BOTTOMUP_MODELS: dict[str, type[nn.Module]] = {
    "lw_openpose": LightweightOpenPose,
    "openpose_vgg19": OpenPoseVGG19,
}


def build_bottomup_model(cfg: PosekitConfig, layout: KeypointLayout) -> nn.Module:
    if cfg.model.name not in BOTTOMUP_MODELS:
        raise ConfigError(
            f"model.name {cfg.model.name!r} is not a bottom-up model; known: "
            f"{sorted(BOTTOMUP_MODELS)}"
        )
    schema = layout.network_schema
    try:
        return BOTTOMUP_MODELS[cfg.model.name](
            num_heatmaps=schema.num_keypoints + 1, num_pafs=2 * schema.num_limbs, **cfg.model.params
        )
    except TypeError as exc:
        raise ConfigError(f"model.params: {exc}; check the parameter names") from None


class BottomUpTask:
    """Model, data, loss and evaluation of a bottom-up run (see :class:`TrainingTask`)."""

    family = "bottomup"

    def __init__(self, cfg: PosekitConfig, device: torch.device) -> None:
        self.cfg = cfg
        self.device = device
        self.schema = load_schema(cfg.data.keypoint_schema)
        self.metric_name = "AP" if self.schema.has_sigmas else "PCK"
        self.layout = default_layout(self.schema)
        self.model = build_bottomup_model(cfg, self.layout)
        self.stride = int(getattr(self.model, "stride", 8))
        if cfg.data.train_sets:
            raise ConfigError(
                "data.train_sets (several training sets) is for the top-down family; give "
                "the bottom-up run one data.train"
            )
        self.train_data = load_split(cfg, "train", self.schema)
        self.val_data = load_split(cfg, "val", self.schema)

    def train_dataset(self, stage: int, input_size: int) -> BottomUpDataset:
        """Stage 1 uses ``data.augment``, stage 2 ``data.augment_stage2``; overfit none."""
        if self.train_data is None:
            raise ConfigError("data.train.labels is not set; give the training labels")
        targets = self.cfg.targets
        spec = TargetSpec(input_size, self.stride, targets.sigma, targets.paf_width)
        ranges = self.cfg.data.augment if stage == 1 else self.cfg.data.augment_stage2
        augment = None if self.cfg.training.overfit else augment_params(ranges)
        return BottomUpDataset(self.train_data, self.layout, spec, augment)

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return stack_samples(samples)

    def compute_loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        outputs = model(cpu_layout(batch["image"]))
        return bottomup_loss(
            outputs,
            batch["heatmaps"],
            batch["pafs"],
            batch["weights"],
            self.cfg.loss.heatmap_weight,
            self.cfg.loss.paf_weight,
            self.cfg.loss.foreground_weight,
        )

    def param_groups(self, base_lr: float, weight_decay: float) -> list[dict]:
        if self.cfg.training.optimizer.original_lr_mults:
            return lw_openpose_param_groups(self.model, base_lr, weight_decay)
        return plain_param_groups(self.model, base_lr, weight_decay)

    def has_validation(self) -> bool:
        return self.val_data is not None

    def checkpoint_extras(self) -> dict[str, Any]:
        return {"schema": self.schema.to_dict(), "family": self.family}

    def predict(self, model: nn.Module, image: np.ndarray) -> People:
        return predict_people(
            model, image, self.layout, self.cfg.inference, self.stride, self.device
        )

    def evaluate(self, model: nn.Module, results_path: Path | None) -> dict[str, float]:
        assert self.val_data is not None
        return evaluate_bottomup(self, model, self.val_data, results_path)

    def evaluate_on(
        self,
        model: nn.Module,
        data: CocoKeypoints,
        results_path: Path | None,
        detections: str | None = None,
    ) -> dict[str, float]:
        """Evaluate on ``data`` (``posekit val``); bottom-up needs no person boxes."""
        if detections is not None:
            raise ConfigError(
                "data.val.detections is for top-down models; a bottom-up model finds people "
                "itself: remove the detections file"
            )
        return evaluate_bottomup(self, model, data, results_path)

    def predict_drawn(self, model: nn.Module, image: np.ndarray) -> tuple[np.ndarray, People]:
        """The people found in ``image`` and a copy of it with them drawn."""
        with torch.no_grad():
            people = self.predict(model, image)
        return draw_people(image, people.keypoints, self.schema), people

    def draw_validation(self, model: nn.Module, folder: Path, count: int) -> None:
        """The first ``count`` validation images with predictions drawn, as JPEGs."""
        assert self.val_data is not None
        for record in self.val_data.images[:count]:
            drawn, _ = self.predict_drawn(model, read_image(self.val_data.image_path(record)))
            write_jpeg(folder / f"val_{record.image_id}.jpg", drawn)


def evaluate_bottomup(
    task: BottomUpTask, model: nn.Module, data: CocoKeypoints, results_path: Path | None
) -> dict[str, float]:
    """Predict every image of ``data``; COCO keypoint AP with the schema's sigmas, else PCK."""
    results: list[dict[str, Any]] = []
    found: dict[int, People] = {}
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for record in data.images:
            people = task.predict(model, read_image(data.image_path(record)))
            found[record.image_id] = people
            if len(people.scores):
                results.extend(keypoint_results(record.image_id, people.keypoints, people.scores))
    model.train(was_training)
    if results_path is not None:
        save_results(results, results_path)
    if not data.schema.has_sigmas:
        return {"PCK": pck_of(data, found)}
    return evaluate_keypoints(ground_truth(data), results, data.schema.sigmas_array())


def pck_of(data: CocoKeypoints, found: dict[int, People]) -> float:
    """PCK@0.2 of the box size: each ground-truth person against the closest prediction."""
    predictions, truths, norms = [], [], []
    for record in data.images:
        people = found[record.image_id]
        for gt, box in zip(record.keypoints, record.boxes, strict=True):
            if len(people.keypoints):
                labelled = gt[:, 2] > 0
                dist = np.linalg.norm(people.keypoints[:, :, :2] - gt[None, :, :2], axis=-1)
                best = int(np.argmin(np.where(labelled, dist, 0).sum(axis=1)))
                predictions.append(people.keypoints[best, :, :2])
            else:
                predictions.append(np.full((gt.shape[0], 2), -1e6, dtype=np.float32))
            truths.append(gt)
            norms.append(box)
    if not truths:
        return 0.0
    return pck(np.stack(predictions), np.stack(truths), box_norm(np.stack(norms)))
