"""Detector losses: focal loss values, zero box loss for perfect boxes, gradients."""

from __future__ import annotations

import math

import torch

from posekit.detector.losses import detection_loss, sigmoid_focal_loss


def test_focal_loss_matches_the_formula() -> None:
    logits = torch.tensor([2.0, -1.0])
    targets = torch.tensor([1.0, 0.0])
    p = torch.sigmoid(logits)
    expected = [
        0.25 * (1 - p[0]) ** 2 * -math.log(p[0]),
        0.75 * p[1] ** 2 * -math.log(1 - p[1]),
    ]
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets), torch.tensor(expected))


def test_perfect_boxes_cost_nothing_and_wrong_ones_learn() -> None:
    target = {"labels": torch.tensor([0]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.4]])}
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.4], [0.1, 0.1, 0.1, 0.1]]], requires_grad=True)
    logits = torch.tensor([[[4.0], [-4.0]]], requires_grad=True)
    perfect = detection_loss([(logits, boxes)], [target])
    assert perfect["l1"].item() == 0 and abs(perfect["giou"].item()) < 1e-6
    shifted = (boxes + torch.tensor([0.05, 0.0, 0.0, 0.0])).detach().requires_grad_(True)
    terms = detection_loss([(logits, shifted), (logits, shifted)], [target])
    assert {"loss", "focal", "l1", "giou", "focal_aux0", "l1_aux0", "giou_aux0"} <= set(terms)
    terms["loss"].backward()
    assert shifted.grad is not None and shifted.grad[0, 0, 0] > 0  # pushed back left
    assert terms["l1"].item() > 0
