"""The top-down family (SimpleBaseline-style heatmaps, SimCC) as a training task."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from posekit.config import PosekitConfig
from posekit.data.coco import CocoKeypoints
from posekit.data.ground_truth import (
    metric_name,
    pck_scores,
    score_keypoint_results,
    single_category_id,
)
from posekit.data.images import read_image
from posekit.data.sources import CombinedKeypoints, load_split, load_train_sets, run_schema
from posekit.drawing import draw_people, side_by_side, write_jpeg
from posekit.engine.onnx_graph import OnnxGraph
from posekit.engine.optim import plain_param_groups
from posekit.engine.sampling import stack_samples
from posekit.engine.summary import keypoint_data_line
from posekit.errors import ConfigError, check_parameters
from posekit.evaluation import keypoint_results, save_results
from posekit.layers.blocks import cpu_layout
from posekit.people import People, people_to_json
from posekit.schema import KeypointSchema
from posekit.topdown import onnx
from posekit.topdown.dataset import (
    TopDownDataset,
    TopDownSpec,
    augment_params,
    count_people,
)
from posekit.topdown.decode import oks_nms, rescore
from posekit.topdown.detections import load_detections
from posekit.topdown.inference import predict_boxes
from posekit.topdown.loss import topdown_loss
from posekit.topdown.model import TopDownOutputs, TopDownPoseNet

TOPDOWN_MODELS: dict[str, type[nn.Module]] = {"topdown": TopDownPoseNet}

Boxes = tuple[np.ndarray, np.ndarray]  # (M, 4) xywh, (M,) scores


def topdown_model_class(cfg: PosekitConfig) -> Any:
    """``model.name``'s network class, with ``model.params`` checked against it (one line
    per mistake; the keypoint count comes from the schema)."""
    if cfg.model.name not in TOPDOWN_MODELS:
        raise ConfigError(
            f"model.name {cfg.model.name!r} is not a top-down model; "
            f"known: {sorted(TOPDOWN_MODELS)}"
        )
    factory = TOPDOWN_MODELS[cfg.model.name]
    check_parameters(factory, cfg.model.params, "model.params", ("num_keypoints",))
    return factory


def build_topdown_model(cfg: PosekitConfig, schema: KeypointSchema) -> nn.Module:
    return topdown_model_class(cfg)(num_keypoints=schema.num_keypoints, **cfg.model.params)


def topdown_spec(cfg: PosekitConfig, model: nn.Module) -> TopDownSpec:
    height, width = model.input_size
    stride = int(getattr(model, "stride", 4))
    settings = cfg.topdown
    return TopDownSpec(
        input_hw=(height, width),
        head=model.head_kind,
        heatmap_hw=(height // stride, width // stride),
        heatmap_sigma=settings.heatmap_sigma,
        simcc_split_ratio=float(model.simcc_split_ratio),
        simcc_sigma=settings.simcc_sigma,
        bbox_padding=settings.bbox_padding,
    )


class TopDownTask:
    """Model, data, loss and evaluation of a top-down run (see :class:`TrainingTask`)."""

    family = "topdown"
    listing = ("people", "people.json")
    gives_person_boxes = False
    takes_person_boxes = True  # predict_people(model, image, boxes) after a detector
    foreign_weight_readers = ()
    export_formats: ClassVar[dict[str, Callable[..., Any]]] = {}

    @staticmethod
    def check_model_params(cfg: PosekitConfig) -> None:
        """``model.params`` checked before any data is read or made (one line per mistake)."""
        topdown_model_class(cfg)

    @staticmethod
    def input_size_settings(size: int) -> dict[str, Any]:
        """The config keys that make this family train and validate at ``size`` pixels
        (``posekit trials --budget-size``)."""
        del size  # the crop size is the model's (model.params.input_size)
        return {}

    def __init__(self, cfg: PosekitConfig, device: torch.device) -> None:
        self.cfg = cfg
        self.device = device
        self.schema = run_schema(cfg)
        self.model = build_topdown_model(cfg, self.schema)
        self.spec = topdown_spec(cfg, self.model)
        self.flip_index = self.schema.flip_index()
        self.train_data: CombinedKeypoints | None = load_train_sets(
            cfg, self.schema, sizes_of=count_people
        )
        self.val_data = load_split(cfg, "val", self.schema)
        self.metric_name = metric_name(self.schema, self.val_data)

    def data_lines(self) -> list[str]:
        """The start summary's lines about the training and validation data."""
        train = self.train_data.sets if self.train_data is not None else []
        val = [self.val_data] if self.val_data is not None else []
        return [keypoint_data_line("train", train), keypoint_data_line("val", val)]

    def train_dataset(self, stage: int, input_size: int) -> TopDownDataset:
        """Stage 1 uses ``topdown.augment``, stage 2 ``topdown.augment_stage2``; overfit none.
        (The crop size is the model's ``input_size``; ``input_size`` here is bottom-up's.)"""
        if self.train_data is None:
            raise ConfigError("data.train.labels (or data.train_sets) is not set; give labels")
        ranges = self.cfg.topdown.augment if stage == 1 else self.cfg.topdown.augment_stage2
        augment = None if self.cfg.training.overfit else augment_params(ranges)
        return TopDownDataset(self.train_data, self.schema, self.spec, augment)

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return stack_samples(samples)

    def compute_loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        outputs = model(cpu_layout(batch["image"]))
        return topdown_loss(outputs, batch, self.cfg.topdown.simcc_beta)

    def param_groups(self, base_lr: float, weight_decay: float) -> list[dict]:
        return plain_param_groups(self.model, base_lr, weight_decay)

    def has_validation(self) -> bool:
        return self.val_data is not None

    def checkpoint_extras(self) -> dict[str, Any]:
        return {"schema": self.schema.to_dict(), "family": self.family}

    def predict_people(
        self,
        model: nn.Module,
        image: np.ndarray,
        boxes: Boxes,
        category_ids: np.ndarray | None = None,  # (M,) the boxes' categories, where known
    ) -> People:
        """Keypoints in each box, rescored, after OKS-NMS."""
        box_array, box_scores = boxes
        if len(box_array) == 0:
            count = self.schema.num_keypoints
            empty = np.zeros(0, np.float32)
            return People(np.zeros((0, count, 3), np.float32), empty, np.zeros((0, 4), np.float32))
        keypoints = predict_boxes(
            model, image, box_array, self.spec, self.cfg.topdown, self.flip_index, self.device
        )
        settings = self.cfg.topdown
        scores = rescore(box_scores, keypoints[..., 2], settings.keypoint_score_threshold)
        keep = np.arange(len(scores))
        if self.schema.has_sigmas and settings.oks_nms_threshold < 1:
            areas = box_array[:, 2] * box_array[:, 3]
            keep = oks_nms(
                keypoints, scores, areas, self.schema.sigmas_array(), settings.oks_nms_threshold
            )
        categories = None if category_ids is None else np.asarray(category_ids)[keep]
        return People(keypoints[keep], scores[keep].astype(np.float32), box_array[keep], categories)

    def predict(self, model: nn.Module, image: np.ndarray) -> People:
        """The whole image as one person box (``posekit predict`` without a detector)."""
        height, width = image.shape[:2]
        whole = np.array([[0, 0, width, height]], np.float32), np.ones(1, np.float32)
        return self.predict_people(model, image, whole)

    def predict_drawn(self, model: nn.Module, image: np.ndarray) -> tuple[np.ndarray, People]:
        with torch.no_grad():
            people = self.predict(model, image)
        return draw_people(image, people.keypoints, self.schema), people

    def evaluate(self, model: nn.Module, results_path: Path | None) -> dict[str, float]:
        assert self.val_data is not None
        return self.evaluate_on(model, self.val_data, results_path, self.cfg.data.val.detections)

    def evaluate_on(
        self,
        model: nn.Module,
        data: CocoKeypoints,
        results_path: Path | None,
        detections: str | None = None,
    ) -> dict[str, float]:
        """COCO keypoint AP on ``data`` with its ground-truth boxes, or with the person boxes
        of a ``detections`` results JSON (``topdown.box_score_threshold`` applied). A schema
        without sigmas gets PCK@0.2 of the box size on the ground-truth boxes instead."""
        boxes_of = ground_truth_boxes(data)
        if not data.schema.has_sigmas:
            return self.pck_on(model, data)
        categories_of: dict[int, np.ndarray | None] = {
            r.image_id: r.category_ids for r in data.images
        }
        if detections is not None:
            found = load_detections(detections, self.cfg.topdown.box_score_threshold)
            empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
            boxes_of = {r.image_id: found.get(r.image_id, empty) for r in data.images}
            categories_of = dict.fromkeys(categories_of)  # a detector's boxes: unknown
        fallback = single_category_id(data)
        results: list[dict[str, Any]] = []
        was_training = model.training
        model.eval()
        with torch.no_grad():
            for record in data.images:
                image = read_image(data.image_path(record))
                people = self.predict_people(
                    model, image, boxes_of[record.image_id], categories_of[record.image_id]
                )
                categories = people.category_ids
                if categories is None:
                    categories = np.full(len(people.scores), fallback or 1)
                results.extend(
                    keypoint_results(record.image_id, people.keypoints, people.scores, categories)
                )
        model.train(was_training)
        if results_path is not None:
            save_results(results, results_path)
        known = detections is None or fallback is not None
        return score_keypoint_results(data, results, use_categories=known)

    def pck_on(self, model: nn.Module, data: CocoKeypoints) -> dict[str, float]:
        """PCK (or MPII's PCKh) of each ground-truth person from the keypoints predicted in
        its box."""
        predictions, records = [], []
        for record in data.images:
            if not record.num_persons:
                continue
            image = read_image(data.image_path(record))
            keypoints = predict_boxes(
                model, image, record.boxes, self.spec, self.cfg.topdown, self.flip_index,
                self.device,
            )  # fmt: skip
            predictions.append(keypoints[..., :2])
            records.append(record)
        stacked = np.concatenate(predictions) if predictions else np.zeros((0, 0, 2), np.float32)
        return pck_scores(data, stacked, records)

    def validation_data(self, cfg: PosekitConfig) -> CocoKeypoints | None:
        """``data.val`` of ``cfg`` on this model's schema (``posekit val``)."""
        return load_split(cfg, "val", self.schema)

    def predict_listed(
        self, model: nn.Module, image: np.ndarray, box_threshold: float
    ) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """``posekit predict`` without a detector: the whole image as the person box."""
        del box_threshold
        drawn, people = self.predict_drawn(model, image)
        return drawn, people_to_json(people)

    def onnx_graph(self, network: nn.Module) -> OnnxGraph:
        return onnx.onnx_graph(network)

    def onnx_metadata(self) -> dict[str, Any]:
        return onnx.onnx_metadata(self)

    def onnx_output_names(self) -> list[str]:
        return onnx.output_names(self.spec.head)

    def onnx_input_hw(self) -> tuple[int, int] | None:
        return (int(self.spec.input_hw[0]), int(self.spec.input_hw[1]))

    def onnx_outputs(self, named: dict[str, torch.Tensor]) -> TopDownOutputs:
        return onnx.outputs_from_onnx(named)

    def draw_validation(self, model: nn.Module, folder: Path, count: int) -> None:
        """The first ``count`` validation images: the labelled people beside the keypoints
        predicted in their boxes."""
        assert self.val_data is not None
        boxes_of = ground_truth_boxes(self.val_data)
        for record in self.val_data.images[:count]:
            image = read_image(self.val_data.image_path(record))
            with torch.no_grad():
                people = self.predict_people(model, image, boxes_of[record.image_id])
            truth = draw_people(image, record.keypoints, self.schema)
            drawn = draw_people(image, people.keypoints, self.schema)
            write_jpeg(folder / f"val_{record.image_id}.jpg", side_by_side(truth, drawn))


def ground_truth_boxes(data: CocoKeypoints) -> dict[int, Boxes]:
    """Each image's labelled people's boxes, with score 1."""
    return {
        record.image_id: (
            np.asarray(record.boxes, np.float32).reshape(-1, 4),
            np.ones(record.num_persons, np.float32),
        )
        for record in data.images
    }
