"""Keypoint peaks from heatmaps, and flip-test helpers for heatmaps and PAFs (pure numpy).

Conventions (shared with :mod:`posekit.targets`):

- Pixel centres are at integer coordinates. Map cell ``i`` at stride ``s`` has its centre at
  input coordinate ``i * s + (s - 1) / 2``; peaks are returned in input pixels.
- A peak is a cell whose value is at least ``threshold`` and at least each of its 8
  neighbours, strictly above the 4 neighbours that come before it in raster order. Ties
  are so broken towards the first cell: two cells of equal value side by side (a keypoint
  half-way between two cell centres) give one peak, and a flat plateau gives at most one.
- Sub-pixel refinement fits a parabola through the logarithm of the peak and its two
  neighbours, separately along x and y (exact for a Gaussian sampled at cell centres, as
  the heatmap targets are), and clips the shift to half a cell. An axis is left unrefined
  at the map border, on a flat top, or where a neighbour is below 1% of the peak (a step,
  not a Gaussian). The score is the fitted maximum (the peak's height between cell
  centres, as the original reads it off a ×4 upsampled map), capped at ``max(1, cell
  value)`` since targets never exceed 1; without refinement it is the cell's value.

Flip test: maps computed on the horizontally mirrored image are mapped back with
:func:`flip_back_heatmaps` and :func:`flip_back_pafs`. The spatial mirror of a map is exact
when the input width is a multiple of the stride (input ``x -> W - 1 - x`` is map cell
``i -> w - 1 - i``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_MIN_NEIGHBOUR_RATIO = 0.01  # below this fraction of the peak, a neighbour stops refinement
_MAX_SHIFT = 0.5  # cells
_EARLIER = ((-1, -1), (-1, 0), (-1, 1), (0, -1))  # neighbours before a cell in raster order
_LATER = ((0, 1), (1, -1), (1, 0), (1, 1))


def find_peaks(
    heatmaps: np.ndarray,  # (K, H, W) keypoint channels only (no background)
    stride: int,
    threshold: float = 0.1,
    refine: bool = True,
) -> list[np.ndarray]:  # K arrays (M_k, 3) float32: x, y in input pixels, score
    """Local maxima of every keypoint heatmap, in input pixels, one array per keypoint type.

    Peaks of a type come in raster order of their cells.
    """
    maps = np.asarray(heatmaps, dtype=np.float32)
    if maps.ndim != 3:
        raise ValueError(f"heatmaps must be (K, H, W); got shape {maps.shape}")
    if maps.shape[0] == 0:
        return []
    padded = np.pad(maps, ((0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    channel, row, col = np.nonzero(_local_maxima(maps, padded, threshold))
    x, y = col.astype(np.float64), row.astype(np.float64)
    score = maps[channel, row, col].astype(np.float64)
    if refine and channel.size:
        shift_x, gain_x = _log_parabola_vertex(padded, channel, row + 1, col + 1, axis=2)
        shift_y, gain_y = _log_parabola_vertex(padded, channel, row + 1, col + 1, axis=1)
        fitted = score * np.exp(gain_x + gain_y)
        x, y, score = x + shift_x, y + shift_y, np.minimum(fitted, np.maximum(score, 1.0))
    half = (stride - 1) / 2.0
    peaks = np.stack([x * stride + half, y * stride + half, score], axis=1)
    counts = np.bincount(channel, minlength=maps.shape[0])
    return np.split(peaks.astype(np.float32), np.cumsum(counts)[:-1])


def _local_maxima(maps: np.ndarray, padded: np.ndarray, threshold: float) -> np.ndarray:
    """(K, H, W) bool: 3×3 non-maximum suppression with raster-order tie breaking."""
    height, width = maps.shape[1:]
    keep = maps >= threshold
    for offsets, compare in ((_EARLIER, np.greater), (_LATER, np.greater_equal)):
        for dy, dx in offsets:
            neighbour = padded[:, 1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
            keep &= compare(maps, neighbour)
    return keep


def _log_parabola_vertex(
    padded: np.ndarray, channel: np.ndarray, row: np.ndarray, col: np.ndarray, axis: int
) -> tuple[np.ndarray, np.ndarray]:  # (M,) shift in cells, (M,) log-value gain there
    """Vertex of the parabola through log values at -1, 0, +1 cells along x (axis=2) or y.

    The shift is clipped to half a cell; it is 0 at map borders, on flat tops and next to a
    neighbour below ``_MIN_NEIGHBOUR_RATIO`` of the peak.
    """
    step_row, step_col = (1, 0) if axis == 1 else (0, 1)
    before = padded[channel, row - step_row, col - step_col]
    centre = padded[channel, row, col]
    after = padded[channel, row + step_row, col + step_col]
    floor = _MIN_NEIGHBOUR_RATIO * centre
    inside = (before >= floor) & (after >= floor) & (centre > 0)  # -inf padding fails here
    log_before, log_centre, log_after = (
        np.log(np.where(inside, v, 1.0)) for v in (before, centre, after)
    )
    curvature = log_before + log_after - 2.0 * log_centre  # <= 0 at a maximum
    usable = inside & (curvature < -1e-12)
    slope = 0.5 * (log_after - log_before)
    shift = np.where(usable, -slope / np.where(usable, curvature, -1.0), 0.0)
    shift = np.clip(shift, -_MAX_SHIFT, _MAX_SHIFT)
    return shift, np.where(usable, slope * shift + 0.5 * curvature * shift**2, 0.0)


def flip_back_heatmaps(
    heatmaps: np.ndarray,  # (K, H, W) or (K + 1, H, W) computed on the mirrored image
    flip_index: Sequence[int] | np.ndarray,  # (K,) keypoint -> its mirror keypoint
) -> np.ndarray:  # same shape: the maps of the original image
    """Mirror maps of a flipped image back and swap left/right keypoint channels.

    A background channel (K + 1 channels) stays last, only mirrored.
    """
    maps = np.asarray(heatmaps)
    index = _channel_permutation(flip_index, maps.shape[0])
    return np.ascontiguousarray(maps[index, :, ::-1])


def _channel_permutation(flip_index: Sequence[int] | np.ndarray, channels: int) -> np.ndarray:
    index = np.asarray(flip_index, dtype=np.intp)
    if channels == index.size + 1:
        return np.append(index, index.size)
    if channels != index.size:
        raise ValueError(
            f"heatmaps have {channels} channels; expected {index.size} keypoints "
            f"(+1 background) for a flip index of length {index.size}"
        )
    return index


def limb_flip_index(
    limbs: Sequence[Sequence[int]] | np.ndarray,  # (L, 2) start, end keypoint indices
    flip_index: Sequence[int] | np.ndarray,  # (K,)
) -> tuple[np.ndarray, np.ndarray]:  # (L,) mirror limb index, (L,) +1 same / -1 reversed
    """For each limb, the limb joining its mirrored ends, and whether it runs the other way."""
    pairs = [tuple(int(i) for i in limb) for limb in np.asarray(limbs).reshape(-1, 2)]
    mirror = np.asarray(flip_index, dtype=np.intp)
    position = {pair: index for index, pair in enumerate(pairs)}
    partner = np.empty(len(pairs), dtype=np.intp)
    sign = np.empty(len(pairs), dtype=np.float32)
    for index, (start, end) in enumerate(pairs):
        forward = (int(mirror[start]), int(mirror[end]))
        backward = forward[::-1]
        if forward in position:
            partner[index], sign[index] = position[forward], 1.0
        elif backward in position:
            partner[index], sign[index] = position[backward], -1.0
        else:
            raise ValueError(
                f"limb {list(pairs[index])} has no mirror limb {list(forward)} in the skeleton; "
                "add it or fix the schema's flip_pairs"
            )
    return partner, sign


def flip_back_pafs(
    pafs: np.ndarray,  # (2L, H, W) computed on the mirrored image
    limbs: Sequence[Sequence[int]] | np.ndarray,  # (L, 2)
    flip_index: Sequence[int] | np.ndarray,  # (K,)
) -> np.ndarray:  # (2L, H, W) the fields of the original image
    """Mirror PAFs of a flipped image back: swap mirror limbs, fix directions, negate x."""
    fields = np.asarray(pafs)
    partner, sign = limb_flip_index(limbs, flip_index)
    if fields.shape[0] != 2 * partner.size:
        raise ValueError(f"pafs have {fields.shape[0]} channels; expected 2 × {partner.size}")
    mirrored = fields[:, :, ::-1]
    scale = sign.astype(fields.dtype)[:, None, None]
    result = np.empty_like(fields)
    result[0::2] = -scale * mirrored[2 * partner]
    result[1::2] = scale * mirrored[2 * partner + 1]
    return result
