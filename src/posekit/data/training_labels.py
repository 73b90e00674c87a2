"""Training labels in either form the bottom-up family accepts: a COCO keypoint JSON, or the
prepared labels of Lightweight OpenPose (``posekit prepare`` JSON, or the original's ``.pkl``
read through the restricted unpickler).

A prepared record is one chosen person with the other people of its image; it becomes one
:class:`PersonImage` whose people are that person and the others, with the record's crowd
segmentations as ignore regions. An image with several chosen people thus appears once per
chosen person, as the original samples it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from posekit.data.coco import CocoKeypoints, PersonImage, load_coco_keypoints
from posekit.data.prepared_labels import load_prepared_labels
from posekit.errors import DataError
from posekit.schema import KeypointSchema

# the original's visibility codes back to COCO's: 1 visible -> 2, 0 occluded -> 1, 2 -> 0
_COCO_VISIBILITY = {1: 2.0, 0: 1.0, 2: 0.0}


def is_prepared_labels(path: Path) -> bool:
    """``.pkl`` files, and JSON files whose top level is a list (COCO's is an object)."""
    if path.suffix.lower() in (".pkl", ".pickle"):
        return True
    try:
        with path.open("rb") as handle:
            head = handle.read(64).lstrip()
    except OSError:
        return False
    return head.startswith(b"[")


def load_training_labels(
    labels: str | Path,
    images_root: str | Path,
    schema: KeypointSchema,
    category_ids: list[int] | None = None,
    keypoints_field: str = "keypoints",
) -> CocoKeypoints:
    path = Path(labels)
    try:
        found = path.is_file()
    except OSError:  # e.g. a name too long for the file system
        found = False
    if not found:
        raise DataError(f"labels file {path} not found; check the path")
    if not is_prepared_labels(path):
        return load_coco_keypoints(path, images_root, schema, category_ids, keypoints_field)
    records = load_prepared_labels(path)
    images = [prepared_record_to_image(r, schema, path, i) for i, r in enumerate(records)]
    return CocoKeypoints(images, schema, path, Path(images_root))


def _keypoints(rows: Any, schema: KeypointSchema, where: str) -> np.ndarray:
    with np.errstate(over="ignore"):  # numbers beyond float32 become inf: refused below
        array = np.asarray(rows, dtype=np.float32).reshape(-1, 3)
    if array.shape[0] != schema.num_keypoints:
        raise DataError(
            f"{where}: {array.shape[0]} keypoints, schema {schema.name!r} has "
            f"{schema.num_keypoints}; pass the matching --schema"
        )
    if not np.isfinite(array).all():
        raise DataError(f"{where}: keypoints must be finite numbers")
    visibility = np.array([_COCO_VISIBILITY.get(int(v), 0.0) for v in array[:, 2]], np.float32)
    result = array.copy()
    result[:, 2] = visibility
    result[visibility == 0, :2] = 0
    return result


def prepared_record_to_image(
    record: dict[str, Any], schema: KeypointSchema, path: Path, index: int
) -> PersonImage:
    where = f"{path} record {index}"
    try:
        people = [record, *record.get("processed_other_annotations", [])]
        keypoints = np.stack([_keypoints(p["keypoints"], schema, where) for p in people])
        with np.errstate(over="ignore"):  # numbers beyond float32 become inf: refused below
            boxes = np.asarray([p["bbox"] for p in people], dtype=np.float32).reshape(-1, 4)
            areas = np.asarray([p["segment_area"] for p in people], dtype=np.float32)
        if not (np.isfinite(boxes).all() and np.isfinite(areas).all()):
            raise ValueError("bbox and segment_area must be finite numbers")
        segmentations = tuple(record.get("segmentations") or ())
        return PersonImage(
            image_id=int(record["image_id"]),
            file_name=str(record["img_paths"]),
            width=int(record["img_width"]),
            height=int(record["img_height"]),
            keypoints=keypoints,
            boxes=boxes,
            areas=areas,
            annotation_ids=np.full(len(people), -1, dtype=np.int64),
            ignore_segmentations=segmentations,
            ignore_boxes=np.zeros((len(segmentations), 4), dtype=np.float32),
        )
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise DataError(
            f"{where}: not a prepared-labels record ({type(exc).__name__}: {exc})"
        ) from None
