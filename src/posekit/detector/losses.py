"""Detector losses after matching: sigmoid focal or varifocal classification, L1 and GIoU on
boxes, averaged over the number of targets, for the last decoder layer, every auxiliary one
and the encoder's selected proposals."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from posekit.detector.boxes import box_iou, cxcywh_to_xyxy, generalized_box_iou
from posekit.detector.matcher import DEFAULT_COSTS, MatchCosts, hungarian_match


@dataclass(frozen=True)
class LossWeights:
    """Weights of the terms in ``loss`` (RT-DETR / D-FINE: class 1, L1 5, GIoU 2) and the
    classification loss: ``focal`` (Lin et al.) or ``varifocal`` (Zhang et al.; the class
    target of a matched query is its IoU, so scores rank boxes by quality)."""

    class_weight: float = 1.0
    l1_weight: float = 5.0
    giou_weight: float = 2.0
    classification: str = "varifocal"
    alpha: float = 0.75  # varifocal: weight of negatives (focal uses the matcher's alpha)
    gamma: float = 2.0


DEFAULT_WEIGHTS = LossWeights()


def sigmoid_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:  # same shape as logits
    """Lin et al. 2017, element-wise: ``-alpha_t (1 - p_t)^gamma log(p_t)``."""
    probability = logits.sigmoid()
    cross_entropy = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = probability * targets + (1 - probability) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return alpha_t * (1 - p_t) ** gamma * cross_entropy


def varifocal_loss(
    logits: torch.Tensor, quality: torch.Tensor, alpha: float = 0.75, gamma: float = 2.0
) -> torch.Tensor:  # same shape as logits
    """Zhang et al. 2021, element-wise: binary cross-entropy towards ``quality`` (the IoU of a
    matched query's class, 0 elsewhere), positives weighted by their quality and negatives by
    ``alpha p^gamma``."""
    probability = logits.sigmoid().detach()
    positive = (quality > 0).to(logits.dtype)
    weight = alpha * probability**gamma * (1 - positive) + quality * positive
    return F.binary_cross_entropy_with_logits(logits, quality, weight=weight, reduction="none")


def layer_loss(
    logits: torch.Tensor,  # (B, Q, C)
    boxes: torch.Tensor,  # (B, Q, 4) cxcywh
    targets: list[dict[str, torch.Tensor]],  # per image: "labels" (T,), "boxes" (T, 4) cxcywh
    costs: MatchCosts,
    weights: LossWeights = DEFAULT_WEIGHTS,
) -> dict[str, torch.Tensor]:
    """Classification, L1 and GIoU terms of one layer's predictions, matched one-to-one."""
    logits = logits.float()
    class_target = torch.zeros_like(logits)
    image_index, query_index, label_index = [], [], []
    predicted, wanted = [], []
    for image, target in enumerate(targets):
        queries, matched = hungarian_match(
            logits[image], boxes[image], target["labels"], target["boxes"], costs
        )
        image_index.append(torch.full((len(queries),), image, dtype=torch.long))
        query_index.append(torch.from_numpy(queries))
        label_index.append(target["labels"][matched].cpu())
        predicted.append(boxes[image, queries])
        wanted.append(target["boxes"][matched])
    count = max(1.0, float(sum(len(t["labels"]) for t in targets)))
    matched_boxes, target_boxes = torch.cat(predicted).float(), torch.cat(wanted).float()
    matched_xyxy, target_xyxy = cxcywh_to_xyxy(matched_boxes), cxcywh_to_xyxy(target_boxes)
    giou = torch.diagonal(generalized_box_iou(matched_xyxy, target_xyxy))
    device = logits.device
    where = tuple(torch.cat(i).to(device) for i in (image_index, query_index, label_index))
    if weights.classification == "varifocal":
        iou = torch.diagonal(box_iou(matched_xyxy.detach(), target_xyxy)[0])
        class_target[where] = iou.clamp(min=1e-6)
        classification = varifocal_loss(logits, class_target, weights.alpha, weights.gamma)
        name = "vfl"
    else:
        class_target[where] = 1.0
        classification = sigmoid_focal_loss(
            logits, class_target, costs.focal_alpha, costs.focal_gamma
        )
        name = "focal"
    l1 = F.l1_loss(matched_boxes, target_boxes, reduction="sum")
    return {
        name: classification.sum() / count,
        "l1": l1 / count,
        "giou": (1 - giou).sum() / count,
    }


def detection_loss(
    layers: list[tuple[torch.Tensor, torch.Tensor]],  # (logits, boxes) per decoder layer
    targets: list[dict[str, torch.Tensor]],
    costs: MatchCosts = DEFAULT_COSTS,
    weights: LossWeights = DEFAULT_WEIGHTS,
    encoder: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Weighted terms of every layer: the last one unsuffixed, the auxiliary ones ``_aux<i>``
    and the encoder proposals ``_enc``; ``loss`` is their weighted sum."""
    named = [("" if i == len(layers) - 1 else f"_aux{i}", pair) for i, pair in enumerate(layers)]
    if encoder is not None:
        named.append(("_enc", encoder))
    terms: dict[str, torch.Tensor] = {}
    total = torch.zeros(())
    for suffix, (logits, boxes) in named:
        layer = layer_loss(logits, boxes, targets, costs, weights)
        for name, value in layer.items():
            terms[name + suffix] = value
        classification = layer["vfl"] if "vfl" in layer else layer["focal"]
        total = total + (
            weights.class_weight * classification
            + weights.l1_weight * layer["l1"]
            + weights.giou_weight * layer["giou"]
        )
    return {"loss": total, **terms}
