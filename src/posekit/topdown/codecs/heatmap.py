"""MSRA Gaussian heatmaps with UDP coordinate mapping and DARK sub-pixel decoding.

- UDP (Huang et al. 2020, unbiased data processing): input pixel 0 maps to heatmap cell 0
  and input pixel ``W - 1`` to cell ``w - 1``, so input x maps to ``x * (w-1)/(W-1)``
  (:func:`input_to_heatmap_scale`). Mirroring the input (x -> W - 1 - x) then mirrors the
  heatmap exactly (cell j -> w - 1 - j), which is what makes the flip test unbiased.
- A target heatmap is ``exp(-d² / (2σ²))``, ``d`` the distance in heatmap cells from a cell
  centre to the keypoint's sub-pixel position and ``σ`` in heatmap cells, cut to zero
  beyond ``WINDOW_SIGMAS * σ``.
- DARK (Zhang et al. 2020, distribution-aware coordinate representation): blur the
  predicted map, take its log and refine the argmax with one Newton step of the second
  order Taylor expansion around it.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from scipy.ndimage import convolve1d

WINDOW_SIGMAS = 3.0
"""Target Gaussians are cut to zero beyond this many sigmas from the keypoint."""

_LOG_FLOOR = 1e-10  # blurred values are clipped to this before the log
_MAX_OFFSET = 1.0  # DARK offsets are clipped to this many heatmap cells per axis


def input_to_heatmap_scale(
    input_hw: tuple[int, int], heatmap_hw: tuple[int, int]
) -> np.ndarray:  # (2,) float64 x, y factors
    """UDP factors ``((w-1)/(W-1), (h-1)/(H-1))`` from input pixels to heatmap cells."""
    (in_h, in_w), (out_h, out_w) = (int(v) for v in input_hw), (int(v) for v in heatmap_hw)
    if min(in_h, in_w, out_h, out_w) < 2:
        raise ValueError(f"sizes must be >= 2 pixels, got input {input_hw}, heatmap {heatmap_hw}")
    return np.array([(out_w - 1) / (in_w - 1), (out_h - 1) / (in_h - 1)], dtype=np.float64)


def encode_heatmaps(
    keypoints: np.ndarray,  # (K, 3) x, y, v in input pixels
    input_hw: tuple[int, int],
    heatmap_hw: tuple[int, int],
    sigma: float = 2.0,  # heatmap cells
) -> tuple[np.ndarray, np.ndarray]:  # heatmaps (K, h, w) float32, weights (K,) float32
    """One Gaussian heatmap per keypoint, peak 1 at its sub-pixel position (UDP mapping).

    A keypoint's weight is 1 when it is labelled (``v > 0``, finite x, y) and its Gaussian
    reaches the heatmap, i.e. some cell centre lies within ``WINDOW_SIGMAS * sigma`` of it;
    otherwise the weight is 0 and its map is all zero.
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    points = np.asarray(keypoints, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] < 3:
        raise ValueError(f"keypoints must be (K, 3) x, y, v; got shape {points.shape}")
    height, width = int(heatmap_hw[0]), int(heatmap_hw[1])
    centres = points[:, :2] * input_to_heatmap_scale(input_hw, heatmap_hw)  # (K, 2)
    labelled = (points[:, 2] > 0) & np.isfinite(centres).all(axis=1)  # (K,)
    centres = np.where(labelled[:, None], centres, 0.0)
    dx2 = (np.arange(width) - centres[:, :1]) ** 2  # (K, w)
    dy2 = (np.arange(height) - centres[:, 1:]) ** 2  # (K, h)
    d2 = dy2[:, :, None] + dx2[:, None, :]  # (K, h, w)
    inside = (d2 <= (WINDOW_SIGMAS * sigma) ** 2) & labelled[:, None, None]
    heatmaps = np.where(inside, np.exp(d2 * (-0.5 / (sigma * sigma))), 0.0).astype(np.float32)
    weights = inside.any(axis=(1, 2)).astype(np.float32)
    return heatmaps, weights


def decode_heatmaps(
    heatmaps: np.ndarray,  # (N, K, h, w) float; a torch tensor is converted
    input_hw: tuple[int, int],
    blur_kernel: int = 11,
    *,
    refine: bool = True,
) -> tuple[np.ndarray, np.ndarray]:  # keypoints (N, K, 2) float32 input px, scores (N, K)
    """Keypoint positions in input pixels and scores (each map's maximum).

    Each position is the map's argmax, refined with DARK (``refine``; ``blur_kernel`` odd,
    1 for no blur), then mapped to input pixels with the UDP scale. Refinement is skipped
    for a peak on the map's border or where the log-map is not concave there.
    """
    maps = _to_numpy(heatmaps).astype(np.float64, copy=False)
    if maps.ndim != 4:
        raise ValueError(f"heatmaps must be (N, K, h, w); got shape {maps.shape}")
    num, types, height, width = maps.shape
    flat = maps.reshape(num * types, height * width)
    best = flat.argmax(axis=1) if flat.size else np.zeros(num * types, dtype=np.int64)
    scores = flat[np.arange(num * types), best] if flat.size else np.zeros(num * types)
    cells = np.stack([best % max(width, 1), best // max(width, 1)], axis=1).astype(np.float64)
    if refine and flat.size:
        blurred = _blur_keep_max(maps.reshape(num * types, height, width), blur_kernel)
        cells += _dark_offsets(np.log(np.maximum(blurred, _LOG_FLOOR)), best)
    points = cells / input_to_heatmap_scale(input_hw, (height, width))
    return (
        points.reshape(num, types, 2).astype(np.float32),
        scores.reshape(num, types).astype(np.float32),
    )


def _to_numpy(values: Any) -> np.ndarray:
    """A numpy view of an array, or a copy of a (possibly CUDA, half) torch tensor."""
    if hasattr(values, "detach"):
        return values.detach().float().cpu().numpy()
    return np.asarray(values)


def _blur_keep_max(maps: np.ndarray, kernel: int) -> np.ndarray:  # (M, h, w) -> (M, h, w)
    """Gaussian blur (zero outside the map, cv2's sigma for ``kernel``), rescaled so each
    map keeps its maximum."""
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"blur_kernel must be odd and >= 1, got {kernel}")
    if kernel == 1:
        return maps
    weights = cv2.getGaussianKernel(kernel, 0).ravel()
    blurred = convolve1d(maps, weights, axis=-1, mode="constant", cval=0.0)
    blurred = convolve1d(blurred, weights, axis=-2, mode="constant", cval=0.0)
    old_max, new_max = maps.max(axis=(1, 2)), blurred.max(axis=(1, 2))
    ratio = np.divide(old_max, new_max, out=np.ones_like(old_max), where=new_max > 0)
    return blurred * ratio[:, None, None]


def _dark_offsets(
    log_maps: np.ndarray,  # (M, h, w) log of the (blurred) maps
    best: np.ndarray,  # (M,) flat argmax indices
) -> np.ndarray:  # (M, 2) x, y offsets in heatmap cells
    """One Newton step ``-H⁻¹ g`` on the log-map from each argmax (central differences);
    zero on the border or where the Hessian is not negative definite."""
    count, height, width = log_maps.shape
    if height < 3 or width < 3:
        return np.zeros((count, 2))
    x, y = best % width, best // width
    interior = (x >= 1) & (x <= width - 2) & (y >= 1) & (y <= height - 2)
    x, y, m = np.clip(x, 1, width - 2), np.clip(y, 1, height - 2), np.arange(count)

    def at(dy: int, dx: int) -> np.ndarray:  # (M,)
        return log_maps[m, y + dy, x + dx]

    centre = at(0, 0)
    gx, gy = 0.5 * (at(0, 1) - at(0, -1)), 0.5 * (at(1, 0) - at(-1, 0))
    hxx = at(0, 1) - 2 * centre + at(0, -1)
    hyy = at(1, 0) - 2 * centre + at(-1, 0)
    hxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
    det = hxx * hyy - hxy * hxy
    ok = interior & (hxx < 0) & (det > 1e-12)
    safe = np.where(ok, det, 1.0)
    offsets = np.stack([hxy * gy - hyy * gx, hxy * gx - hxx * gy], axis=1) / safe[:, None]
    return np.where(ok[:, None], np.clip(offsets, -_MAX_OFFSET, _MAX_OFFSET), 0.0)
