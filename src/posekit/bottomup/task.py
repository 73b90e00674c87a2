"""The bottom-up family (Lightweight OpenPose, original OpenPose) as a training task."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from posekit.bottomup import onnx
from posekit.bottomup.dataset import BottomUpDataset, TargetSpec, augment_params
from posekit.bottomup.inference import predict_people
from posekit.bottomup.layouts import KeypointLayout, default_layout
from posekit.bottomup.loss import bottomup_loss
from posekit.bottomup.lw_openpose import (
    LightweightOpenPose,
    StageOutputs,
    lw_openpose_param_groups,
)
from posekit.bottomup.openpose_vgg import OpenPoseVGG19
from posekit.bottomup.original_checkpoints import export_original, read_original
from posekit.config import PosekitConfig
from posekit.data.coco import CocoKeypoints
from posekit.data.ground_truth import (
    metric_name,
    pck_of_closest,
    score_keypoint_results,
    single_category_id,
)
from posekit.data.images import read_image
from posekit.data.sources import load_split, run_schema
from posekit.drawing import draw_people, side_by_side, write_jpeg
from posekit.engine.onnx_graph import OnnxGraph
from posekit.engine.optim import plain_param_groups
from posekit.engine.sampling import stack_samples
from posekit.engine.summary import keypoint_data_line
from posekit.errors import ConfigError, check_parameters
from posekit.evaluation import keypoint_results, save_results
from posekit.layers.blocks import cpu_layout
from posekit.people import People, people_to_json

BOTTOMUP_MODELS: dict[str, type[nn.Module]] = {
    "lw_openpose": LightweightOpenPose,
    "openpose_vgg19": OpenPoseVGG19,
}


def bottomup_model_class(cfg: PosekitConfig) -> Any:
    """``model.name``'s network class, with ``model.params`` checked against it (one line
    per mistake; the heatmap and PAF counts come from the schema)."""
    if cfg.model.name not in BOTTOMUP_MODELS:
        raise ConfigError(
            f"model.name {cfg.model.name!r} is not a bottom-up model; known: "
            f"{sorted(BOTTOMUP_MODELS)}"
        )
    factory = BOTTOMUP_MODELS[cfg.model.name]
    check_parameters(factory, cfg.model.params, "model.params", ("num_heatmaps", "num_pafs"))
    return factory


def build_bottomup_model(cfg: PosekitConfig, layout: KeypointLayout) -> nn.Module:
    schema = layout.network_schema
    return bottomup_model_class(cfg)(
        num_heatmaps=schema.num_keypoints + 1, num_pafs=2 * schema.num_limbs, **cfg.model.params
    )


class BottomUpTask:
    """Model, data, loss and evaluation of a bottom-up run (see :class:`TrainingTask`)."""

    family = "bottomup"
    listing = ("people", "people.json")  # what ``posekit predict`` lists, and in which file
    gives_person_boxes = False
    takes_person_boxes = False
    # files of other tools this family reads: (weights, config, what was recognised) or None
    foreign_weight_readers = (read_original,)
    # ``posekit export --format NAME``: (weights, stored config, source, out) -> written file
    export_formats: ClassVar[dict[str, Callable[..., Any]]] = {"lwop": export_original}

    @staticmethod
    def check_model_params(cfg: PosekitConfig) -> None:
        """``model.params`` checked before any data is read or made (one line per mistake)."""
        bottomup_model_class(cfg)

    @staticmethod
    def input_size_settings(size: int) -> dict[str, Any]:
        """The config keys that make this family train and validate at ``size`` pixels
        (``posekit trials --budget-size``)."""
        return {"data.input_size": size, "bottomup.inference.input_height": size}

    def __init__(self, cfg: PosekitConfig, device: torch.device) -> None:
        self.cfg = cfg
        self.device = device
        self.schema = run_schema(cfg)
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
        self.metric_name = metric_name(self.schema, self.val_data)

    def data_lines(self) -> list[str]:
        """The start summary's lines about the training and validation data."""

        def one(data: CocoKeypoints | None) -> list[CocoKeypoints]:
            return [data] if data is not None else []

        return [
            keypoint_data_line("train", one(self.train_data)),
            keypoint_data_line("val", one(self.val_data)),
        ]

    def train_dataset(self, stage: int, input_size: int) -> BottomUpDataset:
        """Stage 1 uses ``bottomup.augment``, stage 2 ``bottomup.augment_stage2``; overfit none."""
        if self.train_data is None:
            raise ConfigError("data.train.labels is not set; give the training labels")
        targets = self.cfg.bottomup.targets
        spec = TargetSpec(input_size, self.stride, targets.sigma, targets.paf_width)
        ranges = self.cfg.bottomup.augment if stage == 1 else self.cfg.bottomup.augment_stage2
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
            self.cfg.bottomup.loss.heatmap_weight,
            self.cfg.bottomup.loss.paf_weight,
            self.cfg.bottomup.loss.foreground_weight,
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
        settings = self.cfg.bottomup.inference
        return predict_people(
            model, image, self.layout, settings, self.stride, self.device, self.cfg.inference.bf16
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

    def validation_data(self, cfg: PosekitConfig) -> CocoKeypoints | None:
        """``data.val`` of ``cfg`` on this model's schema (``posekit val``)."""
        return load_split(cfg, "val", self.schema)

    def predict_listed(
        self, model: nn.Module, image: np.ndarray, box_threshold: float
    ) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """``posekit predict``: the image with the people drawn, and their JSON entries
        (``box_threshold`` is for detectors)."""
        del box_threshold
        drawn, people = self.predict_drawn(model, image)
        return drawn, people_to_json(people)

    def onnx_graph(self, network: nn.Module) -> OnnxGraph:
        return onnx.onnx_graph(network, self.cfg.bottomup.inference.input_height)

    def onnx_metadata(self) -> dict[str, Any]:
        return onnx.onnx_metadata(self)

    def onnx_output_names(self) -> list[str]:
        return list(onnx.OUTPUT_NAMES)

    def onnx_input_hw(self) -> tuple[int, int] | None:
        return None  # any height and width (multiples of the stride)

    def onnx_outputs(self, named: dict[str, torch.Tensor]) -> StageOutputs:
        return onnx.outputs_from_onnx(named)

    def draw_validation(self, model: nn.Module, folder: Path, count: int) -> None:
        """The first ``count`` validation images, ground truth and predictions side by side."""
        assert self.val_data is not None
        for record in self.val_data.images[:count]:
            image = read_image(self.val_data.image_path(record))
            drawn, _ = self.predict_drawn(model, image)
            truth = draw_people(image, record.keypoints, self.schema)
            write_jpeg(folder / f"val_{record.image_id}.jpg", side_by_side(truth, drawn))


def evaluate_bottomup(
    task: BottomUpTask, model: nn.Module, data: CocoKeypoints, results_path: Path | None
) -> dict[str, float]:
    """Predict every image of ``data``; COCO keypoint AP with the schema's sigmas, else PCK."""
    results: list[dict[str, Any]] = []
    found: dict[int, People] = {}
    category = single_category_id(data)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for record in data.images:
            people = task.predict(model, read_image(data.image_path(record)))
            found[record.image_id] = people
            if len(people.scores):
                found_results = keypoint_results(
                    record.image_id, people.keypoints, people.scores, category or 1
                )
                results.extend(found_results)
    model.train(was_training)
    if results_path is not None:
        save_results(results, results_path)
    if not data.schema.has_sigmas:
        return pck_of(data, found)
    return score_keypoint_results(data, results, use_categories=category is not None)


def pck_of(data: CocoKeypoints, found: dict[int, People]) -> dict[str, float]:
    """PCK (or MPII's PCKh): each ground-truth person against the closest prediction."""
    return pck_of_closest(data, {image_id: p.keypoints for image_id, p in found.items()})
