"""The one ground truth evaluation runs against: the records the loader accepted, as COCO.

Evaluation never reads the labels file again. Whatever the loader validated and repaired (areas
filled, ``num_keypoints`` recounted, keypoints read from another field or joined from several,
keypoints mapped onto the run's schema, unlabelled frames left out, image-level ignore regions)
is what COCOeval sees, through :func:`keypoint_ground_truth`. For a valid file that needed no
repair, COCOeval on this dict gives the same stats as on the file itself.

People without a labelled keypoint stay non-crowd annotations with ``num_keypoints`` 0, which
COCOeval ignores (a prediction matched to one is neither a true nor a false positive); crowd
and image-level regions stay crowd regions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from posekit.data.coco import CocoKeypoints, PersonImage
from posekit.data.mpii import MPII_KEYPOINTS, mpii_pckh
from posekit.evaluation import box_norm, evaluate_keypoints, pck
from posekit.schema import KeypointSchema


def keypoint_ground_truth(data: CocoKeypoints) -> dict[str, Any]:
    """A COCO keypoint dict of ``data``'s records, in the file's category ids."""
    images, annotations = [], []
    for record in data.images:
        images.append(
            {"id": record.image_id, "file_name": record.file_name,
             "width": record.width, "height": record.height}
        )  # fmt: skip
        annotations.extend(_record_annotations(record))
    _number_unassigned(annotations)
    keypoint_names = list(data.schema.keypoints)
    skeleton = [[a + 1, b + 1] for a, b in data.schema.skeleton]
    categories = [
        {"id": c.id, "name": c.name, "keypoints": keypoint_names, "skeleton": skeleton}
        for c in data.categories
    ]
    return {"images": images, "annotations": annotations, "categories": categories}


def _record_annotations(record: PersonImage) -> list[dict[str, Any]]:
    count = record.keypoints.shape[1]
    entries = []
    categories = _column(record.category_ids, record.num_persons, 1)
    for keypoints, box, area, ann_id, category in zip(
        record.keypoints, record.boxes, record.areas, record.annotation_ids, categories,
        strict=True,
    ):  # fmt: skip
        entries.append(
            {"id": int(ann_id), "image_id": record.image_id, "category_id": int(category),
             "iscrowd": 0, "keypoints": keypoints.reshape(-1).tolist(), "bbox": box.tolist(),
             "area": float(area), "num_keypoints": int((keypoints[:, 2] > 0).sum())}
        )  # fmt: skip
    regions = len(record.ignore_boxes)
    for box, area, ann_id, category, crowd in zip(
        record.ignore_boxes,
        _column(record.ignore_areas, regions, None, record.ignore_boxes),
        _column(record.ignore_annotation_ids, regions, -1),
        _column(record.ignore_category_ids, regions, 1),
        _column(record.ignore_crowd, regions, True),
        strict=True,
    ):
        entries.append(
            {"id": int(ann_id), "image_id": record.image_id, "category_id": int(category),
             "iscrowd": int(bool(crowd)), "keypoints": [0.0] * (3 * count),
             "bbox": box.tolist(), "area": float(area), "num_keypoints": 0}
        )  # fmt: skip
    return entries


def _column(
    values: np.ndarray, count: int, default: Any, boxes: np.ndarray | None = None
) -> np.ndarray:
    """A per-annotation column, or its default where a record was built without it (prepared
    labels: category 1, crowd regions, box areas, ids assigned later)."""
    if len(values) == count:
        return values
    if boxes is not None:
        return (boxes[:, 2] * boxes[:, 3]).astype(np.float64)
    return np.full(count, default)


def _number_unassigned(annotations: list[dict[str, Any]]) -> None:
    """Annotations without an id of their own (-1) get fresh ones after the largest."""
    next_id = max([0, *(a["id"] for a in annotations)]) + 1
    for entry in annotations:
        if entry["id"] < 0:
            entry["id"] = next_id
            next_id += 1


def single_category_id(data: CocoKeypoints) -> int | None:
    """The category every prediction belongs to when the set has one, else None (a model
    that does not tell categories apart is then scored with COCOeval's ``useCats = 0``)."""
    return data.categories[0].id if len(data.categories) == 1 else None


def score_keypoint_results(
    data: CocoKeypoints,
    results: list[dict[str, Any]],
    use_categories: bool = True,
    backend: str = "fast",
) -> dict[str, float]:
    """COCO keypoint AP/AR of ``results`` against ``data``'s records (the schema's sigmas)."""
    return evaluate_keypoints(
        keypoint_ground_truth(data),
        results,
        data.schema.sigmas_array(),
        backend=backend,
        use_categories=use_categories,
    )


def metric_name(schema: KeypointSchema, data: CocoKeypoints | None) -> str:
    """What a run reports and selects ``best.pth`` by: COCO ``AP`` with the schema's sigmas,
    else ``PCKh`` (@0.5 of the head size) where the labels give head sizes (MPII), else
    ``PCK`` (@0.2 of the box's longer side)."""
    if schema.has_sigmas:
        return "AP"
    if data is not None and any(r.head_sizes is not None for r in data.images):
        return "PCKh"
    return "PCK"


def pck_scores(
    data: CocoKeypoints,
    predictions: np.ndarray,  # (N, K, 2) one prediction per ground-truth person
    records: list[PersonImage],  # the records whose people, in order, make the N
) -> dict[str, float]:
    """PCKh (MPII's per-part table when the schema is MPII's) or PCK@0.2 of the box."""
    truths = np.concatenate([r.keypoints for r in records]) if records else np.zeros((0, 0, 3))
    if metric_name(data.schema, data) == "PCKh":
        heads = np.concatenate([_head_sizes(r) for r in records])
        if tuple(data.schema.keypoints) == MPII_KEYPOINTS:
            return mpii_pckh(predictions, truths, heads)
        return {"PCKh": pck(predictions, truths, heads, threshold=0.5)}
    if not len(truths):
        return {"PCK": 0.0}
    boxes = np.concatenate([r.boxes for r in records])
    return {"PCK": pck(predictions, truths, box_norm(boxes))}


def _head_sizes(record: PersonImage) -> np.ndarray:
    if record.head_sizes is None:
        return np.full(record.num_persons, np.nan, dtype=np.float32)
    return record.head_sizes


def pck_of_closest(
    data: CocoKeypoints,
    found: dict[int, np.ndarray],  # image id -> (P, K, >=2) predicted keypoints
) -> dict[str, float]:
    """PCK / PCKh of each ground-truth person against the prediction of its image closest to
    it over its labelled keypoints (none: counted as missed)."""
    predictions, records = [], []
    for record in data.images:
        people = found.get(record.image_id, np.zeros((0, data.schema.num_keypoints, 3)))
        for gt in record.keypoints:
            if len(people):
                labelled = gt[:, 2] > 0
                dist = np.linalg.norm(people[:, :, :2] - gt[None, :, :2], axis=-1)
                best = int(np.argmin(np.where(labelled, dist, 0).sum(axis=1)))
                predictions.append(people[best, :, :2])
            else:
                predictions.append(np.full((gt.shape[0], 2), -1e6, dtype=np.float32))
        records.append(record)
    stacked = np.stack(predictions) if predictions else np.zeros((0, 0, 2), np.float32)
    return pck_scores(data, stacked, records)
