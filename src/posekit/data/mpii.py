"""MPII Human Pose: its converted JSON turned into COCO keypoints, and its PCKh score.

The MPII labels most people have (the JSON files first published with the "simple baselines"
and HRNet code, e.g. ``mpii_train.json`` / ``mpii_val.json``) are not COCO-shaped: the file is
a JSON *list*, one entry per person, and several entries may name the same image::

    {"image": "015601864.jpg",       # file name, relative to the images folder
     "center": [594.0, 257.0],       # person centre (x, y)
     "scale": 3.021,                 # person height / 200 px
     "joints": [[620.0, 394.0], ...],  # 16 x [x, y]
     "joints_vis": [1, 1, 0, ...]}   # 16 flags: 1 = labelled, 0 = not labelled

Conventions, as MMPose reads the file (``MpiiDataset`` and ``MpiiPCKAccuracy``):

* Coordinates are MATLAB's, 1-based: the centre of the top-left pixel is (1, 1). posekit works
  in 0-based pixels, so 1 is subtracted from every labelled joint and from the centre.
* ``joints_vis`` says whether a joint was *labelled*, not whether it is visible (MPII's own
  occlusion flag is not in this JSON). Unlabelled joints carry [-1, -1]. A labelled joint
  becomes v = 2 in COCO terms; an unlabelled one becomes (0, 0, 0).
* The person box is a square of side ``200 * scale`` around the centre moved 15 px (at
  ``scale`` 1, i.e. ``15 * scale`` px) down, "so that limbs are not cropped"; a centre of -1 is
  left where it is. The box itself is not padded: MMPose adds its 1.25 context padding when it
  crops (``GetBBoxCenterScale``), which posekit's ``bbox_padding`` (1.25 by default) does too,
  so putting it in the box as well would pad twice. Boxes are not clipped to the image.
* PCKh normalises distances by a head size: MPII's official value is 0.6 times the diagonal of
  the person's head rectangle, which ships in ``mpii_gt_val.mat`` (``headboxes_src``, one box
  per entry of ``mpii_val.json``, in file order). See :func:`estimate_head_size` for the value
  used when that file is not given.
* PCKh counts a joint as correct when its distance to the ground truth is *strictly* below
  ``threshold * head_size``. Pelvis and thorax are left out of the overall score.
"""

from __future__ import annotations

import math
import os
import reprlib
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from posekit.data.images import read_image
from posekit.errors import DataError

NUM_JOINTS = 16
MPII_KEYPOINTS: tuple[str, ...] = (
    "right_ankle",
    "right_knee",
    "right_hip",
    "left_hip",
    "left_knee",
    "left_ankle",
    "pelvis",
    "thorax",
    "upper_neck",
    "head_top",
    "right_wrist",
    "right_elbow",
    "right_shoulder",
    "left_shoulder",
    "left_elbow",
    "left_wrist",
)
UPPER_NECK, HEAD_TOP = 8, 9

PIXEL_STD = 200.0
"""MPII's ``scale`` is the person's height in units of 200 px."""
CENTRE_SHIFT = 15.0
"""The centre is moved this many pixels (at scale 1) down before the box is built."""
HEAD_SIZE_BIAS = 0.6
"""MPII's ``SC_BIAS``: the head size is 0.6 times the head rectangle's diagonal."""
HEAD_SEGMENT_RATIO = 0.75
"""Head size per unit of upper_neck-head_top distance (see :func:`estimate_head_size`)."""

_REQUIRED_KEYS = ("image", "center", "scale", "joints", "joints_vis")
_JOINTS = "16 [x, y] pairs, MPII's joints in order (unlabelled ones [-1, -1])"
_FLAGS = "16 numbers (1 = labelled, 0 = not)"
_FORMAT_HINT = "each entry needs image, center [x, y], scale, joints (16 x [x, y]), joints_vis (16)"
PCKH_PARTS: dict[str, tuple[int, ...]] = {
    "Head": (HEAD_TOP,),
    "Shoulder": (12, 13),
    "Elbow": (11, 14),
    "Wrist": (10, 15),
    "Hip": (2, 3),
    "Knee": (1, 4),
    "Ankle": (0, 5),
}
PCKH_MEAN_JOINTS: tuple[int, ...] = tuple(j for j in range(NUM_JOINTS) if j not in (6, 7))
"""Joints in the overall PCKh: all but pelvis (6) and thorax (7)."""


class MpiiEntry(NamedTuple):
    """One checked entry, still in MPII's 1-based coordinates."""

    image: str
    center: np.ndarray  # (2,) float64
    scale: float
    joints: np.ndarray  # (16, 2) float64
    labelled: np.ndarray  # (16,) bool


def is_mpii_entries(data: Any) -> bool:
    """True for MPII's converted JSON: a non-empty list whose first item is a dict with
    ``joints``, ``joints_vis``, ``center``, ``scale`` and ``image``."""
    return (
        isinstance(data, list)
        and len(data) > 0
        and isinstance(data[0], dict)
        and all(key in data[0] for key in _REQUIRED_KEYS)
    )


def mpii_to_coco(
    entries: list, source: str, images_root: Path, head_boxes: Path | None = None
) -> dict:
    """MPII's converted JSON (already parsed) as a COCO keypoint dict.

    One image per distinct ``image`` (ids 1..n in order of first appearance, sizes read from
    the files under ``images_root``) and one annotation per entry (id = entry index + 1), with
    0-based keypoints, the box MMPose derives from centre and scale, and a float ``head_size``:
    the official one from ``head_boxes`` (MPII's ``mpii_gt_val.mat``) when given, else
    :func:`estimate_head_size` (NaN when upper_neck or head_top is unlabelled; such a person is
    left out of PCKh). ``source`` names the file in error messages. DataError on bad input.
    """
    if not isinstance(entries, list):
        raise DataError(
            f"{source}: expected a JSON list of MPII person entries, got "
            f"{type(entries).__name__}; {_FORMAT_HINT}"
        )
    checked = [check_entry(entry, index, source) for index, entry in enumerate(entries)]
    if head_boxes is not None:
        head_sizes = load_head_sizes(head_boxes, len(checked), source)
    else:
        head_sizes = [estimate_head_size(entry.joints, entry.labelled) for entry in checked]
    images, image_ids = _coco_images(checked, source, Path(images_root))
    annotations = [
        _coco_annotation(entry, index, image_ids[entry.image], head_sizes[index])
        for index, entry in enumerate(checked)
    ]
    categories = [{"id": 1, "name": "person", "keypoints": list(MPII_KEYPOINTS), "skeleton": []}]
    return {"images": images, "annotations": annotations, "categories": categories}


def check_entry(entry: Any, index: int, source: str) -> MpiiEntry:
    """Validate one entry; DataError naming ``source`` and the entry index otherwise."""
    where = f"{source}: entry {index}"
    if not isinstance(entry, dict):
        raise DataError(f"{where} is a {type(entry).__name__}, not an object; {_FORMAT_HINT}")
    missing = [key for key in _REQUIRED_KEYS if key not in entry]
    if missing:
        raise DataError(f"{where} has no {', '.join(map(repr, missing))}; {_FORMAT_HINT}")
    image = entry["image"]
    if not isinstance(image, str) or not image:
        raise DataError(f"{where}: 'image' must be a non-empty file name, got {image!r}")
    center = _numbers(entry["center"], (2,), f"{where}: 'center'", "[x, y]")
    scale = float(_numbers(entry["scale"], (), f"{where}: 'scale'", "a number"))
    joints = _numbers(entry["joints"], (NUM_JOINTS, 2), f"{where}: 'joints'", _JOINTS)
    flags = _numbers(entry["joints_vis"], (NUM_JOINTS,), f"{where}: 'joints_vis'", _FLAGS)
    if not (np.isfinite(center).all() and math.isfinite(scale) and scale > 0):
        raise DataError(
            f"{where}: 'center' must be finite and 'scale' positive (got {entry['center']!r}, "
            f"{entry['scale']!r}); fix or remove the entry"
        )
    labelled = flags > 0
    if not np.isfinite(joints[labelled]).all():
        raise DataError(f"{where}: a labelled joint is not finite; fix it or set its joints_vis 0")
    return MpiiEntry(image, center, scale, joints, labelled)


def _numbers(value: Any, shape: tuple[int, ...], what: str, expected: str) -> np.ndarray:
    """``value`` as a float64 array of ``shape``; DataError (naming ``what``) otherwise."""
    array = None
    if _is_numeric_tree(value) and _is_rectangular(value):
        try:
            array = np.asarray(value, dtype=np.float64)
        except OverflowError:  # an integer too big for a float
            array = None
    if array is None or array.shape != shape:
        raise DataError(f"{what} must be {expected}, got {reprlib.repr(value)}; fix the entry")
    return array


def _is_numeric_tree(value: Any) -> bool:
    if isinstance(value, list):
        return all(_is_numeric_tree(item) for item in value)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_rectangular(value: Any) -> bool:
    if not isinstance(value, list) or not value:
        return True
    if not all(isinstance(item, list) == isinstance(value[0], list) for item in value):
        return False
    if not isinstance(value[0], list):
        return True
    return len({len(item) for item in value}) == 1 and all(_is_rectangular(v) for v in value)


def mpii_bbox(center: np.ndarray, scale: float) -> list[float]:
    """COCO ``[x, y, w, h]`` (0-based pixels) from MPII's 1-based centre and scale, as MMPose:
    a ``200 * scale`` square around the centre moved ``15 * scale`` px down (unless the
    centre's x is -1, MPII's "no centre"), then moved by -1 px to 0-based. Not padded."""
    side = scale * PIXEL_STD
    cx, cy = float(center[0]), float(center[1])
    if cx != -1:
        cy += CENTRE_SHIFT / PIXEL_STD * side
    cx, cy = cx - 1.0, cy - 1.0
    return [cx - side / 2, cy - side / 2, side, side]


def estimate_head_size(joints: np.ndarray, labelled: np.ndarray) -> float:
    """PCKh head size without ``mpii_gt_val.mat``: 0.75 * |head_top - upper_neck|.

    Why 0.75: in MPII's labels, upper_neck and head_top are not free clicks but follow from
    the head rectangle (x1, y1, x2, y2) whose diagonal gives the official head size (0.6 *
    diagonal). The two points are fractional while their midpoint is always a whole or half
    pixel: the rectangle's centre. Measured on persons whose rectangles are known, the
    segment between them is 0.8 of the diagonal (diagonal / segment = 1.2500 to the JSON's
    4 decimals), so 0.6 * diagonal = 0.6 / 0.8 * segment = 0.75 * segment. Plain
    |head_top - upper_neck| would overstate the head size by a third (PCKh too lenient).
    Entries whose head joints are not both labelled get NaN (no head size: left out of PCKh).
    """
    if not (labelled[UPPER_NECK] and labelled[HEAD_TOP]):
        return math.nan
    segment = float(np.linalg.norm(joints[HEAD_TOP] - joints[UPPER_NECK]))
    return HEAD_SEGMENT_RATIO * segment


def load_head_sizes(path: Path, count: int, source: str) -> list[float]:
    """Official head sizes from MPII's ``mpii_gt_val.mat``: 0.6 * the diagonal of each
    ``headboxes_src[:, :, i]`` (rows (x1, y1), (x2, y2)), one per entry in file order."""
    from scipy.io import loadmat  # scipy is slow to import; only this path needs it

    try:
        boxes = loadmat(str(path)).get("headboxes_src")
    except FileNotFoundError:
        raise DataError(f"{path}: head boxes file not found; pass MPII's mpii_gt_val.mat") from None
    except Exception as exc:  # scipy raises many types for a file that is not a .mat
        raise DataError(f"{path}: not a readable MATLAB .mat file ({exc})") from None
    if boxes is None or np.ndim(boxes) != 3 or np.shape(boxes)[:2] != (2, 2):
        raise DataError(
            f"{path}: no 'headboxes_src' of shape (2, 2, N); is this MPII's mpii_gt_val.mat?"
        )
    if boxes.shape[2] != count:
        raise DataError(
            f"{path}: {boxes.shape[2]} head boxes for {count} entries in {source}; the boxes "
            "match mpii_val.json entry by entry, so pass that file or no head boxes"
        )
    boxes = np.transpose(np.asarray(boxes, dtype=np.float64), (2, 0, 1))  # (N, 2 corners, xy)
    sizes = HEAD_SIZE_BIAS * np.linalg.norm(boxes[:, 1] - boxes[:, 0], axis=1)
    return [float(size) for size in sizes]


def _coco_images(
    entries: list[MpiiEntry], source: str, images_root: Path
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """COCO images (ids 1..n in first-appearance order) and the id of each file name."""
    images: list[dict[str, Any]] = []
    ids: dict[str, int] = {}
    for index, entry in enumerate(entries):
        if entry.image in ids:
            continue
        height, width = _image_size(images_root, entry.image, f"{source}: entry {index}")
        ids[entry.image] = len(images) + 1
        images.append(
            {"id": ids[entry.image], "file_name": entry.image, "width": width, "height": height}
        )
    return images, ids


def _image_size(images_root: Path, name: str, where: str) -> tuple[int, int]:
    """(height, width) of ``images_root / name`` as posekit decodes it (EXIF honoured)."""
    if os.path.isabs(name) or os.pardir in Path(name).parts:
        raise DataError(f"{where}: image {name!r} must be a relative path inside {images_root}")
    try:
        image = read_image(images_root / name)
    except DataError as exc:
        raise DataError(f"{where}: image {name!r}: {exc}") from None
    return int(image.shape[0]), int(image.shape[1])


def _coco_annotation(
    entry: MpiiEntry, index: int, image_id: int, head_size: float
) -> dict[str, Any]:
    keypoints: list[float | int] = []
    for (x, y), labelled in zip(entry.joints.tolist(), entry.labelled.tolist(), strict=True):
        keypoints += [x - 1.0, y - 1.0, 2] if labelled else [0.0, 0.0, 0]
    bbox = mpii_bbox(entry.center, entry.scale)
    return {
        "id": index + 1,
        "image_id": image_id,
        "category_id": 1,
        "iscrowd": 0,
        "keypoints": keypoints,
        "num_keypoints": int(entry.labelled.sum()),
        "bbox": bbox,
        "area": bbox[2] * bbox[3],
        "head_size": float(head_size),
    }


def mpii_pckh(
    pred: np.ndarray, gt: np.ndarray, head_sizes: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """MPII's PCKh table, as MMPose's ``MpiiPCKAccuracy`` reports it, as fractions in [0, 1]
    (MMPose prints the same numbers times 100, as percentages).

    ``pred`` (N, 16, 2) and ``gt`` (N, 16, 3: x, y, v) must be in the same pixel frame (0-based
    for what :func:`mpii_to_coco` writes; MMPose adds 1 to its predictions because its ground
    truth stays 1-based). ``head_sizes`` (N,) normalises each person's distances; persons
    whose head size is NaN, infinite or not positive are left out, as are joints with v = 0.
    A joint is correct when ``distance < threshold * head_size`` (strictly).

    Keys: Head (head_top), Shoulder, Elbow, Wrist, Hip, Knee, Ankle (each the mean of the
    right and left joint's accuracy; NaN where no joint of the part is labelled), ``PCKh``
    (all joints but pelvis and thorax, each weighted by its number of labelled instances, i.e.
    correct / labelled over those joints) and ``PCKh@0.1`` (the same at threshold 0.1).
    """
    pred, gt, head_sizes = _checked_pckh_inputs(pred, gt, head_sizes, threshold)
    usable = np.isfinite(head_sizes) & (head_sizes > 0)
    valid = (gt[:, :, 2] > 0) & usable[:, None]
    scale = np.where(usable, head_sizes, 1.0)[:, None]
    distances = np.linalg.norm(pred - gt[:, :, :2], axis=-1) / scale
    per_joint = _joint_accuracy(distances, valid, threshold)
    table = {name: _nanmean(per_joint[list(joints)]) for name, joints in PCKH_PARTS.items()}
    table["PCKh"] = _overall(distances, valid, threshold)
    table["PCKh@0.1"] = _overall(distances, valid, 0.1)
    return table


def _checked_pckh_inputs(
    pred: np.ndarray, gt: np.ndarray, head_sizes: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    head_sizes = np.asarray(head_sizes, dtype=np.float64).reshape(-1)
    n = gt.shape[0] if gt.ndim == 3 else -1
    if gt.shape != (n, NUM_JOINTS, 3) or pred.shape != (n, NUM_JOINTS, 2):
        raise ValueError(
            f"expected pred (N, 16, 2) and gt (N, 16, 3), got {pred.shape} and {gt.shape}"
        )
    if head_sizes.shape != (n,):
        raise ValueError(f"expected {n} head sizes, got {head_sizes.shape[0]}")
    if not (math.isfinite(threshold) and threshold >= 0):
        raise ValueError(f"threshold must be a finite number >= 0, got {threshold}")
    return pred, gt, head_sizes


def _joint_accuracy(distances: np.ndarray, valid: np.ndarray, threshold: float) -> np.ndarray:
    """(16,) fraction of labelled instances within the threshold; NaN where none is labelled."""
    correct = (valid & (distances < threshold)).sum(axis=0)
    counts = valid.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, correct / np.maximum(counts, 1), np.nan)


def _overall(distances: np.ndarray, valid: np.ndarray, threshold: float) -> float:
    """Correct / labelled over the joints in the mean: MMPose's count-weighted average."""
    columns = list(PCKH_MEAN_JOINTS)
    labelled = valid[:, columns]
    count = int(labelled.sum())
    if count == 0:
        return math.nan
    return float((labelled & (distances[:, columns] < threshold)).sum() / count)


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else math.nan
