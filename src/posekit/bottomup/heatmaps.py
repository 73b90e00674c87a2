"""Keypoint heatmap targets and loss-weight masks (pure numpy, vectorised).

Conventions shared with the decoder:

- Coordinates are input pixels with pixel centres at integer coordinates (as
  ``cv2.warpAffine`` assumes). Keypoints are (N, K, 3) arrays of x, y, v; ``v > 0`` is
  labelled (1 occluded, 2 visible), ``v == 0`` is not labelled and draws nothing.
- Map cell ``i`` at stride ``s`` covers input pixels ``i*s .. i*s + s - 1`` and so has its
  centre at input coordinate ``i * s + (s - 1) / 2`` (:func:`cell_centres`).
- A heatmap cell holds ``max over people of exp(-d² / (2σ²))``, ``d`` the distance in input
  pixels from the cell centre to the keypoint, ``σ`` in input pixels. Each Gaussian is cut
  to zero beyond ``WINDOW_SIGMAS * σ`` (values there are below exp(-4.5) ≈ 0.011), so only
  a window around each keypoint is computed. The last channel is the background,
  ``1 - max`` over the keypoint channels.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

WINDOW_SIGMAS = 3.0
"""Gaussians are computed, and non-zero, only within this many sigmas of the keypoint."""


def cell_centres(length: int, stride: int) -> np.ndarray:
    """(length,) float64 input-pixel coordinates of the centres of map cells 0..length-1."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    return np.arange(length, dtype=np.float64) * stride + (stride - 1) / 2.0


def gaussian_heatmaps(
    keypoints: np.ndarray,  # (N, K, 3) x, y, v in input pixels
    out_hw: tuple[int, int],
    stride: int,
    sigma: float = 7.0,
) -> np.ndarray:  # (K + 1, H, W) float32, last channel = background
    """Gaussian heatmaps for every keypoint type plus a background channel.

    ``out_hw`` is the map size (H, W); ``sigma`` is in input pixels. The value of a cell is
    the maximum over people of the Gaussian of the distance from its centre to the keypoint.
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    points = _as_keypoints(keypoints)
    num_types = points.shape[1]
    height, width = (int(out_hw[0]), int(out_hw[1]))
    heat = np.zeros((num_types + 1, height, width), dtype=np.float32)
    flat, values = _gaussian_windows(points, height, width, stride, float(sigma))
    if flat.size:
        np.maximum.at(heat.reshape(-1), flat, values)
    heat[num_types] = 1.0 - heat[:num_types].max(axis=0) if num_types else 1.0
    return heat


def _as_keypoints(keypoints: np.ndarray) -> np.ndarray:
    points = np.asarray(keypoints, dtype=np.float64)
    if points.ndim != 3 or points.shape[2] < 3:
        raise ValueError(f"keypoints must be (N, K, 3) x, y, v; got shape {points.shape}")
    return points


def _gaussian_windows(
    points: np.ndarray, height: int, width: int, stride: int, sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices into a (K + 1, H, W) array and their Gaussian values, all people at once."""
    radius = WINDOW_SIGMAS * sigma
    x, y = points[..., 0], points[..., 1]
    with np.errstate(invalid="ignore"):
        near = (
            (points[..., 2] > 0)
            & (x > -radius - stride)
            & (x < width * stride + radius)
            & (y > -radius - stride)
            & (y < height * stride + radius)
        )
    person, channel = np.nonzero(near)
    x, y = x[person, channel], y[person, channel]  # (M,)
    reach = math.ceil(radius / stride + 0.5)
    offsets = np.arange(-reach, reach + 1)
    half = (stride - 1) / 2.0
    cols = np.rint((x - half) / stride).astype(np.int64)[:, None] + offsets  # (M, R)
    rows = np.rint((y - half) / stride).astype(np.int64)[:, None] + offsets  # (M, R)
    col_ok = (cols >= 0) & (cols < width)
    row_ok = (rows >= 0) & (rows < height)
    dx2 = (cell_centres(width, stride)[np.clip(cols, 0, width - 1)] - x[:, None]) ** 2
    dy2 = (cell_centres(height, stride)[np.clip(rows, 0, height - 1)] - y[:, None]) ** 2
    d2 = dy2[:, :, None] + dx2[:, None, :]  # (M, R, R)
    keep = (d2 <= radius * radius) & row_ok[:, :, None] & col_ok[:, None, :]
    values = np.exp(d2[keep] * (-0.5 / (sigma * sigma))).astype(np.float32)
    flat = (channel[:, None, None] * height + rows[:, :, None]) * width + cols[:, None, :]
    return flat[keep], values


def mask_weights(
    ignore_mask: np.ndarray,  # (H_in, W_in) uint8/bool, non-zero = ignore
    stride: int,
    out_hw: tuple[int, int] | None = None,
    threshold: float | None = 0.5,
) -> np.ndarray:  # (H, W) float32, 1 = use in the loss, 0 = ignore
    """Loss weights at map resolution from an input-resolution ignore mask.

    Cell ``i`` covers the ``stride × stride`` input pixels ``i*s .. i*s + s - 1`` in each
    axis; its ignored fraction is the mean of the mask over that block (area downsampling).
    A cell is ignored (weight 0) when that fraction is ``>= threshold``; with
    ``threshold=None`` the weight is the used fraction ``1 - fraction`` (the original
    Lightweight OpenPose's INTER_AREA-resized mask). ``out_hw`` defaults to
    ``ceil(H_in / stride), ceil(W_in / stride)``; input pixels beyond the given mask (a
    partial last cell, or a larger ``out_hw``) count as used, pixels beyond ``out_hw``
    are dropped.
    """
    mask = np.asarray(ignore_mask)
    if mask.ndim != 2:
        raise ValueError(f"ignore_mask must be (H, W); got shape {mask.shape}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if out_hw is None:
        out_hw = (-(-mask.shape[0] // stride), -(-mask.shape[1] // stride))
    height, width = int(out_hw[0]), int(out_hw[1])
    canvas = np.zeros((height * stride, width * stride), dtype=np.float32)
    rows, cols = min(mask.shape[0], canvas.shape[0]), min(mask.shape[1], canvas.shape[1])
    canvas[:rows, :cols] = mask[:rows, :cols] > 0
    # an integer-factor INTER_AREA resize is the exact mean over each stride x stride block
    fraction = cv2.resize(canvas, (width, height), interpolation=cv2.INTER_AREA)
    if threshold is None:
        return (1.0 - fraction).astype(np.float32)
    return (fraction < threshold - 1e-6).astype(np.float32)  # tolerate rounding at ties
