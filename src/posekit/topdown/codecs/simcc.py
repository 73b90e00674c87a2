"""SimCC 1-D classification labels (Li et al. 2022; RTMPose, Jiang et al. 2023).

Each axis of the input is split into ``round(W * r)`` bins, ``r`` the split ratio; bin i
stands for input coordinate ``i / r`` (pixel-index convention, so pixel 0 is bin 0 and the
mirror x -> W - 1 - x is bin i -> (W - 1) * r - i). A keypoint's label on an axis is an
unnormalised Gaussian ``exp(-(i - x r)² / (2σ²))`` over the bins, ``σ`` in bins, sigma
given as (x, y). A model trained on these labels (a KL loss on ``softmax(β · logits)``)
predicts logits that match them up to an additive constant.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def encode_simcc(
    keypoints: np.ndarray,  # (K, 3) x, y, v in input pixels
    input_hw: tuple[int, int],
    split_ratio: float = 2.0,
    sigma: tuple[float, float] = (4.9, 5.66),  # (x, y) in bins
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # x (K, Wr), y (K, Hr), weights (K,) float32
    """Gaussian labels (peak 1) centred at ``x * r`` and ``y * r``.

    A keypoint's weight is 1 when it is labelled (``v > 0``) and its position lies in the
    input, x in [-0.5, W - 0.5) and y in [-0.5, H - 0.5); otherwise 0 with all-zero labels.
    """
    sigma_x, sigma_y = _check(split_ratio, sigma)
    points = np.asarray(keypoints, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] < 3:
        raise ValueError(f"keypoints must be (K, 3) x, y, v; got shape {points.shape}")
    height, width = int(input_hw[0]), int(input_hw[1])
    x, y = points[:, 0], points[:, 1]
    with np.errstate(invalid="ignore"):
        valid = (points[:, 2] > 0) & (x >= -0.5) & (x < width - 0.5)
        valid &= (y >= -0.5) & (y < height - 0.5)
    x_labels = _gaussians(np.where(valid, x, 0.0) * split_ratio, _bins(width, split_ratio), sigma_x)
    y_labels = _gaussians(
        np.where(valid, y, 0.0) * split_ratio, _bins(height, split_ratio), sigma_y
    )
    x_labels[~valid] = 0.0
    y_labels[~valid] = 0.0
    return x_labels, y_labels, valid.astype(np.float32)


def decode_simcc(
    x_logits: np.ndarray,  # (N, K, Wr); a torch tensor is converted
    y_logits: np.ndarray,  # (N, K, Hr)
    split_ratio: float = 2.0,
    beta: float = 10.0,
    sigma: tuple[float, float] = (4.9, 5.66),  # (x, y) in bins, those of the labels
) -> tuple[np.ndarray, np.ndarray]:  # keypoints (N, K, 2) float32 input px, scores (N, K)
    """Keypoint positions in input pixels and scores in [0, 1].

    Position: per axis the argmax bin, refined by the vertex of the parabola through it and
    its two neighbours (on the logits, so an additive constant does not matter; skipped at
    the ends or where not concave), divided by ``split_ratio``.

    Score: per axis the peak of ``softmax(β · logits)`` over the peak of
    ``softmax(β · label)`` for an ideal label of that sigma and length, centred on a bin
    (what a perfect prediction reaches), clipped to [0, 1]; the smaller of the two axes.
    A perfect prediction scores about 1 (0.95 or more, from sub-bin offsets) and flat
    logits about 0 (``1 / bins`` over the ideal peak).
    """
    sigma_x, sigma_y = _check(split_ratio, sigma)
    x_values, y_values = _to_numpy(x_logits), _to_numpy(y_logits)
    if x_values.ndim != 3 or y_values.ndim != 3 or x_values.shape[:2] != y_values.shape[:2]:
        raise ValueError(
            f"logits must be (N, K, Wr) and (N, K, Hr); got {x_values.shape}, {y_values.shape}"
        )
    x, x_score = _decode_axis(x_values, beta, sigma_x)
    y, y_score = _decode_axis(y_values, beta, sigma_y)
    points = np.stack([x, y], axis=-1) / split_ratio
    return points.astype(np.float32), np.minimum(x_score, y_score).astype(np.float32)


def _check(split_ratio: float, sigma: tuple[float, float]) -> tuple[float, float]:
    if not split_ratio > 0:
        raise ValueError(f"split_ratio must be > 0, got {split_ratio}")
    sigma_x, sigma_y = (float(s) for s in sigma)
    if not (sigma_x > 0 and sigma_y > 0):
        raise ValueError(f"sigma must be > 0, got {sigma}")
    return sigma_x, sigma_y


def _bins(length: int, split_ratio: float) -> int:
    return round(length * split_ratio)


def _gaussians(
    centres: np.ndarray,  # (K,) in bins
    bins: int,
    sigma: float,
) -> np.ndarray:  # (K, bins) float32
    offsets = np.arange(bins, dtype=np.float64) - centres[:, None]
    return np.exp(offsets * offsets * (-0.5 / (sigma * sigma))).astype(np.float32)


def _to_numpy(values: Any) -> np.ndarray:
    """A numpy view of an array, or a copy of a (possibly CUDA, half) torch tensor."""
    if hasattr(values, "detach"):
        return values.detach().float().cpu().numpy()
    return np.asarray(values)


def _decode_axis(
    logits: np.ndarray,  # (N, K, L)
    beta: float,
    sigma: float,
) -> tuple[np.ndarray, np.ndarray]:  # positions (N, K) in bins, scores (N, K)
    values = logits.astype(np.float64, copy=False)
    length = values.shape[-1]
    if length == 0:
        raise ValueError("logits have no bins")
    best = values.argmax(axis=-1)  # (N, K)
    peak = np.take_along_axis(values, best[..., None], axis=-1)  # (N, K, 1)
    left = np.take_along_axis(values, np.maximum(best - 1, 0)[..., None], axis=-1)
    right = np.take_along_axis(values, np.minimum(best + 1, length - 1)[..., None], axis=-1)
    curvature = (left - 2 * peak + right)[..., 0]
    ok = (best > 0) & (best < length - 1) & (curvature < 0)
    offset = 0.5 * (left - right)[..., 0] / np.where(ok, curvature, -1.0)
    positions = best + np.where(ok, np.clip(offset, -0.5, 0.5), 0.0)
    # peak of softmax(beta * logits) = 1 / sum(exp(beta * (logits - max)))
    softmax_peak = 1.0 / np.exp(beta * (values - peak)).sum(axis=-1)
    return positions, np.clip(softmax_peak / _ideal_peak(length, beta, sigma), 0.0, 1.0)


def _ideal_peak(length: int, beta: float, sigma: float) -> float:
    """Peak of ``softmax(beta * label)`` for a label centred on the middle bin."""
    label = _gaussians(np.array([float(length // 2)]), length, sigma)[0].astype(np.float64)
    return float(1.0 / np.exp(beta * (label - 1.0)).sum())
