"""Hungarian matching of DETR queries to ground-truth boxes (scipy's linear_sum_assignment).

The cost of giving query q the target t is ``class_weight * focal class cost + l1_weight *
L1(cxcywh) + giou_weight * (-GIoU)``, as in DETR / RT-DETR with focal classification.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from posekit.detector.boxes import cxcywh_to_xyxy, generalized_box_iou


@dataclass(frozen=True)
class MatchCosts:
    class_weight: float = 2.0
    l1_weight: float = 5.0
    giou_weight: float = 2.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0


def match_cost(
    logits: torch.Tensor,  # (Q, C) class logits of one image's queries
    boxes: torch.Tensor,  # (Q, 4) cxcywh, normalised
    target_labels: torch.Tensor,  # (T,) int64
    target_boxes: torch.Tensor,  # (T, 4) cxcywh, normalised
    costs: MatchCosts,
) -> torch.Tensor:  # (Q, T)
    """The matching cost of every (query, target) pair (pure, no gradient needed)."""
    probability = logits.sigmoid()[:, target_labels]
    alpha, gamma = costs.focal_alpha, costs.focal_gamma
    negative = (1 - alpha) * probability**gamma * -(1 - probability + 1e-8).log()
    positive = alpha * (1 - probability) ** gamma * -(probability + 1e-8).log()
    class_cost = positive - negative
    l1_cost = torch.cdist(boxes, target_boxes, p=1)
    giou = generalized_box_iou(cxcywh_to_xyxy(boxes), cxcywh_to_xyxy(target_boxes))
    return costs.class_weight * class_cost + costs.l1_weight * l1_cost - costs.giou_weight * giou


DEFAULT_COSTS = MatchCosts()


@torch.no_grad()
def hungarian_match(
    logits: torch.Tensor,  # (Q, C)
    boxes: torch.Tensor,  # (Q, 4)
    target_labels: torch.Tensor,  # (T,)
    target_boxes: torch.Tensor,  # (T, 4)
    costs: MatchCosts = DEFAULT_COSTS,
) -> tuple[np.ndarray, np.ndarray]:  # query indices (T,), target indices (T,)
    """The one-to-one assignment of minimum total cost (each target gets one query)."""
    if len(target_labels) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    cost = match_cost(logits.float(), boxes.float(), target_labels, target_boxes.float(), costs)
    queries, targets = linear_sum_assignment(cost.cpu().numpy())
    return queries.astype(np.int64), targets.astype(np.int64)
