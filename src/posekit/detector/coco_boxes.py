"""COCO object boxes for a DETR-style detector: one :class:`BoxImage` per image.

Training boxes are the non-crowd annotations of the selected categories, converted to xyxy
pixels, clipped to the image and dropped when less than 1 px wide or high after clipping. Labels
are contiguous class indices: the selected category ids in ascending order map to 0..C-1. Every
image listed in the file is kept, in file order, boxes or not (images without boxes are
negatives). Crowd annotations are never training boxes, but :meth:`CocoBoxes.ground_truth`
keeps them, as COCOeval wants, together with the other annotations of the selected categories.

The JSON is parsed with orjson (via :func:`posekit.data.coco.read_coco_json`); one Python pass
validates the annotations, the boxes are vectorised numpy. All arrays of a loaded data set are
read-only views of a few big arrays: copy before modifying.
"""

from __future__ import annotations

import reprlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from posekit.data.coco import (
    ImageTable,
    as_int,
    gc_paused,
    group_slices,
    parse_images,
    read_coco_json,
    read_only,
    resolve_image_path,
)
from posekit.errors import DataError

_MIN_SIZE = 1.0  # boxes narrower or lower than this (pixels, after clipping) are dropped


@dataclass(frozen=True, eq=False, slots=True)
class BoxImage:
    """One image and its training boxes. Arrays are read-only; N boxes."""

    image_id: int
    file_name: str
    width: int
    height: int
    boxes: np.ndarray  # (N, 4) float32 xyxy pixels, clipped to the image, positive size
    labels: np.ndarray  # (N,) int64 contiguous class index 0..C-1

    @property
    def num_boxes(self) -> int:
        return int(self.boxes.shape[0])


@dataclass
class CocoBoxes:
    """A loaded COCO box data set."""

    labels_path: Path
    images_root: Path
    images: list[BoxImage]
    category_ids: list[int]  # (C,) contiguous index -> the file's category id, ascending
    category_names: list[str]  # (C,) the names of those categories
    _ground_truth: dict[str, Any] | None = field(default=None, init=False, repr=False)

    def __len__(self) -> int:
        return len(self.images)

    def image_path(self, record: BoxImage) -> Path:
        return resolve_image_path(self.images_root, record.file_name)

    def ground_truth(self) -> dict[str, Any]:
        """A COCO dict for bbox evaluation, read again from :attr:`labels_path` on the first
        call and kept (evaluation copies what it changes).

        It has the file's images, and its annotations (crowd ones included) and categories
        restricted to :attr:`category_ids`, so a detector of these categories is evaluated
        fairly on a file with more. Annotations keep the file's boxes (not clipped); those
        without ``area`` or ``iscrowd`` get the box's w * h and 0, which COCOeval needs.
        """
        if self._ground_truth is not None:
            return self._ground_truth
        with gc_paused():
            parsed = _parse(self.labels_path, self.category_ids)
            if parsed.table.ids != [record.image_id for record in self.images]:
                raise DataError(
                    f"{self.labels_path}: its images changed since the data set was loaded; "
                    "load it again"
                )
            boxes = parsed.boxes_xywh.tolist()
            annotations = list(map(_evaluable, parsed.annotations, boxes))
            gt = {key: parsed.data[key] for key in ("info", "licenses") if key in parsed.data}
            gt["images"] = parsed.data["images"]
            gt["annotations"] = annotations
            gt["categories"] = parsed.categories
            del parsed
        self._ground_truth = gt
        return gt


def load_coco_boxes(
    labels_path: str | Path,
    images_root: str | Path,
    category_ids: list[int] | None = None,
) -> CocoBoxes:
    """Load the boxes of a COCO JSON; DataError (one line, naming the file) when unusable.

    ``category_ids`` selects the categories (None: those named 'person' if the file has one,
    else every category); they become class indices 0..C-1 in ascending id order.
    """
    labels_path = Path(labels_path)
    with gc_paused():  # the parsed JSON must be freed before GC resumes: see gc_paused
        parsed = _parse(labels_path, category_ids)
        images = _build_images(parsed)
        ids = [int(c["id"]) for c in parsed.categories]
        names = [_category_name(c) for c in parsed.categories]
        del parsed
    return CocoBoxes(labels_path, Path(images_root), images, ids, names)


@dataclass
class _Parsed:
    """The validated file: selected annotations (crowd included) in file order."""

    data: dict[str, Any]
    table: ImageTable
    categories: list[dict[str, Any]]  # (C,) the selected category objects, ascending id
    annotations: list[dict[str, Any]] = field(default_factory=list)  # (A,)
    image_index: list[int] = field(default_factory=list)  # (A,)
    class_index: list[int] = field(default_factory=list)  # (A,)
    crowd: list[bool] = field(default_factory=list)  # (A,)
    boxes_xywh: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))  # (A, 4) float64


def _parse(labels_path: Path, requested: list[int] | None) -> _Parsed:
    source = str(labels_path)
    data = read_coco_json(labels_path)
    table = parse_images(data["images"], source)  # sizes positive
    by_id = _parse_categories(data, source)
    selected = _select(by_id, requested, source)
    parsed = _Parsed(data, table, [by_id[c] for c in selected])
    _collect(parsed, frozenset(by_id), {c: i for i, c in enumerate(selected)}, source)
    return parsed


def _parse_categories(data: dict[str, Any], source: str) -> dict[int, dict[str, Any]]:
    """The file's categories by id; DataError when missing, malformed or duplicated."""
    categories = data.get("categories")
    if not isinstance(categories, list) or not categories:
        raise DataError(
            f"{source}: missing or empty 'categories'; a box data set needs at least one "
            "category ({'id': ..., 'name': ...})"
        )
    by_id: dict[int, dict[str, Any]] = {}
    for position, category in enumerate(categories):
        if not isinstance(category, dict):
            raise DataError(f"{source}: categories[{position}] is not an object")
        category_id = as_int(category.get("id"), f"categories[{position}].id", source)
        if category_id in by_id:
            raise DataError(
                f"{source}: category id {category_id} appears twice in 'categories'; give each "
                "category its own id"
            )
        by_id[category_id] = category
    return by_id


def _select(
    by_id: dict[int, dict[str, Any]], requested: list[int] | None, source: str
) -> list[int]:
    """The selected category ids, ascending: requested, else 'person', else all."""
    if requested is None:
        persons = [c for c, category in by_id.items() if category.get("name") == "person"]
        return sorted(persons or by_id)
    chosen = set()
    for value in requested:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise DataError(f"category_ids must be integers, got {reprlib.repr(value)}")
        chosen.add(int(value))
    if not chosen:
        raise DataError(f"{source}: category_ids is empty; pass at least one category id")
    missing = sorted(chosen - by_id.keys())
    if missing:
        raise DataError(
            f"{source}: category id(s) {missing} not in the file's 'categories' (its ids: "
            f"{sorted(by_id)}); fix category_ids"
        )
    return sorted(chosen)


def _category_name(category: dict[str, Any]) -> str:
    name = category.get("name")
    return name if isinstance(name, str) else str(category["id"])


def _collect(parsed: _Parsed, known: frozenset[int], class_of: dict[int, int], source: str) -> None:
    """One pass over the annotations: validate all of them, keep the selected categories'."""
    index_of = parsed.table.index_of
    seen: set[int] = set()
    bboxes: list[Any] = []
    for position, ann in enumerate(parsed.data["annotations"]):
        if type(ann) is not dict:
            raise DataError(f"{source}: annotations[{position}] is not an object")
        ann_id = ann.get("id")
        if type(ann_id) is not int:
            raise DataError(
                f"{source}: annotations[{position}] has no integer 'id' "
                f"(got {reprlib.repr(ann_id)})"
            )
        image_id = ann.get("image_id")
        image_index = index_of.get(image_id) if type(image_id) is int else None
        if image_index is None:
            raise DataError(
                f"{source}: annotation {ann_id} refers to image_id {reprlib.repr(image_id)}, "
                "which is not in 'images'; run posekit check-data to list such annotations"
            )
        category_id = ann.get("category_id")
        if type(category_id) is not int or category_id not in known:
            raise DataError(
                f"{source}: annotation {ann_id} has category_id {reprlib.repr(category_id)}, "
                f"which is not in 'categories' (ids {sorted(known)}); fix the annotation or add "
                "the category"
            )
        class_index = class_of.get(category_id)
        if class_index is None:
            continue
        if ann_id in seen:
            raise DataError(
                f"{source}: annotation id {ann_id} appears twice; give each annotation its own id"
            )
        seen.add(ann_id)
        bbox = ann.get("bbox")
        if type(bbox) is not list or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
            raise DataError(
                f"{source}: annotation {ann_id}: 'bbox' must be 4 finite numbers [x, y, w, h], "
                f"got {reprlib.repr(bbox)}"
            )
        area = ann.get("area")
        if area is not None and not _is_number(area):
            raise DataError(
                f"{source}: annotation {ann_id}: 'area' must be a number, got {reprlib.repr(area)}"
            )
        parsed.annotations.append(ann)
        parsed.image_index.append(image_index)
        parsed.class_index.append(class_index)
        parsed.crowd.append(bool(ann.get("iscrowd")))
        bboxes.append(bbox)
    parsed.boxes_xywh = _finite_boxes(bboxes, parsed.annotations, source)


def _is_number(value: Any) -> bool:
    return type(value) is float or type(value) is int


def _finite_boxes(bboxes: list[Any], annotations: list[dict[str, Any]], source: str) -> Any:
    """(A, 4) float64 of numeric bboxes; DataError naming the first that is not finite (orjson
    refuses NaN and infinity, so this only guards dicts built in memory)."""
    boxes = np.array(bboxes, dtype=np.float64).reshape(-1, 4)
    bad = np.flatnonzero(~np.isfinite(boxes).all(axis=1))
    if bad.size:
        ann = annotations[int(bad[0])]
        raise DataError(
            f"{source}: annotation {ann['id']}: 'bbox' must be 4 finite numbers [x, y, w, h], "
            f"got {reprlib.repr(ann['bbox'])}"
        )
    return boxes


def _build_images(parsed: _Parsed) -> list[BoxImage]:
    table = parsed.table
    xywh = parsed.boxes_xywh  # (A, 4)
    widths = np.asarray(table.widths, dtype=np.float64)
    heights = np.asarray(table.heights, dtype=np.float64)
    image_index = np.asarray(parsed.image_index, dtype=np.int64)  # (A,)
    w, h = widths[image_index], heights[image_index]
    x0 = np.clip(xywh[:, 0], 0.0, w)
    y0 = np.clip(xywh[:, 1], 0.0, h)
    x1 = np.clip(xywh[:, 0] + xywh[:, 2], 0.0, w)
    y1 = np.clip(xywh[:, 1] + xywh[:, 3], 0.0, h)
    crowd = np.asarray(parsed.crowd, dtype=bool)
    keep = ~crowd & (x1 - x0 >= _MIN_SIZE) & (y1 - y0 >= _MIN_SIZE)
    chosen = np.flatnonzero(keep)
    chosen = chosen[np.argsort(image_index[chosen], kind="stable")]  # by image, file order
    boxes = read_only(np.stack([x0, y0, x1, y1], axis=1)[chosen].astype(np.float32))  # (B, 4)
    labels = read_only(np.asarray(parsed.class_index, dtype=np.int64)[chosen])  # (B,)
    slices = group_slices(image_index[chosen], len(table.ids))
    return [
        BoxImage(
            image_id=image_id,
            file_name=table.file_names[i],
            width=table.widths[i],
            height=table.heights[i],
            boxes=boxes[slices[i]],
            labels=labels[slices[i]],
        )
        for i, image_id in enumerate(table.ids)
    ]


def _evaluable(ann: dict[str, Any], box: list[float]) -> dict[str, Any]:
    """The annotation, copied with ``area`` (box w * h) and ``iscrowd`` (0) where missing."""
    if "area" in ann and "iscrowd" in ann:
        return ann
    filled = dict(ann)
    filled.setdefault("area", max(box[2], 0.0) * max(box[3], 0.0))
    filled.setdefault("iscrowd", 0)
    return filled
