"""The data set doctor behind ``posekit check-data --labels JSON --images DIR [--schema YAML]``.

It agrees with the loader on what is an error, a repaired quirk or fine. Unlike the loader,
which stops at the first error, :func:`check_dataset` walks the whole file and lists every
*problem* (what training or evaluation cannot use) with its image and/or annotation id:
missing, unreadable or mis-sized images, file names escaping the images folder, duplicate ids,
annotations on unknown images, keypoint arrays of the wrong length for the schema, keypoint
names that are not the schema's, no usable annotation at all, and anything else the loader
refuses. *Warnings* are the quirks the loader accepts, each with a count and example ids: the
repairs it makes (areas filled, ``num_keypoints`` recounted, unusual visibility values,
unlabelled frames left out) and values it uses as they are (zero boxes or areas, labelled
keypoints outside the image). Exit status: 0 without problems (warnings or not), 1 with
problems; an unreadable labels file or schema raises DataError / SchemaError (status 2).
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

from posekit.data.coco import (
    Repair,
    check_keypoint_names,
    gc_paused,
    joined_keypoints,
    keypoint_fields,
    parse_coco_keypoints,
    read_coco_json,
    resolve_image_path,
    select_category_ids,
)
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
    warnings: list[Repair] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem_kinds(self) -> dict[str, int]:
        return dict(Counter(p.kind for p in self.problems))

    def summary(self) -> str:
        counts = ", ".join(f"{value} {key}" for key, value in self.counts.items())
        verdict = "no problems found" if self.ok else f"{len(self.problems)} problems"
        if self.warnings:
            verdict += f", {len(self.warnings)} warnings"
        return f"check-data {self.labels_path} (schema {self.schema_name}): {counts}: {verdict}"

    def warning_lines(self) -> list[str]:
        return [f"warning {_printable(w.to_line())}" for w in self.warnings]

    def to_dict(self) -> dict[str, Any]:
        return {
            "labels": self.labels_path,
            "images_root": self.images_root,
            "schema": self.schema_name,
            "ok": self.ok,
            "counts": self.counts,
            "problem_kinds": self.problem_kinds(),
            "problems": [asdict(p) for p in self.problems],
            "warnings": [w.to_dict() for w in self.warnings],
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
        out.writelines(line + "\n" for line in report.warning_lines())
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
        fields = keypoint_fields(schema, keypoints_field)
        images, entry_problems = _image_entries(data["images"])
        file_problems = _image_file_problems(images, Path(images_root)) if check_images else []
        walk = _check_annotations(data["annotations"], images, selected, schema, fields)
        report.problems = entry_problems + file_problems + walk.problems
        report.problems += _names_problems(data, selected, schema, fields, str(labels_path))
        if walk.counts["usable"] == 0:
            message = f"no annotation has a labelled keypoint in {'+'.join(fields)}"
            report.problems.append(Problem("no_usable_annotation", message))
        report.counts = {"images": len(data["images"]), **walk.counts}
        report.warnings = walk.warnings + _loader_verdict(
            data, report, schema, category_ids, keypoints_field
        )
        del data, images
    return report


def _names_problems(
    data: dict[str, Any], selected: frozenset[int], schema: KeypointSchema,
    fields: tuple[str, ...], source: str,
) -> list[Problem]:  # fmt: skip
    try:
        check_keypoint_names(data, selected, schema, fields, source)
    except DataError as exc:
        return [Problem("keypoint_names", str(exc).removeprefix(f"{source}: "))]
    return []


def _loader_verdict(
    data: dict[str, Any], report: CheckReport, schema: KeypointSchema,
    category_ids: list[int] | None, keypoints_field: str,
) -> list[Repair]:  # fmt: skip
    """The loader's repairs; what it refuses becomes a problem when the walk found none."""
    source = report.labels_path
    try:
        parsed = parse_coco_keypoints(data, source, schema, category_ids, keypoints_field)
    except DataError as exc:
        if report.ok:
            report.problems.append(Problem("unusable", str(exc).removeprefix(f"{source}: ")))
        return []
    return list(parsed.repairs)


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


@dataclass
class _Walk:
    counts: Counter[str]
    problems: list[Problem]
    warnings: list[Repair]


def _check_annotations(
    annotations: list[Any],
    images: dict[int, dict[str, Any]],
    selected: frozenset[int],
    schema: KeypointSchema,
    fields: tuple[str, ...],
) -> _Walk:
    """Annotation, non-crowd and crowd counts, every annotation problem, and the warnings of
    values the loader uses as they are."""
    problems: list[Problem] = []
    quirks: dict[str, list[int]] = {name: [] for name in _QUIRKS}
    seen_ids: Counter[int] = Counter()
    counts = Counter(annotations=len(annotations), non_crowd=0, crowd=0, usable=0)
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
        category_id = ann.get("category_id")
        if isinstance(category_id, (list, dict)) or category_id not in selected:
            continue
        problems += _box_problems(ann, image_id, quirks)
        if ann.get("iscrowd"):
            counts["crowd"] += 1
            continue
        counts["non_crowd"] += 1
        found, usable = _keypoint_problems(ann, image, schema, fields, quirks)
        problems += found
        counts["usable"] += usable
    for ann_id, times in seen_ids.items():
        if times > 1:
            message = f"annotation id used {times} times"
            problems.append(Problem("duplicate_annotation_id", message, None, ann_id))
    warnings = [Repair(kind, _QUIRKS[kind], tuple(ids)) for kind, ids in quirks.items() if ids]
    usable = counts.pop("usable")
    return _Walk(Counter({**counts, "usable": usable}), problems, warnings)


# values the loader uses as they are: warnings, not problems
_QUIRKS = {
    "zero_box": "bbox with zero or negative width/height (top-down training skips the person)",
    "zero_area": "area <= 0 (OKS then matches only exact predictions)",
    "keypoint_outside_image": "labelled keypoints outside the image (used as they are)",
}


def _box_problems(
    ann: dict[str, Any], image_id: Any, quirks: dict[str, list[int]]
) -> list[Problem]:
    ann_id, bbox, area = ann["id"], ann.get("bbox"), ann.get("area")
    image_id = image_id if type(image_id) is int else None
    problems = []
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
        message = f"bbox {reprlib.repr(bbox)} is not [x, y, w, h]"
        problems.append(Problem("bad_box", message, image_id, ann_id))
    elif bbox[2] <= 0 or bbox[3] <= 0:
        quirks["zero_box"].append(ann_id)
    if area is not None and not _is_number(area):
        message = f"area {reprlib.repr(area)} is not a number"
        problems.append(Problem("bad_area", message, image_id, ann_id))
    elif area is not None and area <= 0:
        quirks["zero_area"].append(ann_id)
    return problems


def _keypoint_problems(
    ann: dict[str, Any],
    image: dict[str, Any] | None,
    schema: KeypointSchema,
    fields: tuple[str, ...],
    quirks: dict[str, list[int]],
) -> tuple[list[Problem], bool]:  # problems, has a labelled keypoint
    ann_id, image_id = ann["id"], ann.get("image_id")
    image_id = image_id if type(image_id) is int else None
    values = joined_keypoints(ann, fields)
    values = values if isinstance(values, list) else None
    where = "+".join(fields)
    expected = 3 * schema.num_keypoints
    if values is None or len(values) != expected:
        length = len(values) if values is not None else "no"
        message = (
            f"{length} values in {where!r} but schema {schema.name!r} needs {expected}; "
            "pass the matching --schema"
        )
        return [Problem("bad_keypoints_length", message, image_id, ann_id)], False
    if not all(_is_number(v) for v in values):
        message = f"non-numeric or out-of-range {where!r}"
        return [Problem("bad_keypoints", message, image_id, ann_id)], False
    xs, ys, vs = values[0::3], values[1::3], values[2::3]
    if image is not None and _is_number(image.get("width")) and _is_number(image.get("height")):
        width, height = image["width"], image["height"]
        if any(v > 0 and not (0 <= x <= width and 0 <= y <= height) for x, y, v in zip(
            xs, ys, vs, strict=True
        )):  # fmt: skip
            quirks["keypoint_outside_image"].append(ann_id)
    return [], any(v > 0 for v in vs)


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
