"""Labels in every form posekit reads, as one :class:`CocoKeypoints`: a COCO keypoint JSON, an
Ultralytics YOLO pose ``data.yaml`` (its ``train`` or ``val`` split), MPII's converted JSON
(a list of ``image``/``center``/``scale``/``joints``/``joints_vis`` entries), or the prepared
labels of Lightweight OpenPose (``posekit prepare`` JSON, or the original's ``.pkl`` read
through the restricted unpickler). The first three go through the one COCO parser, so they
are validated, repaired and evaluated alike.

A prepared record is one chosen person with the other people of its image; it becomes one
:class:`PersonImage` whose people are that person and the others, with the record's crowd
segmentations as ignore regions. An image with several chosen people thus appears once per
chosen person, as the original samples it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from posekit.data.coco import (
    CocoKeypoints,
    PersonImage,
    gc_paused,
    load_coco_keypoints,
    parse_coco_keypoints,
    read_json,
)
from posekit.data.mpii import is_mpii_entries, mpii_to_coco
from posekit.data.prepared_labels import load_prepared_labels
from posekit.data.ultralytics import read_yolo_split
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
    images_root: str | Path | None,
    schema: KeypointSchema,
    category_ids: list[int] | None = None,
    keypoints_field: str = "keypoints",
    split: str = "train",
    head_boxes: str | Path | None = None,
) -> CocoKeypoints:
    """The labels at ``labels`` in whichever form they are (``split`` picks a YOLO data set's
    split; ``head_boxes`` is MPII's ``mpii_gt_val.mat``). ``images_root`` may be None for a
    YOLO data set, whose data.yaml says where its images are."""
    path = Path(labels)
    try:
        found = path.is_file()
    except OSError:  # e.g. a name too long for the file system
        found = False
    if not found:
        raise DataError(f"labels file {path} not found; check the path")
    if is_yolo_data_yaml(path):
        return _load_yolo(path, images_root, schema, split)
    if images_root is None:
        raise DataError(f"{path}: give the images folder of these labels")
    if not is_prepared_labels(path):
        return load_coco_keypoints(path, images_root, schema, category_ids, keypoints_field)
    if looks_like_mpii(path):
        with gc_paused():
            data = read_json(path)
            if is_mpii_entries(data):
                coco = mpii_to_coco(data, str(path), Path(images_root), _optional(head_boxes))
                return _from_coco_dict(coco, path, Path(images_root), schema, category_ids)
    records = load_prepared_labels(path)
    images = [prepared_record_to_image(r, schema, path, i) for i, r in enumerate(records)]
    return CocoKeypoints(images, schema, path, Path(images_root))


def is_yolo_data_yaml(path: Path) -> bool:
    return path.suffix.lower() in (".yaml", ".yml")


def _optional(path: str | Path | None) -> Path | None:
    return None if path is None else Path(path)


def looks_like_mpii(path: Path) -> bool:
    """MPII's list names ``joints_vis`` in its first entry; prepared labels never do."""
    try:
        with path.open("rb") as handle:
            return b'"joints_vis"' in handle.read(4096)
    except OSError:
        return False


def _from_coco_dict(
    coco: dict[str, Any], path: Path, images_root: Path, schema: KeypointSchema,
    category_ids: list[int] | None, source: str | None = None,
) -> CocoKeypoints:  # fmt: skip
    parsed = parse_coco_keypoints(coco, source or str(path), schema, category_ids)
    return CocoKeypoints(
        parsed.images, schema, path, images_root,
        categories=parsed.categories, repairs=parsed.repairs,
    )  # fmt: skip


def _load_yolo(
    path: Path, images_root: str | Path | None, schema: KeypointSchema, split: str
) -> CocoKeypoints:
    """A YOLO pose split through the COCO parser. Keypoint names the data.yaml does not give
    (``kpt_0``...) are not compared with the run's schema; given ones are."""
    found = read_yolo_split(path, split)
    coco = found.coco
    if found.schema.num_keypoints == schema.num_keypoints and not yolo_names_given(found.schema):
        coco = {**coco, "categories": [
            {k: v for k, v in c.items() if k != "keypoints"} for c in coco["categories"]
        ]}  # fmt: skip
    root = Path(images_root) if images_root is not None else found.images_root
    return _from_coco_dict(coco, path, root, schema, None, f"{path} ({split} split)")


def yolo_names_given(schema: KeypointSchema) -> bool:
    """False for the placeholder names ``kpt_0``, ``kpt_1``... of a data.yaml without names."""
    return list(schema.keypoints) != [f"kpt_{i}" for i in range(schema.num_keypoints)]


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
