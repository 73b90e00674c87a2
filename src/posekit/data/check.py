"""The data set doctor behind ``posekit check-data --labels JSON --images DIR [--schema YAML]``.

Unlike the loader, which stops at the first unusable entry, :func:`check_dataset` walks the
whole file and lists every problem with its image and/or annotation id: missing, unreadable or
mis-sized images, file names escaping the images folder, duplicate ids, annotations on unknown
images, zero or negative boxes and areas, keypoint arrays of the wrong length for the schema,
labelled keypoints outside the image, bad visibility flags, and ``num_keypoints`` disagreeing
with the labelled keypoints. Exit status: 0 clean, 1 problems found; an unreadable labels file
or schema raises DataError / SchemaError (the CLI's status 2).
"""

from __future__ import annotations

import json
import os
import reprlib
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from posekit.data.coco import gc_paused, read_coco_json, resolve_image_path, select_category_ids
from posekit.data.images import read_image
from posekit.errors import DataError
from posekit.schema import KeypointSchema, load_schema


@dataclass(frozen=True)
class Problem:
    kind: str
    message: str
    image_id: int | None = None
    annotation_id: int | None = None

    def to_line(self) -> str:
        ids = [f"image_id={self.image_id}"] if self.image_id is not None else []
        ids += [f"annotation_id={self.annotation_id}"] if self.annotation_id is not None else []
        return f"{self.kind} {' '.join(ids)}: {_printable(self.message)}"


@dataclass
class CheckReport:
    labels_path: str
    images_root: str
    schema_name: str
    problems: list[Problem] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem_kinds(self) -> dict[str, int]:
        return dict(Counter(p.kind for p in self.problems))

    def summary(self) -> str:
        counts = ", ".join(f"{value} {key}" for key, value in self.counts.items())
        verdict = "no problems found" if self.ok else f"{len(self.problems)} problems"
        return f"check-data {self.labels_path} (schema {self.schema_name}): {counts}: {verdict}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "labels": self.labels_path,
            "images_root": self.images_root,
            "schema": self.schema_name,
            "ok": self.ok,
            "counts": self.counts,
            "problem_kinds": self.problem_kinds(),
            "problems": [asdict(p) for p in self.problems],
        }


def run_check_data(
    labels: str | Path,
    images: str | Path,
    schema_name_or_path: str | Path = "coco17",
    as_json: bool = False,
    out: TextIO | None = None,
    keypoints_field: str = "keypoints",
) -> int:
    """Check a data set and print the report; returns 0 when clean, 1 when problems were found."""
    out = sys.stdout if out is None else out  # looked up now: sys.stdout may be replaced
    schema = load_schema(schema_name_or_path)
    report = check_dataset(labels, images, schema, keypoints_field=keypoints_field)
    if as_json:
        out.write(json.dumps(report.to_dict()) + "\n")
    else:
        out.write(report.summary() + "\n")
        out.writelines(problem.to_line() + "\n" for problem in report.problems)
    return 0 if report.ok else 1


def check_dataset(
    labels_path: str | Path,
    images_root: str | Path,
    schema: KeypointSchema,
    keypoints_field: str = "keypoints",
    category_ids: list[int] | None = None,
    check_images: bool = True,
) -> CheckReport:
    """Every problem in a COCO keypoint data set; DataError only if the JSON is unusable."""
    report = CheckReport(str(labels_path), str(images_root), schema.name)
    if check_images and not _is_dir(Path(images_root)):
        raise DataError(f"{images_root}: images folder not found; check --images")
    with gc_paused():
        data = read_coco_json(labels_path)
        selected = select_category_ids(data, category_ids, str(labels_path))
        images, entry_problems = _image_entries(data["images"])
        file_problems = _image_file_problems(images, Path(images_root)) if check_images else []
        counts, annotation_problems = _check_annotations(
            data["annotations"], images, selected, schema, keypoints_field
        )
        report.problems = entry_problems + file_problems + annotation_problems
        report.counts = {"images": len(data["images"]), **counts}
        del data, images
    return report


def _image_entries(entries: list[Any]) -> tuple[dict[int, dict[str, Any]], list[Problem]]:
    """Image entries by id (first of duplicates), and the problems of malformed entries."""
    images: dict[int, dict[str, Any]] = {}
    problems: list[Problem] = []
    for position, entry in enumerate(entries):
        image_id = entry.get("id") if isinstance(entry, dict) else None
        if type(image_id) is not int:
            problems.append(Problem("bad_image_entry", f"images[{position}] has no integer 'id'"))
            continue
        if image_id in images:
            problems.append(Problem("duplicate_image_id", "image id used twice", image_id))
            continue
        sizes = [entry.get("width"), entry.get("height")]
        if not all(type(v) is int and v > 0 for v in sizes):
            message = f"width/height must be positive integers, got {reprlib.repr(sizes)}"
            problems.append(Problem("bad_image_entry", message, image_id))
        if not _has_file_name(entry):
            problems.append(Problem("bad_image_entry", "no string 'file_name'", image_id))
        images[image_id] = entry
    return images, problems


def _image_file_problems(images: dict[int, dict[str, Any]], root: Path) -> list[Problem]:
    """Decode every image (in threads: OpenCV releases the GIL) and compare its size."""
    entries = [entry for entry in images.values() if _has_file_name(entry)]
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        found = pool.map(lambda entry: _image_file_problem(entry, root), entries)
        return [problem for problem in found if problem is not None]


def _image_file_problem(entry: dict[str, Any], root: Path) -> Problem | None:
    image_id = entry["id"]
    try:
        path = resolve_image_path(root, entry["file_name"])
    except DataError as exc:
        return Problem("unsafe_file_name", str(exc), image_id)
    try:
        found = path.exists()  # a folder, pipe or device is named by read_image's message
    except OSError as exc:  # e.g. a file name too long for the file system
        return Problem("missing_image", f"{path} cannot be looked up ({exc.strerror})", image_id)
    if not found:
        return Problem("missing_image", f"{path} not found", image_id)
    try:
        height, width = read_image(path).shape[:2]
    except DataError as exc:
        return Problem("unreadable_image", str(exc), image_id)
    expected = (entry.get("width"), entry.get("height"))
    if all(type(v) is int for v in expected) and expected != (width, height):
        message = f"{path} is {width}x{height} but the labels say {expected[0]}x{expected[1]}"
        return Problem("image_size_mismatch", message, image_id)
    return None


def _check_annotations(
    annotations: list[Any],
    images: dict[int, dict[str, Any]],
    selected: frozenset[int],
    schema: KeypointSchema,
    keypoints_field: str,
) -> tuple[dict[str, int], list[Problem]]:
    """Annotation, non-crowd and crowd counts, and every annotation problem."""
    problems: list[Problem] = []
    seen_ids: Counter[int] = Counter()
    counts = Counter(annotations=len(annotations), non_crowd=0, crowd=0)
    for position, ann in enumerate(annotations):
        ann_id = ann.get("id") if isinstance(ann, dict) else None
        if type(ann_id) is not int:
            problems.append(Problem("bad_annotation", f"annotations[{position}] has no integer id"))
            continue
        seen_ids[ann_id] += 1
        image_id = ann.get("image_id")
        image = images.get(image_id) if type(image_id) is int else None
        if image is None:
            message = f"image_id {reprlib.repr(image_id)} is not in 'images'"
            problems.append(Problem("unknown_image", message, None, ann_id))
        problems += _box_problems(ann, image_id)
        category_id = ann.get("category_id")
        if isinstance(category_id, (list, dict)) or category_id not in selected:
            continue
        if ann.get("iscrowd"):
            counts["crowd"] += 1
            continue
        counts["non_crowd"] += 1
        problems += _keypoint_problems(ann, image, schema, keypoints_field)
    for ann_id, times in seen_ids.items():
        if times > 1:
            message = f"annotation id used {times} times"
            problems.append(Problem("duplicate_annotation_id", message, None, ann_id))
    return dict(counts), problems


def _box_problems(ann: dict[str, Any], image_id: Any) -> list[Problem]:
    ann_id, bbox, area = ann["id"], ann.get("bbox"), ann.get("area")
    image_id = image_id if type(image_id) is int else None
    problems = []
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
        message = f"bbox {reprlib.repr(bbox)} is not [x, y, w, h]"
        problems.append(Problem("bad_box", message, image_id, ann_id))
    elif bbox[2] <= 0 or bbox[3] <= 0:
        message = f"bbox {bbox} has zero or negative width/height"
        problems.append(Problem("bad_box", message, image_id, ann_id))
    if area is not None and (not _is_number(area) or area <= 0):
        message = f"area {reprlib.repr(area)} is not a positive number"
        problems.append(Problem("bad_area", message, image_id, ann_id))
    return problems


def _keypoint_problems(
    ann: dict[str, Any], image: dict[str, Any] | None, schema: KeypointSchema, field_name: str
) -> list[Problem]:
    ann_id, image_id, values = ann["id"], ann.get("image_id"), ann.get(field_name)
    image_id = image_id if type(image_id) is int else None
    expected = 3 * schema.num_keypoints
    if not isinstance(values, list) or len(values) != expected:
        length = len(values) if isinstance(values, list) else "no"
        message = (
            f"{length} values in {field_name!r} but schema {schema.name!r} needs {expected}; "
            "pass the matching --schema"
        )
        return [Problem("bad_keypoints_length", message, image_id, ann_id)]
    if not all(_is_number(v) for v in values):
        message = f"non-numeric or out-of-range {field_name!r}"
        return [Problem("bad_keypoints", message, image_id, ann_id)]
    xs, ys, vs = values[0::3], values[1::3], values[2::3]
    problems = []
    if any(v not in (0, 1, 2) for v in vs):
        message = f"visibility flags must be 0, 1 or 2, got {sorted(set(vs))}"
        problems.append(Problem("bad_visibility", message, image_id, ann_id))
    if image is not None and _is_number(image.get("width")) and _is_number(image.get("height")):
        width, height = image["width"], image["height"]
        outside = [
            i for i, (x, y, v) in enumerate(zip(xs, ys, vs, strict=True))
            if v > 0 and not (0 <= x <= width and 0 <= y <= height)
        ]  # fmt: skip
        if outside:
            names = ", ".join(schema.keypoints[i] for i in outside)
            message = f"labelled keypoints outside the {width}x{height} image: {names}"
            problems.append(Problem("keypoint_outside_image", message, image_id, ann_id))
    count_field = f"num_{field_name}"
    labelled = sum(1 for v in vs if v > 0)
    if count_field in ann and ann[count_field] != labelled:
        given = reprlib.repr(ann[count_field])
        message = f"{count_field} is {given} but {labelled} keypoints have v > 0"
        problems.append(Problem("num_keypoints_mismatch", message, image_id, ann_id))
    return problems


def _printable(text: str) -> str:
    """Control characters from file names escaped: one problem stays one line of the report."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # e.g. a name too long for the file system
        return False


def _has_file_name(entry: dict[str, Any]) -> bool:
    return isinstance(entry.get("file_name"), str) and bool(entry["file_name"])


def _is_number(value: Any) -> bool:
    """An int or float that the loader's float32 arrays hold (finite, at most ~3.4e38)."""
    return type(value) in (int, float) and abs(value) <= _FLOAT32_MAX


_FLOAT32_MAX = float(np.finfo(np.float32).max)
