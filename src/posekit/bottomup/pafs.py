"""Part affinity field targets (pure numpy, vectorised over people and limbs).

Channel ``2l`` holds the x component and ``2l + 1`` the y component of the unit vector from
the start of limb ``l`` (``limbs[l][0]``) to its end (``limbs[l][1]``). Geometry is in map
coordinates (input pixels / stride), with cell centres from
:func:`posekit.bottomup.heatmaps.cell_centres`. A cell belongs to a limb when its centre is
within ``limb_width`` cells of the limb's line (perpendicular distance) and its projection
on the limb lies between the ends extended by ``limb_width`` (a rectangle around the
segment). Where limbs of several people cover a cell the vectors are averaged: sum of the
unit vectors over the number of people covering it (so the norm is at most 1). A limb is
drawn only when both ends are labelled (v > 0) and they are apart.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from posekit.bottomup.heatmaps import cell_centres

MIN_LIMB_LENGTH = 1e-6
"""Limbs shorter than this (in map cells) have no direction and are not drawn."""
_CHUNK_ELEMENTS = 1 << 21  # bound on people × limbs × H × W per vectorised step


def part_affinity_fields(
    keypoints: np.ndarray,  # (N, K, 3) x, y, v in input pixels
    limbs: Sequence[Sequence[int]] | np.ndarray,  # (L, 2) keypoint indices: start, end
    out_hw: tuple[int, int],
    stride: int,
    limb_width: float = 1.0,
) -> np.ndarray:  # (2L, H, W) float32
    """Part affinity fields of the given limbs at map size ``out_hw`` (H, W)."""
    points = np.asarray(keypoints, dtype=np.float32)
    if points.ndim != 3 or points.shape[2] < 3:
        raise ValueError(f"keypoints must be (N, K, 3) x, y, v; got shape {points.shape}")
    pairs = np.asarray(limbs, dtype=np.int64).reshape(-1, 2)
    height, width = int(out_hw[0]), int(out_hw[1])
    fields = np.zeros((2 * len(pairs), height, width), dtype=np.float32)
    if points.shape[0] == 0 or len(pairs) == 0 or height * width == 0:
        return fields
    drawn, start, unit, length = _limb_geometry(points, pairs, stride)  # (N, L) ... (N, L)
    xs = (cell_centres(width, stride) / stride).astype(np.float32)
    ys = (cell_centres(height, stride) / stride).astype(np.float32)
    count = np.zeros((len(pairs), height, width), dtype=np.float32)
    step = max(1, _CHUNK_ELEMENTS // (len(pairs) * height * width))  # people per step
    for first in range(0, points.shape[0], step):
        part = slice(first, first + step)
        chosen = np.nonzero(drawn[part])  # (person, limb) of the limbs to draw
        inside = np.zeros((len(drawn[part]), len(pairs), height, width), dtype=np.float32)
        inside[chosen] = _support(
            start[part][chosen], unit[part][chosen], length[part][chosen], xs, ys, limb_width
        )
        count += inside.sum(axis=0)
        fields[0::2] += np.einsum("nlhw,nl->lhw", inside, unit[part, :, 0])
        fields[1::2] += np.einsum("nlhw,nl->lhw", inside, unit[part, :, 1])
    np.maximum(count, 1.0, out=count)
    fields[0::2] /= count
    fields[1::2] /= count
    return fields


def _limb_geometry(
    points: np.ndarray, pairs: np.ndarray, stride: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per (person, limb): drawable? (N, L) bool, start in map coordinates (N, L, 2), unit
    direction (N, L, 2; zero where not drawn) and length in cells (N, L)."""
    begin, end = points[:, pairs[:, 0]], points[:, pairs[:, 1]]  # (N, L, 3)
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite points are not drawn
        start = begin[..., :2] / stride
        vector = end[..., :2] / stride - start
        length = np.sqrt((vector * vector).sum(axis=-1))
        drawn = (begin[..., 2] > 0) & (end[..., 2] > 0) & (length >= MIN_LIMB_LENGTH)
        drawn &= np.isfinite(length) & np.isfinite(start).all(axis=-1)
    unit = np.zeros_like(vector)
    unit[drawn] = vector[drawn] / length[drawn, None]
    return drawn, start, unit, length


def _support(
    start: np.ndarray,  # (M, 2)
    unit: np.ndarray,  # (M, 2)
    length: np.ndarray,  # (M,)
    xs: np.ndarray,  # (W,) cell centres in map coordinates
    ys: np.ndarray,  # (H,)
    limb_width: float,
) -> np.ndarray:  # (M, H, W) bool
    """Cells whose centre lies in the rectangle around each limb segment."""
    ux, uy = unit[:, 0, None, None], unit[:, 1, None, None]  # (M, 1, 1)
    px = xs - start[:, 0, None, None]  # (M, 1, W)
    py = ys[:, None] - start[:, 1, None, None]  # (M, H, 1)
    half = length[:, None, None] / 2
    along = np.add(px * ux, py * uy - half)  # signed distance along, from the midpoint
    np.abs(along, out=along)
    inside = along <= half + limb_width
    across = np.subtract(px * uy, py * ux)  # signed perpendicular distance
    np.abs(across, out=across)
    inside &= across <= limb_width
    return inside
