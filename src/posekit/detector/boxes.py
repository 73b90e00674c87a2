"""Box operations for the detector (no torchvision): conversions, areas, IoU and GIoU.

Boxes are ``(..., 4)`` tensors: ``xyxy`` corners, ``cxcywh`` centre and size (what DETR
predicts, normalised to [0, 1]), or COCO's ``xywh`` (top-left corner and size).
"""

from __future__ import annotations

import torch


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:  # (..., 4) -> (..., 4)
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:  # (..., 4) -> (..., 4)
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)


def xywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:  # (..., 4) -> (..., 4)
    x, y, w, h = boxes.unbind(-1)
    return torch.stack([x, y, x + w, y + h], dim=-1)


def box_area(boxes: torch.Tensor) -> torch.Tensor:  # (..., 4) xyxy -> (...)
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(
        min=0
    )


def box_iou(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(IoU, union) of every pair: ``a`` (N, 4), ``b`` (M, 4) xyxy -> two (N, M)."""
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    overlap = (bottom_right - top_left).clamp(min=0).prod(-1)
    union = box_area(a)[:, None] + box_area(b)[None, :] - overlap
    return overlap / union.clamp(min=torch.finfo(union.dtype).tiny), union


def generalized_box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """GIoU of every pair (Rezatofighi et al. 2019), in [-1, 1]: IoU minus the share of
    the smallest enclosing box that the union leaves empty. ``a`` (N, 4), ``b`` (M, 4)."""
    iou, union = box_iou(a, b)
    top_left = torch.minimum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.maximum(a[:, None, 2:], b[None, :, 2:])
    enclosing = (bottom_right - top_left).clamp(min=0).prod(-1)
    tiny = torch.finfo(enclosing.dtype).tiny
    return iou - (enclosing - union) / enclosing.clamp(min=tiny)
