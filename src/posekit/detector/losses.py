"""Detector losses after matching: sigmoid focal classification, L1 and GIoU on boxes,
averaged over the number of targets, for the last decoder layer and every auxiliary one."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from posekit.detector.boxes import cxcywh_to_xyxy, generalized_box_iou
from posekit.detector.matcher import DEFAULT_COSTS, MatchCosts, hungarian_match


def sigmoid_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:  # same shape as logits
    """Lin et al. 2017, element-wise: ``-alpha_t (1 - p_t)^gamma log(p_t)``."""
    probability = logits.sigmoid()
    cross_entropy = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = probability * targets + (1 - probability) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return alpha_t * (1 - p_t) ** gamma * cross_entropy


def layer_loss(
    logits: torch.Tensor,  # (B, Q, C)
    boxes: torch.Tensor,  # (B, Q, 4) cxcywh
    targets: list[dict[str, torch.Tensor]],  # per image: "labels" (T,), "boxes" (T, 4) cxcywh
    costs: MatchCosts,
) -> dict[str, torch.Tensor]:
    """Focal, L1 and GIoU terms of one decoder layer's predictions, matched one-to-one."""
    one_hot = torch.zeros_like(logits, dtype=torch.float32)
    predicted, wanted = [], []
    for image, target in enumerate(targets):
        queries, matched = hungarian_match(
            logits[image], boxes[image], target["labels"], target["boxes"], costs
        )
        one_hot[image, queries, target["labels"][matched]] = 1.0
        predicted.append(boxes[image, queries])
        wanted.append(target["boxes"][matched])
    count = max(1.0, float(sum(len(t["labels"]) for t in targets)))
    focal = sigmoid_focal_loss(logits.float(), one_hot, costs.focal_alpha, costs.focal_gamma)
    matched_boxes, target_boxes = torch.cat(predicted).float(), torch.cat(wanted).float()
    l1 = F.l1_loss(matched_boxes, target_boxes, reduction="sum")
    giou = torch.diagonal(
        generalized_box_iou(cxcywh_to_xyxy(matched_boxes), cxcywh_to_xyxy(target_boxes))
    )
    return {"focal": focal.sum() / count, "l1": l1 / count, "giou": (1 - giou).sum() / count}


def detection_loss(
    layers: list[tuple[torch.Tensor, torch.Tensor]],  # (logits, boxes) per decoder layer
    targets: list[dict[str, torch.Tensor]],
    costs: MatchCosts = DEFAULT_COSTS,
) -> dict[str, torch.Tensor]:
    """Weighted terms of every layer (the last one plus the auxiliary ones); ``loss`` is their
    sum, weighted like the matching costs."""
    terms: dict[str, torch.Tensor] = {}
    total = torch.zeros(())
    for index, (logits, boxes) in enumerate(layers):
        layer = layer_loss(logits, boxes, targets, costs)
        suffix = "" if index == len(layers) - 1 else f"_aux{index}"
        for name, value in layer.items():
            terms[name + suffix] = value
        total = total + (
            costs.class_weight * layer["focal"]
            + costs.l1_weight * layer["l1"]
            + costs.giou_weight * layer["giou"]
        )
    return {"loss": total, **terms}
