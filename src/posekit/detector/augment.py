"""Strong/weak augmentation for DETR-family detectors (RT-DETR, D-FINE, DEIM, YOLOX).

Small pure functions on an :class:`Annotated` sample, in numpy and OpenCV only.

Conventions:

- images are (H, W, 3) uint8 BGR; sizes are (height, width);
- boxes are (N, 4) float32 ``x1, y1, x2, y2`` in pixels, in *continuous* coordinates: pixel
  column ``i`` spans ``[i, i + 1)``, so an image of width W spans x in ``[0, W]`` and its
  horizontal mirror maps x to ``W - x`` (unlike the keypoints of
  :mod:`posekit.data.transforms`, whose pixel centres sit at integers). A box covering
  the whole image is ``[0, 0, W, H]``;
- labels are (N,) int64 and always follow their boxes (same order, same length);
- every function returns new arrays and never mutates its inputs;
- random numbers come only from the ``numpy.random.Generator`` passed in, so a sample is
  reproducible from its seed. Functions that take ``rng`` always apply their transform;
  the caller decides the probability (RT-DETR applies zoom-out with p=0.5, IoU crop with
  p=0.8).

Geometric functions keep every output box inside its image with positive width and height
when their input boxes are (as after :func:`sanitize`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from posekit.data.transforms import color_jitter, hflip_image

__all__ = [
    "Annotated",
    "box_iou_np",
    "copy_paste",
    "hflip",
    "iou_crop",
    "mixup",
    "mosaic",
    "photometric_distort",
    "resize",
    "sanitize",
    "zoom_out",
]

Fill = tuple[int, int, int]


@dataclass(frozen=True, eq=False)
class Annotated:
    """One detection sample. Boxes and labels are converted to float32 (N, 4) and int64 (N,);
    an empty list of boxes becomes shape (0, 4). (``eq=False``: arrays have no truth value,
    so samples compare and hash by identity.)"""

    image: np.ndarray  # (H, W, 3) uint8
    boxes: np.ndarray  # (N, 4) float32 xyxy pixels
    labels: np.ndarray  # (N,) int64

    def __post_init__(self) -> None:
        image = np.asarray(self.image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be (H, W, 3) uint8; got {image.shape} {image.dtype}")
        boxes = np.asarray(self.boxes, dtype=np.float32)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"boxes must be (N, 4); got {boxes.shape}")
        if labels.shape != (boxes.shape[0],):
            raise ValueError(f"{boxes.shape[0]} boxes but labels of shape {labels.shape}")
        object.__setattr__(self, "image", image)
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "labels", labels)

    @property
    def hw(self) -> tuple[int, int]:
        return int(self.image.shape[0]), int(self.image.shape[1])


def _copy(sample: Annotated) -> Annotated:
    return Annotated(sample.image.copy(), sample.boxes.copy(), sample.labels.copy())


def _clip(boxes: np.ndarray, hw: tuple[int, int]) -> np.ndarray:  # (N, 4) -> (N, 4) float32
    """Clip to ``[0, W] x [0, H]`` (computed in float64, returned as new float32)."""
    height, width = hw
    result = np.asarray(boxes, dtype=np.float64).copy()
    result[:, 0::2] = np.clip(result[:, 0::2], 0.0, width)
    result[:, 1::2] = np.clip(result[:, 1::2], 0.0, height)
    return result.astype(np.float32)


def box_iou_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # (N, 4), (M, 4) -> (N, M)
    """Pairwise IoU of xyxy boxes, float64; 0 where the union is empty."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    area_a = (a[:, 2] - a[:, 0]).clip(0) * (a[:, 3] - a[:, 1]).clip(0)  # (N,)
    area_b = (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)  # (M,)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])  # (N, M, 2)
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])  # (N, M, 2)
    inter = (bottom_right - top_left).clip(0).prod(axis=-1)  # (N, M)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def sanitize(sample: Annotated, min_size: float = 1.0) -> Annotated:
    """Clip boxes to the image and drop those with width or height below ``min_size`` (or not
    finite); labels follow."""
    boxes = _clip(sample.boxes, sample.hw)
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    keep = (widths >= min_size) & (heights >= min_size)  # NaN compares False: dropped
    return Annotated(sample.image.copy(), boxes[keep], sample.labels[keep].copy())


def hflip(sample: Annotated) -> Annotated:
    """Mirror left-right: x -> W - x, so ``[x1, y1, x2, y2]`` -> ``[W - x2, y1, W - x1, y2]``."""
    width = sample.hw[1]
    boxes = sample.boxes.copy()
    boxes[:, 0] = width - sample.boxes[:, 2]
    boxes[:, 2] = width - sample.boxes[:, 0]
    return Annotated(hflip_image(sample.image), _clip(boxes, sample.hw), sample.labels.copy())


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:  # -> (h, w, 3)
    """Stretch to ``size`` = (height, width): area interpolation when shrinking, bilinear
    otherwise (training samples and inference inputs both go through here)."""
    height, width = size
    shrink = height <= image.shape[0] and width <= image.shape[1]
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)


def resize(sample: Annotated, size: tuple[int, int]) -> Annotated:
    """Stretch to ``size`` = (height, width) without keeping the aspect ratio (as RT-DETR);
    boxes scale by ``width / W`` in x and ``height / H`` in y. Area interpolation when
    shrinking, bilinear otherwise."""
    height, width = int(size[0]), int(size[1])
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive; got {size}")
    old_h, old_w = sample.hw
    scale = np.array([width / old_w, height / old_h] * 2)  # (4,)
    boxes = _clip(sample.boxes.astype(np.float64) * scale, (height, width))
    return Annotated(resize_image(sample.image, (height, width)), boxes, sample.labels.copy())


def photometric_distort(
    image: np.ndarray,  # (H, W, 3) uint8 BGR
    rng: np.random.Generator,
    brightness: tuple[float, float] = (0.875, 1.125),
    contrast: tuple[float, float] = (0.5, 1.5),
    saturation: tuple[float, float] = (0.5, 1.5),
    hue: tuple[float, float] = (-0.05, 0.05),
    p: float = 0.5,
    channel_shuffle: float = 0.0,
) -> np.ndarray:  # (H, W, 3) uint8, a new array
    """SSD / torchvision ``RandomPhotometricDistort``: brightness, contrast, saturation and hue
    (turns), each applied with probability ``p`` with a factor drawn uniformly from its range,
    in the SSD order: brightness, then contrast either first (one
    :func:`~posekit.data.transforms.color_jitter` pass) or last (a second pass, after
    saturation and hue), by a fair coin. With probability ``channel_shuffle`` the channels are
    then permuted randomly (torchvision does this with probability ``p``; off by default).

    Always draws the same numbers in the same order: 6 uniforms, the four factors, one
    permutation."""
    gates = rng.random(6)  # brightness, contrast, contrast-first, saturation, hue, shuffle
    factors = [rng.uniform(*brightness), rng.uniform(*contrast)]
    factors += [rng.uniform(*saturation), rng.uniform(*hue)]
    permutation = rng.permutation(3)
    b = float(factors[0]) if gates[0] < p else 1.0
    c = float(factors[1]) if gates[1] < p else 1.0
    s = float(factors[2]) if gates[3] < p else 1.0
    h = float(factors[3]) if gates[4] < p else 0.0
    if gates[2] < 0.5:
        result = color_jitter(image, b, c, s, h)
    else:
        result = color_jitter(image, b, 1.0, s, h)
        if c != 1.0:
            result = color_jitter(result, contrast=c)
    if gates[5] < channel_shuffle:
        result = np.ascontiguousarray(result[..., permutation])
    return result


def zoom_out(
    sample: Annotated,
    rng: np.random.Generator,
    max_scale: float = 4.0,
    fill: Fill = (128, 128, 128),
) -> Annotated:
    """SSD ``RandomZoomOut``: a ``fill`` canvas ``int(r * H) x int(r * W)`` with
    ``r ~ U(1, max_scale)``, the image pasted at a random integer offset, boxes shifted by it.
    Draws: r, then the x and y fractions of the offset."""
    if max_scale < 1.0:
        raise ValueError(f"max_scale must be >= 1, got {max_scale}")
    ratio = rng.uniform(1.0, max_scale)
    where = rng.random(2)
    height, width = sample.hw
    canvas_h, canvas_w = max(height, int(height * ratio)), max(width, int(width * ratio))
    left, top = int((canvas_w - width) * where[0]), int((canvas_h - height) * where[1])
    canvas = np.empty((canvas_h, canvas_w, 3), dtype=np.uint8)
    canvas[:] = np.asarray(fill, dtype=np.uint8)
    canvas[top : top + height, left : left + width] = sample.image
    boxes = sample.boxes.astype(np.float64) + np.array([left, top, left, top])
    return Annotated(canvas, _clip(boxes, (canvas_h, canvas_w)), sample.labels.copy())


def iou_crop(
    sample: Annotated,
    rng: np.random.Generator,
    min_ious: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9),
    min_scale: float = 0.3,
    trials: int = 40,
    aspect_range: tuple[float, float] = (0.5, 2.0),
) -> Annotated:
    """SSD ``RandomIoUCrop`` (as torchvision's, which RT-DETR uses).

    Picks one of ``min_ious`` or "no crop" uniformly. Then up to ``trials`` times: a crop of
    ``int(W * sw) x int(H * sh)`` with ``sw, sh ~ U(min_scale, 1)`` independently, aspect
    ``w / h`` within ``aspect_range``, at a random integer position. The first crop that
    strictly contains at least one box centre and whose IoU with at least one of those boxes
    is ``>=`` the option (the SSD/Caffe and torchvision rule) is taken: boxes whose centres
    are strictly inside are kept, shifted and clipped to the crop. Returns the input (copied)
    when "no crop" is picked or no trial qualifies.
    """
    options = [float(v) for v in min_ious]
    choice = int(rng.integers(0, len(options) + 1))
    if choice == len(options) or len(sample.boxes) == 0:
        return _copy(sample)
    min_iou = options[choice]
    height, width = sample.hw
    boxes = sample.boxes.astype(np.float64)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2  # (N, 2) x, y
    for _ in range(trials):
        scales = rng.uniform(min_scale, 1.0, size=2)
        where = rng.random(2)
        crop_w, crop_h = int(width * scales[0]), int(height * scales[1])
        if crop_w < 1 or crop_h < 1 or not aspect_range[0] <= crop_w / crop_h <= aspect_range[1]:
            continue
        left, top = int((width - crop_w) * where[0]), int((height - crop_h) * where[1])
        right, bottom = left + crop_w, top + crop_h
        inside = (
            (left < centres[:, 0])
            & (centres[:, 0] < right)
            & (top < centres[:, 1])
            & (centres[:, 1] < bottom)
        )
        if not inside.any():
            continue
        window = np.array([[left, top, right, bottom]], dtype=np.float64)
        if box_iou_np(boxes[inside], window).max() < min_iou:
            continue
        kept = boxes[inside] - np.array([left, top, left, top])
        return Annotated(
            sample.image[top:bottom, left:right].copy(),
            _clip(kept, (crop_h, crop_w)),
            sample.labels[inside].copy(),
        )
    return _copy(sample)


def mosaic(
    samples: Sequence[Annotated],
    rng: np.random.Generator,
    output_size: tuple[int, int],
    fill: Fill = (128, 128, 128),
    min_size: float = 1.0,
) -> Annotated:
    """Four samples in a 2 x 2 grid on an ``output_size`` = (height, width) ``fill`` canvas.

    The grid centre ``(xc, yc)`` is drawn uniformly in the middle half of the canvas
    (``[W/4, 3W/4] x [H/4, 3H/4]``, rounded). Samples 0, 1, 2, 3 go to the top-left,
    top-right, bottom-left and bottom-right quadrants: each is resized, keeping its aspect
    ratio, to the largest size that fits its quadrant and placed with a corner at the centre.
    Boxes are scaled and moved with their image, then sanitized with ``min_size``.
    """
    if len(samples) != 4:
        raise ValueError(f"mosaic needs 4 samples, got {len(samples)}")
    height, width = int(output_size[0]), int(output_size[1])
    if height < 2 or width < 2:
        raise ValueError(f"output_size must be at least (2, 2); got {output_size}")
    fractions = rng.uniform(0.25, 0.75, size=2)
    xc = min(max(round(fractions[0] * width), 1), width - 1)
    yc = min(max(round(fractions[1] * height), 1), height - 1)
    canvas = np.empty((height, width, 3), dtype=np.uint8)
    canvas[:] = np.asarray(fill, dtype=np.uint8)
    quadrants = [(0, 0, xc, yc), (xc, 0, width, yc), (0, yc, xc, height), (xc, yc, width, height)]
    all_boxes, all_labels = [], []
    for index, (sample, (qx0, qy0, qx1, qy1)) in enumerate(zip(samples, quadrants, strict=True)):
        quad_w, quad_h = qx1 - qx0, qy1 - qy0
        src_h, src_w = sample.hw
        scale = min(quad_w / src_w, quad_h / src_h)
        new_w = min(quad_w, max(1, round(src_w * scale)))
        new_h = min(quad_h, max(1, round(src_h * scale)))
        placed = resize(sample, (new_h, new_w))
        left = xc - new_w if index in (0, 2) else xc  # against the centre
        top = yc - new_h if index in (0, 1) else yc
        canvas[top : top + new_h, left : left + new_w] = placed.image
        all_boxes.append(placed.boxes.astype(np.float64) + np.array([left, top, left, top]))
        all_labels.append(placed.labels)
    boxes = _clip(np.concatenate(all_boxes), (height, width))
    merged = Annotated(canvas, boxes, np.concatenate(all_labels))
    return sanitize(merged, min_size)


def mixup(
    first: Annotated,
    second: Annotated,
    rng: np.random.Generator,
    ratio_range: tuple[float, float] = (0.4, 0.6),
) -> Annotated:
    """Blend ``r * first + (1 - r) * second`` (rounded to uint8) with ``r ~ U(ratio_range)``,
    the one number drawn; ``second`` is first stretched to ``first``'s size (:func:`resize`).
    Boxes and labels: ``first``'s, then ``second``'s (scaled)."""
    ratio = float(rng.uniform(*ratio_range))
    other = resize(second, first.hw)
    blended = first.image.astype(np.float32) * ratio + other.image.astype(np.float32) * (
        1.0 - ratio
    )
    image = np.rint(blended).clip(0, 255).astype(np.uint8)
    boxes = np.concatenate([first.boxes, other.boxes])
    return Annotated(image, boxes, np.concatenate([first.labels, other.labels]))


def _covered_fraction(
    boxes: np.ndarray,  # (N, 4) xyxy
    mask: np.ndarray,  # (H, W) float, 1 where covered
) -> np.ndarray:  # (N,) float64 in [0, 1]
    """Exact fraction of each (fractional) box's area on covered pixels; 1 for empty boxes."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    height, width = mask.shape
    cols, rows = np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64)
    # overlap of each box with each pixel column / row: (N, W), (N, H)
    wx = (np.minimum(boxes[:, 2:3], cols + 1) - np.maximum(boxes[:, 0:1], cols)).clip(0)
    wy = (np.minimum(boxes[:, 3:4], rows + 1) - np.maximum(boxes[:, 1:2], rows)).clip(0)
    covered = ((wy @ mask) * wx).sum(axis=1)  # (N,)
    area = wx.sum(axis=1) * wy.sum(axis=1)
    return np.divide(covered, area, out=np.ones_like(covered), where=area > 0)


def copy_paste(
    target: Annotated,
    donor: Annotated,
    rng: np.random.Generator,
    max_objects: int = 3,
    occlusion_drop: float = 0.7,
) -> Annotated:
    """Box-level copy-paste (no masks).

    ``k ~ U{1, ..., min(max_objects, N_donor)}`` distinct donor boxes (after
    :func:`sanitize`) are chosen; each one's pixel patch (the box rounded outwards to whole
    pixels) is pasted, in order, at a uniformly random integer position of the target,
    shrunk (aspect kept) first if larger than the target. Then every box (the target's and
    the earlier pasted ones) with more than ``occlusion_drop`` of its area under the patches
    pasted over it is removed. Output: surviving target boxes, then surviving pasted boxes,
    labels following. Returns the target (copied) when the donor has no boxes.
    """
    height, width = target.hw
    donor = sanitize(donor, min_size=1.0)
    count = len(donor.boxes)
    if count == 0 or max_objects < 1:
        return _copy(target)
    k = int(rng.integers(1, min(max_objects, count) + 1))
    chosen = rng.choice(count, size=k, replace=False)
    image = target.image.copy()
    pasted_boxes, rects = [], []
    for index in chosen:
        box = donor.boxes[index].astype(np.float64)
        x0, y0 = math.floor(box[0]), math.floor(box[1])
        x1, y1 = math.ceil(box[2]), math.ceil(box[3])
        patch = donor.image[y0:y1, x0:x1]
        patch_h, patch_w = patch.shape[:2]
        box = box - np.array([x0, y0, x0, y0])  # in patch pixels
        scale = min(1.0, height / patch_h, width / patch_w)
        if scale < 1.0:
            new_h = min(height, max(1, round(patch_h * scale)))
            new_w = min(width, max(1, round(patch_w * scale)))
            box = box * np.array([new_w / patch_w, new_h / patch_h] * 2)
            patch = resize_image(patch, (new_h, new_w))
            patch_h, patch_w = new_h, new_w
        px = int(rng.integers(0, width - patch_w + 1))
        py = int(rng.integers(0, height - patch_h + 1))
        image[py : py + patch_h, px : px + patch_w] = patch
        pasted_boxes.append(box + np.array([px, py, px, py]))
        rects.append((px, py, px + patch_w, py + patch_h))
    # Each pasted box is occluded only by the patches pasted after it; the target's by all.
    mask = np.zeros((height, width), dtype=np.float64)
    keep_pasted = np.zeros(k, dtype=bool)
    for j in reversed(range(k)):
        keep_pasted[j] = _covered_fraction(pasted_boxes[j], mask)[0] <= occlusion_drop
        rx0, ry0, rx1, ry1 = rects[j]
        mask[ry0:ry1, rx0:rx1] = 1.0
    keep_target = _covered_fraction(target.boxes, mask) <= occlusion_drop
    pasted = np.stack(pasted_boxes)[keep_pasted]  # (k', 4)
    boxes = np.concatenate([target.boxes[keep_target], _clip(pasted, (height, width))])
    labels = np.concatenate([target.labels[keep_target], donor.labels[chosen][keep_pasted]])
    return Annotated(image, boxes, labels)
