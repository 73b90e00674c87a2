"""Random augmentation for bottom-up training, and the deterministic evaluation transform.

:func:`bottomup_augment` follows the original (Lightweight) OpenPose recipe: pick a person,
scale them to ``target_dist`` of the crop height times a random factor in
``[scale_min, scale_max]``, rotate by up to ``max_rotate`` degrees, put their centre at the
crop centre moved by up to ``center_perturb_max`` pixels, mirror with probability
``flip_prob``. All of it is composed into ONE affine matrix, so each image (and its ignore
mask) is resampled once. Colour jitter follows on the crop.

Random numbers come from the ``numpy.random.Generator`` passed in, always in the same order
(person, scale, rotation, shift x, shift y, flip, brightness, contrast, saturation, hue),
so a seeded generator reproduces a sample exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from posekit.data.transforms import (
    BorderValue,
    affine_matrix,
    color_jitter,
    flip_keypoint_order,
    invert_affine,
    warp_image,
    warp_keypoints,
    warp_mask,
)

__all__ = [
    "BottomUpAugmentParams",
    "bottomup_augment",
    "bottomup_eval_transform",
    "invert_affine",
    "sample_bottomup_matrix",
]


@dataclass(frozen=True)
class BottomUpAugmentParams:
    """Ranges of the random bottom-up augmentation (defaults from Lightweight OpenPose).

    ``target_dist``: the chosen person's height (box height when boxes are given, else the
    extent of their labelled keypoints) becomes this fraction of the crop height, times a
    factor drawn from ``[scale_min, scale_max]``. ``max_zoom`` caps that base scale (a
    person with only a few close keypoints labelled would otherwise be blown up).
    ``center_perturb_max`` is in crop pixels. Colour factors are drawn uniformly from
    ``[1 - x, 1 + x]`` for brightness, contrast, saturation and ``[-hue, hue]`` turns.
    """

    scale_min: float = 0.5
    scale_max: float = 1.1
    target_dist: float = 0.6
    max_zoom: float = 4.0
    max_rotate: float = 40.0
    center_perturb_max: float = 40.0
    flip_prob: float = 0.5
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.02
    border_value: tuple[int, int, int] = (128, 128, 128)
    whole_image: bool = False  # centre on the image and fit it whole, not on a person

    def __post_init__(self) -> None:
        if not 0 < self.scale_min <= self.scale_max:
            raise ValueError("need 0 < scale_min <= scale_max")
        if not (self.target_dist > 0 and self.max_zoom > 0):
            raise ValueError("target_dist and max_zoom must be > 0")
        if not 0.0 <= self.flip_prob <= 1.0:
            raise ValueError("flip_prob must be in [0, 1]")
        if min(self.max_rotate, self.center_perturb_max) < 0:
            raise ValueError("max_rotate and center_perturb_max must be >= 0")
        if not (0 <= self.brightness < 1 and 0 <= self.contrast < 1 and self.saturation >= 0):
            raise ValueError("brightness and contrast must be in [0, 1), saturation >= 0")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError("hue must be in [0, 0.5]")


def sample_bottomup_matrix(
    image_hw: tuple[int, int],
    keypoints: np.ndarray,  # (N, K, 3) x, y, v in image pixels
    input_size: tuple[int, int],  # network input (height, width)
    rng: np.random.Generator,
    params: BottomUpAugmentParams,
    boxes: np.ndarray | None = None,  # (N, 4) xywh, optional
) -> tuple[np.ndarray, bool]:  # (2, 3) image -> crop matrix, whether it mirrors
    """Draw the geometric part of the augmentation as one affine matrix.

    The centre is a random labelled person's (box centre, or the middle of their labelled
    keypoints' extent); with no labelled person it is the image centre and the base scale
    fits the whole image into the crop.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    candidates = np.flatnonzero((keypoints[..., 2] > 0).any(axis=1))
    person = int(rng.choice(candidates)) if candidates.size else -1
    if params.whole_image:
        person = -1
    centre, base = _centre_and_base_scale(image_hw, keypoints, boxes, person, input_size, params)
    scale = base * rng.uniform(params.scale_min, params.scale_max)
    rotation = rng.uniform(-params.max_rotate, params.max_rotate)
    shift = rng.uniform(-params.center_perturb_max, params.center_perturb_max, size=2)
    flip = bool(rng.random() < params.flip_prob)
    return affine_matrix(centre, scale, rotation, input_size, flip=flip, shift=shift), flip


def _centre_and_base_scale(
    image_hw: tuple[int, int],
    keypoints: np.ndarray,
    boxes: np.ndarray | None,
    person: int,
    input_size: tuple[int, int],
    params: BottomUpAugmentParams,
) -> tuple[np.ndarray, float]:
    image_h, image_w = image_hw
    fit = min(input_size[0] / image_h, input_size[1] / image_w)
    if person < 0:
        return np.array([(image_w - 1) / 2, (image_h - 1) / 2]), fit
    if boxes is not None:
        x, y, w, h = np.asarray(boxes, dtype=np.float64)[person]
        centre, height = np.array([x + w / 2, y + h / 2]), h
    else:
        points = keypoints[person][keypoints[person, :, 2] > 0, :2]
        low, high = points.min(axis=0), points.max(axis=0)
        centre, height = (low + high) / 2, high[1] - low[1]
    if not height > 1.0:
        return centre, min(fit, params.max_zoom)
    return centre, min(params.target_dist * input_size[0] / height, params.max_zoom)


def sample_color_factors(
    rng: np.random.Generator, params: BottomUpAugmentParams
) -> tuple[float, float, float, float]:
    """(brightness, contrast, saturation, hue) for :func:`color_jitter`."""
    brightness = rng.uniform(1 - params.brightness, 1 + params.brightness)
    contrast = rng.uniform(1 - params.contrast, 1 + params.contrast)
    saturation = rng.uniform(max(0.0, 1 - params.saturation), 1 + params.saturation)
    hue = rng.uniform(-params.hue, params.hue)
    return float(brightness), float(contrast), float(saturation), float(hue)


def bottomup_augment(
    image: np.ndarray,  # (H_img, W_img, 3) uint8 BGR
    keypoints: np.ndarray,  # (N, K, 3) x, y, v in image pixels
    ignore_mask: np.ndarray | None,  # (H_img, W_img) uint8, 1 = ignore; None = none
    input_size: tuple[int, int],  # (h, w) of the network input
    flip_index: Sequence[int] | np.ndarray,  # (K,) of the keypoint set passed in
    rng: np.random.Generator,
    params: BottomUpAugmentParams | None = None,
    boxes: np.ndarray | None = None,  # (N, 4) xywh: scale from box heights, as OpenPose
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # (h, w, 3) uint8, (N, K, 3) f32, (h, w) u8
    """One random training crop: image, keypoints (mirrored channels swapped, points outside
    the crop with v = 0) and ignore mask (crop padding = 0, i.e. used as background)."""
    params = BottomUpAugmentParams() if params is None else params
    if np.shape(flip_index) != (np.shape(keypoints)[1],):
        raise ValueError(
            f"flip_index has shape {np.shape(flip_index)}; expected one entry per keypoint "
            f"({np.shape(keypoints)[1]}): use the flip_index() of the keypoints' schema"
        )
    image_hw = (int(image.shape[0]), int(image.shape[1]))
    matrix, flipped = sample_bottomup_matrix(image_hw, keypoints, input_size, rng, params, boxes)
    out_image = warp_image(image, matrix, input_size, params.border_value)
    out_keypoints = warp_keypoints(keypoints, matrix, input_size)
    if flipped:
        out_keypoints = flip_keypoint_order(out_keypoints, flip_index)
    if ignore_mask is not None and np.any(ignore_mask):
        out_mask = warp_mask(ignore_mask, matrix, input_size)
    else:
        out_mask = np.zeros(tuple(input_size), dtype=np.uint8)
    out_image = color_jitter(out_image, *sample_color_factors(rng, params))
    return out_image, out_keypoints, out_mask


def bottomup_eval_transform(
    image: np.ndarray,  # (H_img, W_img, 3) uint8
    input_size: tuple[int, int],  # (h, w) of the network input
    keypoints: np.ndarray | None = None,  # (N, K, 3), optional
    border_value: BorderValue = (128, 128, 128),
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Letterbox: scale the whole image to fit ``input_size`` keeping its aspect ratio, pad
    right and bottom with ``border_value``.

    Returns the (h, w, 3) image, the keypoints mapped into it (or None) and the (2, 3)
    image -> input matrix; map predictions back with ``invert_affine(matrix)``. The resize
    is ``cv2.resize`` (area when shrinking), whose pixel-centre mapping
    ``x' = (x + 0.5) * s - 0.5`` is the returned matrix.
    """
    image_h, image_w = image.shape[:2]
    in_h, in_w = input_size
    scale = min(in_h / image_h, in_w / image_w)
    new_w = min(in_w, max(1, round(image_w * scale)))
    new_h = min(in_h, max(1, round(image_h * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    if isinstance(border_value, (int, float)):
        border_value = (float(border_value),) * 4
    padded = cv2.copyMakeBorder(
        resized, 0, in_h - new_h, 0, in_w - new_w, cv2.BORDER_CONSTANT, value=border_value
    )
    sx, sy = new_w / image_w, new_h / image_h
    matrix = np.array([[sx, 0.0, (sx - 1) / 2], [0.0, sy, (sy - 1) / 2]])
    mapped = None if keypoints is None else warp_keypoints(keypoints, matrix, input_size)
    return padded, mapped, matrix
