"""Losses: a dict of named terms, whose sum is what gets minimised."""

from __future__ import annotations

import torch

from posekit.bottomup.lw_openpose import StageOutputs


def masked_l2(
    prediction: torch.Tensor, target: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Sum over pixels of ``weights * (prediction - target)^2 / 2``, divided by the batch size.

    ``weights`` broadcasts over channels ((B, 1, H, W): 1 = use, 0 = ignore), as in the
    original Lightweight OpenPose ``l2_loss``.
    """
    difference = prediction.to(target.dtype) - target  # float32 under bf16 autocast
    return (weights * difference * difference).sum() / 2 / prediction.shape[0]


def foreground_weights(
    weights: torch.Tensor,  # (B, 1, H, W) 1 = use, 0 = ignore
    heatmap_targets: torch.Tensor,  # (B, K + 1, H, W), last = background
    paf_targets: torch.Tensor,  # (B, 2L, H, W)
    factor: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel weights ``1 + factor * foreground``: for heatmaps the strongest keypoint target at
    the pixel (shared by all channels), for PAFs each channel's own |target|."""
    keypoints = heatmap_targets[:, :-1].amax(dim=1, keepdim=True)
    return weights * (1 + factor * keypoints), weights * (1 + factor * paf_targets.abs())


def bottomup_loss(
    outputs: StageOutputs,
    heatmap_targets: torch.Tensor,
    paf_targets: torch.Tensor,
    weights: torch.Tensor,
    heatmap_weight: float = 1.0,
    paf_weight: float = 1.0,
    foreground_weight: float = 0.0,
) -> dict[str, torch.Tensor]:
    """Masked L2 on every stage's heatmaps and PAFs; ``loss`` is the weighted sum of all terms.

    Returns ``stage{i}_heatmaps`` and ``stage{i}_pafs`` for each stage (counted from 1, as the
    original prints them) and the total ``loss``.
    """
    heatmap_pixels, paf_pixels = weights, weights
    if foreground_weight:
        heatmap_pixels, paf_pixels = foreground_weights(
            weights, heatmap_targets, paf_targets, foreground_weight
        )
    terms: dict[str, torch.Tensor] = {}
    for stage, (heatmaps, pafs) in enumerate(zip(outputs.heatmaps, outputs.pafs, strict=True), 1):
        terms[f"stage{stage}_heatmaps"] = masked_l2(heatmaps, heatmap_targets, heatmap_pixels)
        terms[f"stage{stage}_pafs"] = masked_l2(pafs, paf_targets, paf_pixels)
    total = sum(
        (heatmap_weight if name.endswith("heatmaps") else paf_weight) * value
        for name, value in terms.items()
    )
    terms["loss"] = total  # type: ignore[assignment]
    return terms
