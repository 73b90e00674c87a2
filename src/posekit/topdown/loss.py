"""Losses of the top-down models: a dict of named terms, ``loss`` is what gets minimised.

All terms are computed in float32, with autocast off, whatever the dtype of the predictions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from posekit.topdown.model import TopDownOutputs


def heatmap_loss(
    pred: torch.Tensor,  # (N, K, h, w)
    target: torch.Tensor,  # (N, K, h, w)
    weights: torch.Tensor,  # (N, K), 0 = keypoint not labelled
) -> dict[str, torch.Tensor]:
    """Mean over all elements of ``(pred - target)^2 * weight`` (MMPose ``KeypointMSELoss``
    with ``use_target_weight=True``). Returns ``heatmap`` and ``loss`` (the same value)."""
    with torch.autocast(pred.device.type, enabled=False):
        difference = pred.float() - target.float()
        value = (difference * difference * weights.float()[..., None, None]).mean()
    return {"loss": value, "heatmap": value}


def simcc_kl(
    pred: torch.Tensor,  # (N, K, bins) logits
    target: torch.Tensor,  # (N, K, bins) e.g. Gaussian labels
    weights: torch.Tensor,  # (N, K)
    beta: float,
) -> torch.Tensor:
    """``KL(softmax(beta * target) || softmax(beta * pred))`` summed over the bins, times the
    keypoint weight, averaged over the N x K keypoints."""
    log_q = F.log_softmax(beta * pred.float(), dim=-1)
    log_p = F.log_softmax(beta * target.float(), dim=-1)
    kl = F.kl_div(log_q, log_p, reduction="none", log_target=True).sum(dim=-1)
    return (kl * weights.float()).mean()


def simcc_loss(
    pred_x: torch.Tensor,  # (N, K, Wx)
    pred_y: torch.Tensor,  # (N, K, Wy)
    target_x: torch.Tensor,
    target_y: torch.Tensor,
    weights: torch.Tensor,  # (N, K)
    beta: float = 10.0,
) -> dict[str, torch.Tensor]:
    """SimCC classification loss (MMPose ``KLDiscretLoss`` with ``beta=10``,
    ``label_softmax=True``, ``use_target_weight=True``), one term per axis; ``loss = x + y``.

    Unlike MMPose, which averages the KL over the bins and sums over the batch (then divides by
    K), each keypoint's KL is summed over the bins and averaged over N x K: a true divergence
    whose scale does not depend on the batch size or bin count.
    """
    with torch.autocast(pred_x.device.type, enabled=False):
        x = simcc_kl(pred_x, target_x, weights, beta)
        y = simcc_kl(pred_y, target_y, weights, beta)
    return {"loss": x + y, "simcc_x": x, "simcc_y": y}


def topdown_loss(
    outputs: TopDownOutputs, batch: dict[str, torch.Tensor], beta: float = 10.0
) -> dict[str, torch.Tensor]:
    """The loss of whichever head produced ``outputs``: ``batch`` holds ``heatmaps`` and
    ``weights`` for the heatmap head, ``simcc_x``, ``simcc_y`` and ``weights`` for SimCC."""
    if outputs.heatmaps is not None:
        require(batch, ("heatmaps", "weights"))
        return heatmap_loss(outputs.heatmaps, batch["heatmaps"], batch["weights"])
    if outputs.simcc_x is not None and outputs.simcc_y is not None:
        require(batch, ("simcc_x", "simcc_y", "weights"))
        return simcc_loss(
            outputs.simcc_x,
            outputs.simcc_y,
            batch["simcc_x"],
            batch["simcc_y"],
            batch["weights"],
            beta,
        )
    raise ValueError("TopDownOutputs holds neither heatmaps nor simcc_x + simcc_y")


def require(batch: dict[str, torch.Tensor], keys: tuple[str, ...]) -> None:
    missing = [key for key in keys if key not in batch]
    if missing:
        raise KeyError(f"the batch lacks {missing} (it has {sorted(batch)})")
