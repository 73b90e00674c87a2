"""The detector family (RT-DETR-style person or object detector) as a training task."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from posekit.config import PosekitConfig
from posekit.data.images import read_image
from posekit.data.transforms import normalize_image
from posekit.detector import onnx
from posekit.detector.augment import resize_image
from posekit.detector.coco_boxes import CocoBoxes, load_coco_boxes
from posekit.detector.dataset import DetectionDataset, pad_detection_batch, unpad_targets
from posekit.detector.losses import LossWeights, detection_loss
from posekit.detector.matcher import MatchCosts
from posekit.detector.model import DetectorOutputs, RTDetr, detector_size
from posekit.drawing import draw_boxes, side_by_side, write_jpeg
from posekit.engine.onnx_graph import OnnxGraph
from posekit.engine.optim import plain_param_groups
from posekit.engine.sampling import training_indices
from posekit.engine.summary import box_data_line
from posekit.errors import ConfigError
from posekit.evaluation import bbox_results, evaluate_bboxes, save_results
from posekit.layers.blocks import cpu_layout

DETECTOR_MODELS: dict[str, type[nn.Module]] = {"rtdetr": RTDetr}


def select_detections(
    logits: torch.Tensor,  # (Q, C) class logits of one image
    boxes: torch.Tensor,  # (Q, 4) cxcywh normalised
    image_hw: tuple[int, int],
    max_detections: int,
    score_threshold: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # (N, 4) xywh pixels, (N,) scores, (N,) classes
    """RT-DETR's post-processing (pure): the best ``max_detections`` (query, class) pairs by
    sigmoid score, boxes scaled to the image (the input was stretched to a square), no NMS."""
    scores = logits.float().sigmoid().flatten()
    count = min(max_detections, scores.numel())
    top_scores, top = scores.topk(count)
    classes = top % logits.shape[1]
    chosen = boxes.float()[top // logits.shape[1]]
    height, width = image_hw
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    centre_size = chosen * scale
    xywh = torch.cat([centre_size[:, :2] - centre_size[:, 2:] / 2, centre_size[:, 2:]], 1)
    keep = top_scores >= score_threshold
    return (
        xywh[keep].numpy().astype(np.float32),
        top_scores[keep].numpy().astype(np.float32),
        classes[keep].numpy().astype(np.int64),
    )


def resized_input(image: np.ndarray, input_size: int) -> torch.Tensor:  # (3, S, S)
    """The network input of an image: resized exactly as training samples are."""
    return torch.from_numpy(normalize_image(resize_image(image, (input_size, input_size))))


class DetectorTask:
    """Model, data, loss and evaluation of a detector run (see :class:`TrainingTask`).

    The classes are ``data.category_ids`` (default: the file's person category). Training
    writes the resolved ids and names into the config, so a checkpoint knows its classes.
    """

    family = "detector"
    listing = ("detections", "detections.json")
    gives_person_boxes = True  # person_boxes(model, image, threshold) before a pose model
    takes_person_boxes = False
    foreign_weight_readers = ()
    export_formats: ClassVar[dict[str, Callable[..., Any]]] = {}

    metric_name = "AP"

    @staticmethod
    def check_model_params(cfg: PosekitConfig) -> None:
        """``model.params`` checked before any data is read or made (one line per mistake)."""
        params = {k: v for k, v in cfg.model.params.items() if k != "num_classes"}
        detector_size(
            str(params.pop("size", "tiny")),
            {k: v for k, v in params.items() if k not in ("backbone", "backbone_weights")},
        )

    @staticmethod
    def input_size_settings(size: int) -> dict[str, Any]:
        """The config keys that make this family train and validate at ``size`` pixels
        (``posekit trials --budget-size``)."""
        return {"data.input_size": size}

    def __init__(self, cfg: PosekitConfig, device: torch.device) -> None:
        self.device = device
        self.train_data = self._load(cfg, "train")
        self.val_data = self._load(cfg, "val", self.train_data)
        known = self.train_data or self.val_data
        if known is not None:
            cfg = resolved_categories(cfg, known)
        self.cfg = cfg
        self.category_ids = cfg.data.category_ids or [1]
        self.category_names = cfg.detector.category_names or [
            "person" if c == 1 else f"category {c}" for c in self.category_ids
        ]  # names come with the data; a hand-written config may give ids alone
        self.model = build_detector_model(cfg, len(self.category_ids))
        self.input_size = cfg.data.input_size
        loss = cfg.detector.loss
        self.costs = MatchCosts(loss.match_class, loss.match_l1, loss.match_giou)
        self.weights = LossWeights(
            loss.class_weight, loss.l1_weight, loss.giou_weight, loss.classification
        )

    @staticmethod
    def _load(
        cfg: PosekitConfig, split: str, reference: CocoBoxes | None = None
    ) -> CocoBoxes | None:
        source = cfg.data.train if split == "train" else cfg.data.val
        if cfg.data.train_sets and split == "train":
            raise ConfigError(
                "data.train_sets is for keypoint families; give data.train for a detector"
            )
        if source.labels is None:
            return None
        if source.images is None:
            raise ConfigError(f"data.{split}.images is not set; give the images folder")
        ids = cfg.data.category_ids
        if ids is None and reference is not None:
            ids = list(reference.category_ids)
        return load_coco_boxes(source.labels, source.images, ids)

    def validation_data(self, cfg: PosekitConfig) -> CocoBoxes | None:
        """``data.val`` of ``cfg`` with this model's classes (``posekit val``)."""
        return self._load(cfg, "val")

    def data_lines(self) -> list[str]:
        """The start summary's lines about the training and validation data."""
        return [box_data_line("train", self.train_data), box_data_line("val", self.val_data)]

    def train_dataset(self, stage: int, input_size: int) -> DetectionDataset:
        """Stage 1: ``detector.augment`` (strong); stage 2: ``detector.augment_stage2``
        (weak); overfit: none. ``input_size`` follows progressive resizing."""
        if self.train_data is None:
            raise ConfigError("data.train.labels is not set; give the training labels")
        training = self.cfg.training
        params = self.cfg.detector.augment if stage == 1 else self.cfg.detector.augment_stage2
        pool = training_indices(
            len(self.train_data), training.subset_size, training.subset_seed, training.overfit
        )
        augment = None if training.overfit else params
        return DetectionDataset(self.train_data, input_size, augment, np.unique(pool))

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return pad_detection_batch(samples)

    def compute_loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        outputs: DetectorOutputs = model(cpu_layout(batch["image"]))
        return detection_loss(
            outputs.layers, unpad_targets(batch), self.costs, self.weights, outputs.encoder
        )

    def param_groups(self, base_lr: float, weight_decay: float) -> list[dict]:
        return plain_param_groups(self.model, base_lr, weight_decay)

    def has_validation(self) -> bool:
        return self.val_data is not None

    def checkpoint_extras(self) -> dict[str, Any]:
        return {"family": self.family, "category_ids": list(self.category_ids)}

    def detect(
        self, model: nn.Module, images: list[np.ndarray]
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per image: (boxes xywh pixels, scores, class indices)."""
        if not images:
            return []
        size = self.input_size
        batch = cpu_layout(torch.stack([resized_input(i, size) for i in images]).to(self.device))
        use_bf16 = self.cfg.inference.bf16 and batch.device.type == "cpu"
        with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=use_bf16):
            outputs: DetectorOutputs = model(batch)
        settings = self.cfg.detector
        return [
            select_detections(
                outputs.logits[i].cpu(),
                outputs.boxes[i].cpu(),
                image.shape[:2],
                settings.max_detections,
                settings.score_threshold,
            )
            for i, image in enumerate(images)
        ]

    def person_boxes(
        self, model: nn.Module, image: np.ndarray, score_threshold: float
    ) -> tuple[np.ndarray, np.ndarray]:  # (N, 4) xywh, (N,)
        """The boxes of the person class (or of class 0) scoring at least the threshold."""
        boxes, scores, classes = self.detect(model, [image])[0]
        names = [name.lower() for name in self.category_names]
        person = names.index("person") if "person" in names else 0
        keep = (classes == person) & (scores >= score_threshold)
        return boxes[keep], scores[keep]

    def evaluate(self, model: nn.Module, results_path: Path | None) -> dict[str, float]:
        assert self.val_data is not None
        return self.evaluate_on(model, self.val_data, results_path)

    def evaluate_on(
        self,
        model: nn.Module,
        data: CocoBoxes,
        results_path: Path | None,
        detections: str | None = None,
    ) -> dict[str, float]:
        """COCO bbox AP / AP50 / AP75 / APs / APm / APl and AR of the model on ``data``
        (identical to pycocotools). ``detections`` is for pose families and is ignored."""
        del detections
        results: list[dict[str, Any]] = []
        was_training = model.training
        model.eval()
        step = self.cfg.detector.eval_batch_size
        ids = np.asarray(self.category_ids, dtype=np.int64)
        for start in range(0, len(data.images), step):
            records = data.images[start : start + step]
            images = [read_image(data.image_path(r)) for r in records]
            for record, (boxes, scores, classes) in zip(
                records, self.detect(model, images), strict=True
            ):
                results.extend(bbox_results(record.image_id, boxes, scores, ids[classes]))
        model.train(was_training)
        if results_path is not None:
            save_results(results, results_path)
        return evaluate_bboxes(data.ground_truth(), results)

    def predict_drawn(
        self, model: nn.Module, image: np.ndarray, threshold: float = 0.3
    ) -> tuple[np.ndarray, list[dict]]:
        """``posekit predict`` with a detector alone: boxes scoring at least ``threshold``
        drawn and listed."""
        boxes, scores, classes = self.detect(model, [image])[0]
        keep = scores >= threshold
        found = [
            {
                "bbox": [round(float(v), 2) for v in box],
                "score": round(float(score), 4),
                "category_id": int(self.category_ids[c]),
                "category": self.category_names[c],
            }
            for box, score, c in zip(boxes[keep], scores[keep], classes[keep], strict=True)
        ]
        labels = [f"{d['category']} {d['score']:.2f}" for d in found]
        return draw_boxes(image, boxes[keep], labels), found

    def predict_listed(
        self, model: nn.Module, image: np.ndarray, box_threshold: float
    ) -> tuple[np.ndarray, list[dict[str, Any]]]:
        return self.predict_drawn(model, image, box_threshold)

    def onnx_graph(self, network: nn.Module) -> OnnxGraph:
        return onnx.onnx_graph(network, int(self.input_size))

    def onnx_metadata(self) -> dict[str, Any]:
        return onnx.onnx_metadata(self)

    def onnx_output_names(self) -> list[str]:
        return list(onnx.OUTPUT_NAMES)

    def onnx_input_hw(self) -> tuple[int, int] | None:
        return (int(self.input_size), int(self.input_size))

    def onnx_outputs(self, named: dict[str, torch.Tensor]) -> DetectorOutputs:
        return onnx.outputs_from_onnx(named)

    def draw_validation(self, model: nn.Module, folder: Path, count: int) -> None:
        """The first ``count`` validation images: labelled boxes beside the detections."""
        assert self.val_data is not None
        records = self.val_data.images[:count]
        images = [read_image(self.val_data.image_path(r)) for r in records]
        for record, image, (boxes, scores, _) in zip(
            records, images, self.detect(model, images), strict=True
        ):
            keep = scores >= 0.3
            labels = [f"{s:.2f}" for s in scores[keep]]
            drawn = draw_boxes(image, boxes[keep], labels)
            x0, y0, x1, y1 = np.asarray(record.boxes, np.float32).reshape(-1, 4).T
            names = [self.category_names[c] for c in record.labels]
            truth = draw_boxes(image, np.stack([x0, y0, x1 - x0, y1 - y0], axis=1), names)
            write_jpeg(folder / f"val_{record.image_id}.jpg", side_by_side(truth, drawn))


def resolved_categories(cfg: PosekitConfig, data: CocoBoxes) -> PosekitConfig:
    """``cfg`` with ``data.category_ids`` and ``detector.category_names`` set from the data."""
    data_section = cfg.data.model_copy(update={"category_ids": list(data.category_ids)})
    detector = cfg.detector.model_copy(update={"category_names": list(data.category_names)})
    return cfg.model_copy(update={"data": data_section, "detector": detector})


def build_detector_model(cfg: PosekitConfig, num_classes: int) -> nn.Module:
    if cfg.model.name not in DETECTOR_MODELS:
        raise ConfigError(
            f"model.name {cfg.model.name!r} is not a detector; known: {sorted(DETECTOR_MODELS)}"
        )
    params = dict(cfg.model.params)
    if "num_classes" in params:
        raise ConfigError(
            "model.params.num_classes: the classes come from data.category_ids; remove it"
        )
    return DETECTOR_MODELS[cfg.model.name](num_classes=num_classes, **params)
