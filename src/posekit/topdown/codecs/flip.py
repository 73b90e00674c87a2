"""Flip test: the model also sees the horizontally mirrored crop; its outputs are mirrored
back (and their left/right channels swapped) so they line up with the plain crop's, then
averaged with them before decoding.

Every function takes numpy arrays or torch tensors (kept on their device, in their dtype)
and returns the same kind; inputs are never changed. ``flip_index`` (K,) gives, for each
keypoint type, its mirror-image type (e.g. left eye <-> right eye).
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np
import torch

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def flip_heatmaps_back(
    heatmaps: ArrayT,  # (N, K, h, w) outputs on the mirrored crop
    flip_index: np.ndarray,  # (K,) int
) -> ArrayT:  # (N, K, h, w)
    """Heatmaps of the mirrored crop mirrored along w, channel j taken from
    ``flip_index[j]``. With the UDP mapping (:mod:`posekit.topdown.codecs.heatmap`) cell j of the
    mirrored crop is exactly cell ``w - 1 - j`` of the plain one, so there is no shift."""
    channels = _take_channels(heatmaps, flip_index, axis=-3)
    if isinstance(channels, torch.Tensor):
        return torch.flip(channels, dims=(-1,))
    return np.ascontiguousarray(channels[..., ::-1])


def flip_simcc_back(
    x_logits: ArrayT,  # (N, K, Wr) outputs on the mirrored crop
    y_logits: ArrayT,  # (N, K, Hr)
    flip_index: np.ndarray,  # (K,) int
    input_width: int,
    split_ratio: float,
) -> tuple[ArrayT, ArrayT]:  # (N, K, Wr), (N, K, Hr)
    """SimCC logits of the mirrored crop lined up with the plain crop's.

    x bin i stands for input x = i / r and the mirror of x is W - 1 - x, so bin i of the
    result is bin ``(W - 1) * r - i`` of the input (linearly interpolated when that is not
    a whole number); bins whose source falls outside take the nearest edge bin's value.
    Channels are reordered by ``flip_index`` on both axes; y bins are unchanged.
    """
    x_channels = _take_channels(x_logits, flip_index, axis=-2)
    y_channels = _take_channels(y_logits, flip_index, axis=-2)
    shift = (int(input_width) - 1) * float(split_ratio)
    if math.isclose(shift, round(shift), abs_tol=1e-9):
        shift = float(round(shift))  # a whole-bin shift, exact
    source = shift - np.arange(x_channels.shape[-1], dtype=np.float64)
    return _sample_last_axis(x_channels, source), y_channels


def merge_flipped(plain: ArrayT, flipped_back: ArrayT) -> ArrayT:
    """The average ``0.5 * (plain + flipped_back)`` of the two passes' outputs."""
    return 0.5 * (plain + flipped_back)


def _flip_index(flip_index: np.ndarray, count: int) -> np.ndarray:  # (K,) int64
    index = np.asarray(flip_index, dtype=np.int64).ravel()
    if index.shape[0] != count or (count and (index.min() < 0 or index.max() >= count)):
        raise ValueError(f"flip_index must hold {count} indices in [0, {count}); got {index}")
    return index


def _take_channels(values: ArrayT, flip_index: np.ndarray, axis: int) -> ArrayT:
    """A copy of ``values`` with channel j (along ``axis``) taken from ``flip_index[j]``."""
    if not isinstance(values, torch.Tensor):
        values = np.asarray(values)
    if values.ndim < -axis:
        raise ValueError(f"expected at least {-axis} dimensions, got shape {tuple(values.shape)}")
    index = _flip_index(flip_index, values.shape[axis])
    if isinstance(values, torch.Tensor):
        return values.index_select(axis, torch.as_tensor(index, device=values.device))
    return np.take(values, index, axis=axis)


def _sample_last_axis(values: ArrayT, source: np.ndarray) -> ArrayT:
    """``values`` sampled along the last axis at float positions ``source`` (L,), linearly
    interpolated and clamped to the ends."""
    last = values.shape[-1] - 1
    lower = np.floor(source)
    fraction = source - lower
    lower_index = np.clip(lower, 0, last).astype(np.int64)
    if not fraction.any():  # whole-bin shift: a plain gather, exact
        return _gather_last(values, lower_index)
    upper_index = np.clip(lower + 1, 0, last).astype(np.int64)
    below, above = _gather_last(values, lower_index), _gather_last(values, upper_index)
    if isinstance(values, torch.Tensor):
        fraction = torch.as_tensor(fraction, dtype=values.dtype, device=values.device)
    else:
        fraction = fraction.astype(values.dtype) if values.dtype.kind == "f" else fraction
    return below + (above - below) * fraction


def _gather_last(values: ArrayT, index: np.ndarray) -> ArrayT:
    if isinstance(values, torch.Tensor):
        return values.index_select(-1, torch.as_tensor(index, device=values.device))
    return np.take(values, index, axis=-1)
