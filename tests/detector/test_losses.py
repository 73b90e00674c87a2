"""Detector losses: focal loss values, zero box loss for perfect boxes, gradients."""

from __future__ import annotations

import math

import torch

from posekit.detector.losses import (
    LossWeights,
    detection_loss,
    sigmoid_focal_loss,
    varifocal_loss,
)

FOCAL = LossWeights(classification="focal")


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
    perfect = detection_loss([(logits, boxes)], [target], weights=FOCAL)
    assert perfect["l1"].item() == 0 and abs(perfect["giou"].item()) < 1e-6
    shifted = (boxes + torch.tensor([0.05, 0.0, 0.0, 0.0])).detach().requires_grad_(True)
    terms = detection_loss([(logits, shifted), (logits, shifted)], [target], weights=FOCAL)
    assert {"loss", "focal", "l1", "giou", "focal_aux0", "l1_aux0", "giou_aux0"} <= set(terms)
    terms["loss"].backward()
    assert shifted.grad is not None and shifted.grad[0, 0, 0] > 0  # pushed back left
    assert terms["l1"].item() > 0


def test_varifocal_loss_matches_the_formula() -> None:
    logits = torch.tensor([1.0, -2.0])
    quality = torch.tensor([0.6, 0.0])
    p = torch.sigmoid(logits)
    expected = [
        -0.6 * (0.6 * math.log(p[0]) + 0.4 * math.log(1 - p[0])),
        -0.75 * p[1] ** 2 * math.log(1 - p[1]),
    ]
    torch.testing.assert_close(varifocal_loss(logits, quality), torch.tensor(expected))


def test_varifocal_targets_are_the_matched_iou_and_encoder_terms_are_named() -> None:
    target = {"labels": torch.tensor([0]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.4]])}
    boxes = torch.tensor([[[0.55, 0.5, 0.2, 0.4], [0.1, 0.1, 0.1, 0.1]]], requires_grad=True)
    logits = torch.zeros(1, 2, 1, requires_grad=True)
    terms = detection_loss([(logits, boxes)], [target], encoder=(logits, boxes))
    assert {"loss", "vfl", "l1", "giou", "vfl_enc", "l1_enc", "giou_enc"} == set(terms)
    iou = 0.15 * 0.4 / (2 * 0.2 * 0.4 - 0.15 * 0.4)  # boxes overlap 0.15 of 0.2 in x
    p = 0.5
    expected = -iou * (iou * math.log(p) + (1 - iou) * math.log(1 - p))  # matched query
    expected += -0.75 * p**2 * math.log(1 - p)  # the other query, a negative
    assert abs(terms["vfl"].item() - expected) < 1e-5
    terms["loss"].backward()
    assert logits.grad is not None and logits.grad[0, 0, 0] < 0  # the matched score rises
