"""Pure image/keypoint transforms: affine matrices, warps, flips, colour, normalisation.

Conventions: coordinates are pixels with pixel centres at integer coordinates (what
``cv2.warpAffine`` assumes), so an image of width W spans x in [-0.5, W - 0.5) and its
horizontal mirror maps x to ``W - 1 - x``. Keypoints are (N, K, 3) x, y, v with ``v > 0``
labelled. Sizes are (height, width). An affine matrix is a (2, 3) float64 array mapping a
source point p to ``M[:, :2] @ p + M[:, 2]``. Nothing here draws random numbers or mutates
its inputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

BorderValue = float | tuple[float, ...]


def affine_matrix(
    centre: Sequence[float],  # (x, y) source point that lands at the output centre
    scale: float,  # output pixels per source pixel
    rotation: float,  # degrees, counter-clockwise on screen (cv2.getRotationMatrix2D)
    out_hw: tuple[int, int],
    flip: bool = False,
    shift: Sequence[float] = (0.0, 0.0),  # (dx, dy) output pixels added to the centre
) -> np.ndarray:  # (2, 3) float64
    """Matrix mapping source pixels to the output crop: scale and rotate about ``centre``,
    put ``centre`` at the output's centre ``((W-1)/2, (H-1)/2)`` plus ``shift``, then
    mirror the output horizontally when ``flip`` (x -> W - 1 - x)."""
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    theta = math.radians(rotation)
    cos, sin = scale * math.cos(theta), scale * math.sin(theta)
    linear = np.array([[cos, sin], [-sin, cos]], dtype=np.float64)
    height, width = out_hw
    target = np.array([(width - 1) / 2 + shift[0], (height - 1) / 2 + shift[1]])
    matrix = np.empty((2, 3), dtype=np.float64)
    matrix[:, :2] = linear
    matrix[:, 2] = target - linear @ np.asarray(centre, dtype=np.float64)
    if flip:
        matrix = compose_affine(hflip_matrix(width), matrix)
    return matrix


def hflip_matrix(width: int) -> np.ndarray:  # (2, 3)
    """The horizontal mirror of an image of ``width`` pixels: x -> width - 1 - x."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0]])


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:  # (2, 3)
    """The matrix of ``outer ∘ inner``: apply ``inner`` first, then ``outer``."""
    outer, inner = np.asarray(outer, np.float64), np.asarray(inner, np.float64)
    result = np.empty((2, 3), dtype=np.float64)
    result[:, :2] = outer[:, :2] @ inner[:, :2]
    result[:, 2] = outer[:, :2] @ inner[:, 2] + outer[:, 2]
    return result


def invert_affine(matrix: np.ndarray) -> np.ndarray:  # (2, 3) -> (2, 3)
    """The inverse mapping, e.g. from network-input pixels back to original image pixels."""
    matrix = np.asarray(matrix, dtype=np.float64)
    linear = np.linalg.inv(matrix[:, :2])
    return np.concatenate([linear, -(linear @ matrix[:, 2])[:, None]], axis=1)


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(..., 2) x, y -> (..., 2) float64 mapped through ``matrix`` (2, 3)."""
    points = np.asarray(points, dtype=np.float64)
    matrix = np.asarray(matrix, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def warp_image(
    image: np.ndarray,  # (H_in, W_in, C) or (H_in, W_in), uint8 or float
    matrix: np.ndarray,  # (2, 3)
    out_hw: tuple[int, int],
    border_value: BorderValue = (128, 128, 128),
) -> np.ndarray:  # (H, W, C) or (H, W), same dtype
    """Bilinear ``cv2.warpAffine``; pixels from outside the source get ``border_value``
    (grey 128 by default, as the original Lightweight OpenPose pads; 0 after
    :func:`normalize_image`)."""
    if isinstance(border_value, (int, float)):
        border_value = (float(border_value),) * 4
    return cv2.warpAffine(
        image,
        np.asarray(matrix, dtype=np.float64),
        (int(out_hw[1]), int(out_hw[0])),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=tuple(border_value),
    )


def warp_mask(
    mask: np.ndarray,  # (H_in, W_in) uint8, 1 = ignore
    matrix: np.ndarray,  # (2, 3)
    out_hw: tuple[int, int],
) -> np.ndarray:  # (H, W) uint8
    """Nearest-neighbour warp of an ignore mask. Padding outside the source becomes 0
    ("use"): it holds no people, so it is fine to train there as background."""
    mask = np.asarray(mask)
    if mask.dtype != np.uint8:
        mask = (mask > 0).astype(np.uint8)
    return cv2.warpAffine(
        mask,
        np.asarray(matrix, dtype=np.float64),
        (int(out_hw[1]), int(out_hw[0])),
        flags=cv2.INTER_NEAREST,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def warp_keypoints(
    keypoints: np.ndarray,  # (N, K, 3) x, y, v
    matrix: np.ndarray,  # (2, 3)
    out_hw: tuple[int, int],
) -> np.ndarray:  # (N, K, 3) float32, a new array
    """Map x, y through ``matrix``; labelled points that land outside the output image
    (x outside [-0.5, W - 0.5) or y outside [-0.5, H - 0.5)) get v = 0."""
    keypoints = np.asarray(keypoints)
    result = np.array(keypoints, dtype=np.float32, copy=True)
    xy = transform_points(keypoints[..., :2], matrix)
    result[..., :2] = xy
    height, width = out_hw
    with np.errstate(invalid="ignore"):
        inside = (
            (xy[..., 0] >= -0.5)
            & (xy[..., 0] < width - 0.5)
            & (xy[..., 1] >= -0.5)
            & (xy[..., 1] < height - 0.5)
        )
    result[..., 2] = np.where(inside, result[..., 2], 0.0)
    return result


def flip_keypoint_order(
    keypoints: np.ndarray,  # (N, K, C)
    flip_index: Sequence[int] | np.ndarray,  # (K,) e.g. KeypointSchema.flip_index()
) -> np.ndarray:  # (N, K, C), a new array
    """Swap left/right channels after a mirror: new channel j = old channel flip_index[j].

    After mirroring, the point that was the left shoulder is the right shoulder. Coordinates
    are untouched: use this when the mirror is already inside the affine matrix.
    """
    keypoints = np.asarray(keypoints)
    index = np.asarray(flip_index, dtype=np.int64)
    if index.shape != (keypoints.shape[1],):
        raise ValueError(f"flip_index has shape {index.shape}; expected ({keypoints.shape[1]},)")
    return keypoints[:, index].copy()


def hflip_image(image: np.ndarray) -> np.ndarray:  # (H, W, ...) -> (H, W, ...)
    """Mirror an image left-right (a new contiguous array)."""
    return np.ascontiguousarray(np.asarray(image)[:, ::-1])


def hflip_keypoints(
    keypoints: np.ndarray,  # (N, K, 3)
    width: int,
    flip_index: Sequence[int] | np.ndarray,  # (K,)
) -> np.ndarray:  # (N, K, 3) float32
    """Keypoints of the mirrored image: x -> width - 1 - x, then left/right channels swap."""
    result = np.array(keypoints, dtype=np.float32, copy=True)
    result[..., 0] = (width - 1) - result[..., 0]
    return flip_keypoint_order(result, flip_index)


_LUMA_BGR = np.array([0.114, 0.587, 0.299])


def color_jitter(
    image: np.ndarray,  # (H, W, 3) uint8, BGR (as posekit.data.images reads it)
    brightness: float = 1.0,
    contrast: float = 1.0,
    saturation: float = 1.0,
    hue: float = 0.0,
) -> np.ndarray:  # (H, W, 3) uint8, a new array
    """Colour changes with the given factors, composed into one affine colour transform
    (a single ``cv2.transform`` pass, rounded and clipped to uint8 once):

    - brightness: multiply by ``brightness``;
    - contrast: blend with the mean grey level, ``contrast * x + (1 - contrast) * mean``;
    - saturation: blend with the pixel's grey level (luma), ``s * x + (1 - s) * grey``;
    - hue: rotate colours about the grey axis by ``hue`` turns (in [-0.5, 0.5]; positive
      turns red towards green), the linear hue rotation of SVG/CSS ``hue-rotate``, which
      approximates an HSV hue shift and keeps greys grey.
    """
    image = np.asarray(image, dtype=np.uint8)
    if brightness == 1.0 and contrast == 1.0 and saturation == 1.0 and hue == 0.0:
        return image.copy()
    mean_b, mean_g, mean_r, _ = cv2.mean(image)
    grey_mean = brightness * float(_LUMA_BGR @ (mean_b, mean_g, mean_r))
    linear = _hue_rotation_bgr(hue) @ _saturation_bgr(saturation) * (brightness * contrast)
    matrix = np.concatenate([linear, np.full((3, 1), (1.0 - contrast) * grey_mean)], axis=1)
    return cv2.transform(image, matrix)


def _saturation_bgr(saturation: float) -> np.ndarray:  # (3, 3)
    return saturation * np.eye(3) + (1.0 - saturation) * np.outer(np.ones(3), _LUMA_BGR)


def _hue_rotation_bgr(turns: float) -> np.ndarray:  # (3, 3)
    """The SVG feColorMatrix ``hueRotate`` matrix, rows and columns in BGR order."""
    cos, sin = math.cos(2 * math.pi * turns), math.sin(2 * math.pi * turns)
    rgb = np.array(
        [
            [0.213 + 0.787 * cos - 0.213 * sin, 0.715 - 0.715 * cos - 0.715 * sin,
             0.072 - 0.072 * cos + 0.928 * sin],
            [0.213 - 0.213 * cos + 0.143 * sin, 0.715 + 0.285 * cos + 0.140 * sin,
             0.072 - 0.072 * cos - 0.283 * sin],
            [0.213 - 0.213 * cos - 0.787 * sin, 0.715 - 0.715 * cos + 0.715 * sin,
             0.072 + 0.928 * cos + 0.072 * sin],
        ]
    )  # fmt: skip
    return rgb[::-1, ::-1]


def normalize_image(image: np.ndarray) -> np.ndarray:  # (H, W, C) uint8 -> (C, H, W) float32
    """``(image - 128) / 256`` channels-first, as the original Lightweight OpenPose (whose
    weights expect BGR input; the channel order is kept as given). The grey padding of
    :func:`warp_image` becomes exactly 0."""
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    out = np.empty((array.shape[2], array.shape[0], array.shape[1]), dtype=np.float32)
    np.subtract(array.transpose(2, 0, 1), np.float32(128.0), out=out, dtype=np.float32)
    out *= np.float32(1.0 / 256.0)
    return out
