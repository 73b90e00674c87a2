"""Top-down (single-person crop) input pipeline, after MMPose's top-down transforms.

A person's box becomes a ``centre`` (x, y in pixel-index coordinates) and a ``scale`` (w, h
of the region, in source pixels, with the network input's aspect ratio, padded), as
MMPose's ``GetBBoxCenterScale``. :func:`topdown_augment` then applies, in this order:
``RandomHalfBody`` (re-centre on the upper or lower body), ``RandomBBoxTransform`` (shift,
scale, rotate the box), ``RandomFlip`` (a mirror composed into the matrix, left/right
channels swapped) and ``TopdownAffine`` (one warp of image and keypoints).

Random numbers come from the ``numpy.random.Generator`` passed in, always the same count
in the same order (half-body coin, upper/lower coin, shift coin, shift x, shift y, scale,
rotation coin, rotation, flip coin), so a seeded generator reproduces a sample exactly.
Nothing here mutates its inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from posekit.data.transforms import (
    BorderValue,
    affine_matrix,
    flip_keypoint_order,
    invert_affine,
    warp_image,
    warp_keypoints,
)

__all__ = [
    "TopDownAugmentParams",
    "box_to_centre_scale",
    "half_body_centre_scale",
    "invert_affine",
    "sample_box_transform",
    "topdown_augment",
    "topdown_eval_transform",
    "topdown_matrix",
]


@dataclass(frozen=True)
class TopDownAugmentParams:
    """Probabilities and ranges of the random top-down augmentation (MMPose defaults).

    Half-body is tried (with ``half_body_prob``) only when at least
    ``half_body_min_keypoints`` keypoints are labelled; see :func:`half_body_centre_scale`.
    ``shift_factor`` is a fraction of the box size; ``rotate_max`` is in degrees.
    """

    flip_prob: float = 0.5
    half_body_prob: float = 0.3
    half_body_min_keypoints: int = 9
    half_body_min_upper: int = 2
    half_body_min_lower: int = 3
    half_body_padding: float = 1.5
    shift_factor: float = 0.16
    shift_prob: float = 0.3
    scale_min: float = 0.75
    scale_max: float = 1.25
    rotate_max: float = 40.0
    rotate_prob: float = 0.6

    def __post_init__(self) -> None:
        for name in ("flip_prob", "half_body_prob", "shift_prob", "rotate_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0 < self.scale_min <= self.scale_max:
            raise ValueError("need 0 < scale_min <= scale_max")
        if not self.half_body_padding > 0:
            raise ValueError("half_body_padding must be > 0")
        if min(self.shift_factor, self.rotate_max) < 0:
            raise ValueError("shift_factor and rotate_max must be >= 0")
        counts = (self.half_body_min_keypoints, self.half_body_min_upper, self.half_body_min_lower)
        if min(counts) < 0:
            raise ValueError("half-body keypoint counts must be >= 0")


def _fit_aspect(size: np.ndarray, aspect_ratio: float) -> np.ndarray:  # (2,) w, h -> (2,)
    """Widen or heighten ``size`` to width / height = ``aspect_ratio`` (never shrink)."""
    if not aspect_ratio > 0:
        raise ValueError(f"aspect_ratio must be > 0, got {aspect_ratio}")
    w, h = float(size[0]), float(size[1])
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    else:
        w = h * aspect_ratio
    return np.array([w, h], dtype=np.float64)


def box_to_centre_scale(
    box: np.ndarray,  # (4,) COCO x, y, w, h (continuous: pixel i covers [i, i + 1))
    aspect_ratio: float,  # width / height of the network input
    padding: float = 1.25,
) -> tuple[np.ndarray, np.ndarray]:  # centre (2,) x, y pixel-index; scale (2,) w, h
    """The box's centre in pixel-index coordinates and its size expanded to
    ``aspect_ratio`` and multiplied by ``padding`` (MMPose ``GetBBoxCenterScale``)."""
    if not padding > 0:
        raise ValueError(f"padding must be > 0, got {padding}")
    x, y, w, h = np.asarray(box, dtype=np.float64).reshape(4)
    centre = np.array([x + w / 2 - 0.5, y + h / 2 - 0.5])
    return centre, _fit_aspect(np.array([w, h]), aspect_ratio) * padding


def half_body_centre_scale(
    keypoints: np.ndarray,  # (K, 3) x, y, v
    upper_ids: np.ndarray,  # (U,) int indices of upper-body keypoints
    lower_ids: np.ndarray,  # (L,) int indices of lower-body keypoints
    aspect_ratio: float,
    padding: float,
    prefer_upper: bool,  # the coin flip, drawn by the caller
    min_upper: int = 2,
    min_lower: int = 3,
) -> tuple[np.ndarray, np.ndarray] | None:  # centre (2,), scale (2,), or None
    """MMPose ``RandomHalfBody``'s box: the labelled upper-body points if there are at
    least ``min_upper`` and (``prefer_upper`` or fewer than ``min_lower`` lower ones), else
    the labelled lower-body points if at least ``min_lower``, else None. Centre = their
    mean; size = their extent, expanded to ``aspect_ratio``, times ``padding``. Also None
    when the picked points all coincide (a zero-size box)."""
    keypoints = np.asarray(keypoints, dtype=np.float64)
    labelled = keypoints[:, 2] > 0
    upper = np.asarray(upper_ids, dtype=np.int64)
    lower = np.asarray(lower_ids, dtype=np.int64)
    upper, lower = upper[labelled[upper]], lower[labelled[lower]]
    if upper.size >= min_upper and (prefer_upper or lower.size < min_lower):
        picked = upper
    elif lower.size >= min_lower:
        picked = lower
    else:
        return None
    if picked.size == 0:
        return None
    points = keypoints[picked, :2]
    size = _fit_aspect(points.max(axis=0) - points.min(axis=0), aspect_ratio)
    if not size.min() > 0:
        return None
    return points.mean(axis=0), size * padding


def topdown_matrix(
    centre: np.ndarray,  # (2,) x, y in source pixels
    scale: np.ndarray,  # (2,) w, h of the region in source pixels
    rotation: float,  # degrees, counter-clockwise
    out_hw: tuple[int, int],
    flip: bool = False,
) -> np.ndarray:  # (2, 3) source -> crop
    """Matrix mapping the region of size ``scale`` about ``centre`` onto the whole crop
    (its width fills the output width; ``scale`` is meant to have the output's aspect
    ratio), rotated by ``rotation`` and mirrored when ``flip``."""
    scale_w = float(np.asarray(scale, dtype=np.float64).reshape(2)[0])
    if not scale_w > 0:
        raise ValueError(f"scale width must be > 0, got {scale_w}")
    return affine_matrix(centre, out_hw[1] / scale_w, rotation, out_hw, flip=flip)


def sample_box_transform(
    rng: np.random.Generator,
    centre: np.ndarray,  # (2,)
    scale: np.ndarray,  # (2,)
    params: TopDownAugmentParams,
) -> tuple[np.ndarray, np.ndarray, float]:  # new centre (2,), new scale (2,), degrees
    """MMPose ``RandomBBoxTransform``: shift the centre by ``clip(N(0, 1), -1, 1) *
    shift_factor * scale`` (with ``shift_prob``), multiply the scale by a uniform factor in
    ``[scale_min, scale_max]``, rotate by ``clip(N(0, 1), -1, 1) * rotate_max`` (with
    ``rotate_prob``). Always draws six numbers. Returns new arrays."""
    centre = np.asarray(centre, dtype=np.float64).reshape(2)
    scale = np.asarray(scale, dtype=np.float64).reshape(2)
    shift_coin = rng.random()
    shift = np.clip(rng.standard_normal(2), -1.0, 1.0)
    factor = rng.uniform(params.scale_min, params.scale_max)
    rotate_coin = rng.random()
    rotation = float(np.clip(rng.standard_normal(), -1.0, 1.0)) * params.rotate_max
    if shift_coin < params.shift_prob:
        centre = centre + shift * params.shift_factor * scale
    rotation = rotation if rotate_coin < params.rotate_prob else 0.0
    return centre.copy(), scale * factor, rotation


def topdown_augment(
    image: np.ndarray,  # (H, W, 3) uint8
    keypoints: np.ndarray,  # (K, 3) x, y, v in image pixels
    centre: np.ndarray,  # (2,) from box_to_centre_scale
    scale: np.ndarray,  # (2,) from box_to_centre_scale
    out_hw: tuple[int, int],
    flip_index: Sequence[int] | np.ndarray,  # (K,) KeypointSchema.flip_index()
    upper_ids: np.ndarray,  # (U,) int
    lower_ids: np.ndarray,  # (L,) int
    rng: np.random.Generator,
    params: TopDownAugmentParams,
    border_value: BorderValue = (128, 128, 128),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # (h, w, 3) uint8, (K, 3) f32, (2, 3)
    """One random training crop of one person: the crop, its keypoints in crop pixels
    (mirrored channels swapped, points outside the crop with v = 0) and the source -> crop
    matrix (map predictions back with ``invert_affine(matrix)``)."""
    keypoints = np.asarray(keypoints)
    if keypoints.ndim != 2 or keypoints.shape[1] != 3:
        raise ValueError(f"keypoints have shape {keypoints.shape}; expected (K, 3)")
    if np.shape(flip_index) != (keypoints.shape[0],):
        raise ValueError(
            f"flip_index has shape {np.shape(flip_index)}; expected ({keypoints.shape[0]},)"
        )
    half_body_coin, prefer_upper = rng.random(), bool(rng.random() < 0.5)
    num_labelled = int(np.count_nonzero(keypoints[:, 2] > 0))
    if half_body_coin < params.half_body_prob and num_labelled >= params.half_body_min_keypoints:
        half = half_body_centre_scale(
            keypoints,
            upper_ids,
            lower_ids,
            out_hw[1] / out_hw[0],
            params.half_body_padding,
            prefer_upper,
            params.half_body_min_upper,
            params.half_body_min_lower,
        )
        if half is not None:
            centre, scale = half
    centre, scale, rotation = sample_box_transform(rng, centre, scale, params)
    flip = bool(rng.random() < params.flip_prob)
    matrix = topdown_matrix(centre, scale, rotation, out_hw, flip=flip)
    crop = warp_image(image, matrix, out_hw, border_value)
    out_keypoints = warp_keypoints(keypoints[None], matrix, out_hw)
    if flip:
        out_keypoints = flip_keypoint_order(out_keypoints, flip_index)
    return crop, out_keypoints[0], matrix


def topdown_eval_transform(
    image: np.ndarray,  # (H, W, 3) uint8
    centre: np.ndarray,  # (2,)
    scale: np.ndarray,  # (2,)
    out_hw: tuple[int, int],
    border_value: BorderValue = (128, 128, 128),
) -> tuple[np.ndarray, np.ndarray]:  # crop (h, w, 3) uint8, matrix (2, 3) source -> crop
    """The deterministic crop of the region ``centre``/``scale`` (no rotation, no flip)."""
    matrix = topdown_matrix(centre, scale, 0.0, out_hw)
    return warp_image(image, matrix, out_hw, border_value), matrix
