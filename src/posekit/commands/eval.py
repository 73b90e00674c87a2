"""``posekit eval``: score a COCO keypoint results file from any tool, exactly as training does.

The labels go through the same loader (COCO JSON, YOLO data.yaml, MPII JSON), the same ground
truth (:mod:`posekit.data.ground_truth`) and the same choice of metric: COCO AP with the
schema's sigmas, MPII's PCKh, else PCK@0.2. Without ``--schema`` the built-in schema whose
keypoint names the file's category lists is used (coco17 when none matches).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from posekit.data.coco import CocoKeypoints, read_json
from posekit.data.ground_truth import metric_name, pck_of_closest, score_keypoint_results
from posekit.data.training_labels import is_yolo_data_yaml, load_training_labels, looks_like_mpii
from posekit.data.ultralytics import yolo_schema
from posekit.errors import DataError
from posekit.evaluation import format_metrics
from posekit.schema import KeypointSchema, builtin_schema_for_names, load_schema


def run_eval(
    labels: str,
    results: str,
    images: str | None = None,
    schema: str | None = None,
    as_json: bool = False,
    split: str = "val",
    out: TextIO | None = None,
    keypoints_field: str = "keypoints",
) -> dict[str, float]:
    """Print the metrics of ``results`` against ``labels``; with ``as_json`` the last line is
    the metrics object."""
    out = out if out is not None else sys.stdout
    labels_path = Path(labels)
    data = load_training_labels(
        labels_path,
        _images_root(labels_path, images),
        _schema_for(labels_path, schema, split),
        keypoints_field=keypoints_field,
        split=split,
    )
    entries = read_results(Path(results), data)
    if metric_name(data.schema, data) == "AP":
        metrics = score_keypoint_results(data, entries)
    else:
        metrics = pck_of_closest(data, _keypoints_by_image(entries, data.schema.num_keypoints))
    people = sum(record.num_persons for record in data.images)
    print(f"{len(entries)} results on {len(data)} images ({people} people) of {labels}", file=out)
    print(format_metrics(metrics), file=out)
    if as_json:
        print(json.dumps({k: round(float(v), 6) for k, v in metrics.items()}), file=out)
    return metrics


def _images_root(labels: Path, images: str | None) -> Path | None:
    if images is not None:
        return Path(images)
    if is_yolo_data_yaml(labels):
        return None  # the data.yaml says
    if looks_like_mpii(labels):
        raise DataError(f"{labels}: MPII labels need --images (image sizes are read from them)")
    return labels.parent  # COCO files: the images are not read


def _schema_for(labels: Path, schema: str | None, split: str) -> KeypointSchema:
    if schema is not None:
        return load_schema(schema)
    if is_yolo_data_yaml(labels):
        return yolo_schema(labels)
    if looks_like_mpii(labels):
        return load_schema("mpii")
    data = read_json(labels)
    categories = data.get("categories") if isinstance(data, dict) else None
    for category in categories or []:
        names = category.get("keypoints") if isinstance(category, dict) else None
        match = builtin_schema_for_names(names) if isinstance(names, list) else None
        if match is not None:
            return load_schema(match)
    return load_schema("coco17")


def read_results(path: Path, data: CocoKeypoints) -> list[dict[str, Any]]:
    """A COCO keypoint results list, each entry checked (one line naming the entry on error)."""
    entries = read_json(path)
    if not isinstance(entries, list):
        raise DataError(f"{path}: expected a JSON list of keypoint results (COCO results format)")
    known = {record.image_id for record in data.images}
    expected = 3 * data.schema.num_keypoints
    for index, entry in enumerate(entries):
        problem = _result_problem(entry, expected, known)
        if problem is not None:
            raise DataError(f"{path}: result {index}: {problem}; fix the results file")
    return entries


def _result_problem(entry: Any, expected: int, known: set[int]) -> str | None:
    if not isinstance(entry, dict):
        return "not an object"
    if type(entry.get("image_id")) is not int or entry["image_id"] not in known:
        return f"image_id {entry.get('image_id')!r} is not an image of the labels"
    points = entry.get("keypoints")
    if not isinstance(points, list) or len(points) != expected:
        count = len(points) if isinstance(points, list) else "no"
        return f"{count} keypoint values; the schema needs {expected} (x, y, score each)"
    if not all(_finite(v) for v in points) or not _finite(entry.get("score")):
        return "keypoints and score must be finite numbers"
    if type(entry.get("category_id", 1)) is not int:
        return "category_id must be an integer"
    return None


def _finite(value: Any) -> bool:
    return type(value) in (int, float) and np.isfinite(value)


def _keypoints_by_image(entries: list[dict[str, Any]], count: int) -> dict[int, np.ndarray]:
    found: dict[int, list[list[float]]] = {}
    for entry in entries:
        found.setdefault(entry["image_id"], []).append(entry["keypoints"])
    return {k: np.asarray(v, np.float64).reshape(-1, count, 3) for k, v in found.items()}
