"""COCO keypoint annotations: one :class:`PersonImage` per image, arrays ready for targets.

Persons are the non-crowd annotations of the selected categories with at least one labelled
keypoint (v > 0 in the chosen keypoints field). Crowd annotations and persons without labelled
keypoints become *ignore regions*: their raw segmentation (polygons or RLE) and box, which
:func:`ignore_mask` rasterises so training does not punish the network on unlabelled people.

The JSON is parsed with orjson; per-annotation work is one Python pass collecting columns, and
everything after that (keypoints, boxes, grouping by image) is vectorised numpy. All arrays of a
loaded data set are read-only views of a few big arrays: copy before modifying.
"""

from __future__ import annotations

import gc
import math
import os
import reprlib
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from pycocotools import mask as mask_utils

from posekit.data.images import MAX_IMAGE_PIXELS
from posekit.errors import DataError
from posekit.schema import KeypointSchema, builtin_schema_for_names, first_name_difference

_NO_BOXES = np.zeros((0, 4), dtype=np.float32)
_NO_IDS = np.zeros(0, dtype=np.int64)
_NO_AREAS = np.zeros(0, dtype=np.float32)
_NO_FLAGS = np.zeros(0, dtype=bool)
for _empty in (_NO_BOXES, _NO_IDS, _NO_AREAS, _NO_FLAGS):
    _empty.flags.writeable = False


@dataclass(frozen=True, eq=False, slots=True)
class PersonImage:
    """One image and its people. Arrays are read-only; N persons, K keypoints, M ignores.

    Ignore regions are crowd annotations, image-level ignore regions (PoseTrack's) and
    non-crowd annotations without a labelled keypoint. Training masks them all out;
    evaluation keeps the last kind as non-crowd people that COCOeval ignores
    (``ignore_crowd`` False), the others as crowd regions.
    """

    image_id: int
    file_name: str
    width: int
    height: int
    keypoints: np.ndarray  # (N, K, 3) float32: x, y, v (COCO visibility 0/1/2)
    boxes: np.ndarray  # (N, 4) float32 xywh
    areas: np.ndarray  # (N,) float32
    annotation_ids: np.ndarray  # (N,) int64
    ignore_segmentations: tuple[Any, ...]  # (M,) raw COCO polygons / RLE, None when absent
    ignore_boxes: np.ndarray  # (M, 4) float32 xywh of the same ignore regions
    category_ids: np.ndarray = field(default_factory=lambda: _NO_IDS)  # (N,) int64
    ignore_annotation_ids: np.ndarray = field(default_factory=lambda: _NO_IDS)  # (M,) int64
    ignore_category_ids: np.ndarray = field(default_factory=lambda: _NO_IDS)  # (M,) int64
    ignore_areas: np.ndarray = field(default_factory=lambda: _NO_AREAS)  # (M,) float32
    ignore_crowd: np.ndarray = field(default_factory=lambda: _NO_FLAGS)  # (M,) bool
    head_sizes: np.ndarray | None = None  # (N,) float32 PCKh normaliser (MPII), else None

    @property
    def num_persons(self) -> int:
        return int(self.keypoints.shape[0])


@dataclass(frozen=True)
class Repair:
    """A quirk of a labels file that the loader accepts after a fix (a check-data warning)."""

    kind: str
    message: str  # what was done, e.g. "'area' missing: filled with the segmentation area"
    annotation_ids: tuple[int, ...]  # every annotation (or image) it concerns
    on_images: bool = False  # the ids are image ids

    def to_line(self) -> str:
        ids = list(self.annotation_ids)
        what = "image" if self.on_images else "annotation"
        plural = "s" if len(ids) != 1 else ""
        examples = ", ".join(str(i) for i in ids[:5]) + (", ..." if len(ids) > 5 else "")
        return f"{self.kind}: {len(ids)} {what}{plural} (e.g. {examples}): {self.message}"

    def to_dict(self) -> dict[str, Any]:
        what = "image_ids" if self.on_images else "annotation_ids"
        ids = list(self.annotation_ids)
        return {"kind": self.kind, "message": self.message, "count": len(ids), what: ids}


@dataclass(frozen=True)
class Category:
    """A selected category of the labels file, as evaluation writes it back."""

    id: int
    name: str


@dataclass
class CocoKeypoints:
    """A loaded COCO keypoint data set."""

    images: list[PersonImage]
    schema: KeypointSchema
    labels_path: Path
    images_root: Path
    # keypoints mapped from the file's own set onto ``schema`` (the file is not the GT then)
    remapped: bool = False
    categories: tuple[Category, ...] = (Category(1, "person"),)
    repairs: tuple[Repair, ...] = ()

    def __len__(self) -> int:
        return len(self.images)

    def image_path(self, record: PersonImage) -> Path:
        return resolve_image_path(self.images_root, record.file_name)


def load_coco_keypoints(
    labels: str | Path,
    images_root: str | Path,
    schema: KeypointSchema,
    category_ids: list[int] | None = None,
    keypoints_field: str = "keypoints",
    include_empty_images: bool = True,
) -> CocoKeypoints:
    """Load a COCO keypoint JSON; DataError (one line, naming the file) when it is unusable."""
    labels_path = Path(labels)
    with gc_paused():  # the parsed JSON must be freed before GC resumes: see gc_paused
        loaded = parse_coco_keypoints(
            read_coco_json(labels_path), str(labels_path), schema, category_ids, keypoints_field
        )
    records = loaded.images
    if not include_empty_images:
        records = [r for r in records if r.num_persons > 0]
    return CocoKeypoints(
        records,
        schema,
        labels_path,
        Path(images_root),
        categories=loaded.categories,
        repairs=loaded.repairs,
    )


@dataclass(frozen=True)
class ParsedKeypoints:
    images: list[PersonImage]
    categories: tuple[Category, ...]
    repairs: tuple[Repair, ...]


def parse_coco_keypoints(
    data: dict[str, Any],
    source: str,
    schema: KeypointSchema,
    category_ids: list[int] | None = None,
    keypoints_field: str = "keypoints",
) -> ParsedKeypoints:
    """The records of a parsed COCO keypoint dict (``source`` names it in errors)."""
    fields = keypoint_fields(schema, keypoints_field)
    table = parse_images(data["images"], source, keep_unlabelled=False)
    selected = select_category_ids(data, category_ids, source)
    categories = _selected_categories(data, selected)
    check_keypoint_names(data, selected, schema, fields, source)
    persons, crowds = _collect_annotations(
        data["annotations"], table.index_of, selected, fields, schema, source, table.dropped,
        _count_hint(data, selected, schema),
    )  # fmt: skip
    records, repairs = _build_records(table, persons, crowds, fields, schema, source)
    if not any(record.num_persons for record in records):
        raise DataError(
            f"{source}: no annotation of categories {[c.id for c in categories]} has a labelled "
            f"keypoint in {'+'.join(fields)}; check the file, data.category_ids and "
            "keypoints_field"
        )
    return ParsedKeypoints(records, categories, (*table.repairs, *repairs))


def keypoint_fields(schema: KeypointSchema, keypoints_field: str = "keypoints") -> tuple[str, ...]:
    """The annotation fields whose lists, joined, are a person's keypoints: ``keypoints_field``
    when it is not the default, else the schema's own (COCO-WholeBody's five), else
    ``keypoints``."""
    if keypoints_field == "keypoints" and schema.keypoints_fields:
        return tuple(schema.keypoints_fields)
    return (keypoints_field,)


def _selected_categories(data: dict[str, Any], selected: frozenset[int]) -> tuple[Category, ...]:
    names = {c["id"]: c.get("name") for c in _selected_category_entries(data, selected)}
    return tuple(
        Category(int(i), str(names.get(i) or f"category {i}"))
        for i in sorted(i for i in selected if type(i) is int)
    )


def check_keypoint_names(
    data: dict[str, Any],
    selected: frozenset[int],
    schema: KeypointSchema,
    fields: tuple[str, ...],
    source: str,
) -> None:
    """DataError when a selected category names as many keypoints as the schema but other
    ones (or in another order): the first difference and the built-in schema that fits."""
    if fields != ("keypoints",):
        return  # a category's list describes the 'keypoints' field only
    for category in _selected_category_entries(data, selected):
        names = category.get("keypoints")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            continue
        if len(names) != schema.num_keypoints:
            continue  # the keypoint arrays' length check names the count
        difference = first_name_difference(names, schema)
        if difference is not None:
            raise DataError(
                f"{source}: category {category.get('id')}'s keypoints differ from the "
                f"schema: {difference}; {schema_hint(names)}"
            )


def _count_hint(data: dict[str, Any], selected: frozenset[int], schema: KeypointSchema) -> str:
    """The fix for keypoint arrays of the wrong length: the built-in schema of the file's names
    (or, when those are the run's, the field that holds them)."""
    for category in _selected_category_entries(data, selected):
        names = category.get("keypoints")
        if isinstance(names, list) and all(isinstance(n, str) for n in names):
            if first_name_difference(names, schema) is None:
                return (
                    "the file's category names this schema's keypoints: name the field "
                    "that holds them with data.keypoints_field (e.g. keypoints_21)"
                )
            return schema_hint(names)
    return "pass the matching data.schema"


def _selected_category_entries(
    data: dict[str, Any], selected: frozenset[int]
) -> list[dict[str, Any]]:
    """The category objects whose integer id is selected (malformed entries skipped: the
    category checks name those)."""
    categories = data.get("categories")
    if not isinstance(categories, list):
        return []
    return [
        c for c in categories
        if isinstance(c, dict) and type(c.get("id")) is int and c["id"] in selected
    ]  # fmt: skip


def schema_hint(names: list[str]) -> str:
    """'pass data.schema=NAME (it matches the file)' when a built-in fits, else a general fix."""
    match = builtin_schema_for_names(names)
    if match is not None:
        return f"the built-in schema {match!r} matches the file: pass data.schema={match}"
    return "pass a schema YAML with the file's keypoints (data.schema=FILE.yaml)"


def read_coco_json(path: str | Path) -> dict[str, Any]:
    """Parse a COCO JSON file that has ``images`` and ``annotations`` lists."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object with 'images' and 'annotations'")
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{path}: missing or non-list {key!r}; is this a COCO labels file?")
    return data


def read_json(path: Path) -> Any:
    """Parse a labels JSON with orjson; DataError naming the file when it cannot."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: labels file not found; check --labels") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise DataError(f"{path}: cannot read labels file ({reason})") from None
    except ValueError as exc:  # a NUL byte in the path
        raise DataError(f"{str(path)!r}: not a usable file name ({exc}); check --labels") from None
    with gc_paused():
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise DataError(f"{path}: not valid JSON ({exc}); fix or re-export the file") from None
    return data


def select_category_ids(
    data: dict[str, Any], category_ids: list[int] | None, source: str
) -> frozenset[int]:
    """The given ids, else categories named 'person', else all categories with keypoints."""
    if category_ids is not None:
        return frozenset(int(c) for c in category_ids)
    categories = data.get("categories") or []
    if not isinstance(categories, list) or not all(isinstance(c, dict) for c in categories):
        raise DataError(f"{source}: 'categories' must be a list of objects")
    if any(isinstance(c.get("id"), (list, dict)) for c in categories):
        raise DataError(f"{source}: every category 'id' must be an integer")
    persons = frozenset(c.get("id") for c in categories if c.get("name") == "person")
    if persons:
        return persons
    with_keypoints = frozenset(c.get("id") for c in categories if c.get("keypoints"))
    if with_keypoints:
        return with_keypoints
    raise DataError(
        f"{source}: no category named 'person' and none with 'keypoints'; pass category_ids"
    )


def resolve_image_path(images_root: str | Path, file_name: str) -> Path:
    """``images_root / file_name``, refusing names that are absolute or climb out of the root."""
    root = Path(images_root)
    if not file_name or os.path.isabs(file_name) or Path(file_name).is_absolute():
        raise DataError(f"file_name {file_name!r} must be a relative path under {root}")
    joined = os.path.normpath(os.path.join(root, file_name))
    if os.path.relpath(joined, os.path.normpath(root)).split(os.sep)[0] == os.pardir:
        raise DataError(
            f"file_name {file_name!r} escapes the images folder {root}; fix it in the labels"
        )
    return Path(joined)


def ignore_mask(
    record: PersonImage, height: int | None = None, width: int | None = None
) -> np.ndarray:
    """(H, W) uint8 mask, 1 inside the record's ignore regions, in image pixel coordinates.

    The canvas defaults to the record's size; regions outside it are clipped. Polygons and RLE
    go through pycocotools; regions without a segmentation are filled boxes.
    """
    h = record.height if height is None else int(height)
    w = record.width if width is None else int(width)
    canvas = np.zeros((h, w), dtype=np.uint8)
    rles = []
    for segmentation, box in zip(record.ignore_segmentations, record.ignore_boxes, strict=True):
        rle = _segmentation_rle(segmentation, h, w, record.image_id) if segmentation else None
        if rle is None:
            _fill_box(canvas, box)
        elif tuple(rle["size"]) == (h, w):
            rles.append(rle)
        else:
            _paste(canvas, _decode(rle))
    if rles:
        canvas |= _decode(mask_utils.merge(rles, intersect=0))
    return canvas


def _decode(rle: dict[str, Any]) -> np.ndarray:
    with warnings.catch_warnings():  # pycocotools 2.0.x + numpy 2: a harmless copy= warning
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rle).astype(np.uint8, copy=False)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause cyclic GC while parsed JSON is alive: each pass over its millions of containers
    costs ~0.5 s. Drop the parsed data *inside* the block, or the first collection after it
    walks all of it anyway."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass(frozen=True)
class ImageTable:
    ids: list[int]
    file_names: list[str]
    widths: list[int]
    heights: list[int]
    index_of: dict[int, int]
    # PoseTrack-style image-level ignore regions: per image, COCO polygons (empty: none)
    ignore_polygons: list[list[list[float]]] = field(default_factory=list)
    dropped: frozenset[int] = frozenset()  # unlabelled frames left out (their ids)
    repairs: tuple[Repair, ...] = ()


def parse_images(entries: list[Any], source: str, keep_unlabelled: bool = True) -> ImageTable:
    """The image entries; frames marked ``is_labeled: false`` (PoseTrack) are left out unless
    ``keep_unlabelled``: their people are not labelled, so they are neither training nor
    evaluation images."""
    ids, names, widths, heights, polygons = [], [], [], [], []
    index_of: dict[int, int] = {}
    dropped: list[int] = []
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise DataError(f"{source}: images[{position}] is not an object")
        image_id = as_int(entry.get("id"), f"images[{position}].id", source)
        if image_id in index_of or image_id in dropped:
            raise DataError(
                f"{source}: image id {image_id} appears twice; run posekit check-data to list "
                "duplicates"
            )
        file_name = entry.get("file_name")
        if not isinstance(file_name, str) or not file_name:
            raise DataError(f"{source}: image {image_id} has no string 'file_name'")
        if not keep_unlabelled and entry.get("is_labeled") is False:
            dropped.append(image_id)
            continue
        index_of[image_id] = len(ids)
        ids.append(image_id)
        names.append(file_name)
        widths.append(_as_size(entry.get("width"), f"image {image_id} width", source))
        heights.append(_as_size(entry.get("height"), f"image {image_id} height", source))
        polygons.append(_image_ignore_polygons(entry, image_id, source))
    repairs = ()
    if dropped:
        message = "frames marked is_labeled: false are left out (their people are unlabelled)"
        repairs = (Repair("unlabelled_frame", message, tuple(dropped), on_images=True),)
    return ImageTable(ids, names, widths, heights, index_of, polygons, frozenset(dropped), repairs)


def _as_size(value: Any, what: str, source: str) -> int:
    size = as_int(value, what, source)
    if size <= 0:
        raise DataError(f"{source}: {what} must be a positive integer, got {size}")
    return size


def _image_ignore_polygons(entry: dict[str, Any], image_id: int, source: str) -> list[list[float]]:
    """PoseTrack's ``ignore_regions_x`` / ``ignore_regions_y`` (one list of x and one of y per
    region) as COCO polygons ``[x0, y0, x1, y1, ...]``."""
    xs, ys = entry.get("ignore_regions_x"), entry.get("ignore_regions_y")
    if xs is None and ys is None:
        return []
    try:
        if len(xs) != len(ys):
            raise ValueError("as many x lists as y lists")
        regions = []
        for x, y in zip(xs, ys, strict=True):
            if len(x) != len(y) or not all(_is_coordinate(v) for v in (*x, *y)):
                raise ValueError("each region's x and y lists must be numbers of equal length")
            if len(x) >= 3:
                regions.append([float(v) for pair in zip(x, y, strict=True) for v in pair])
        return regions
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"{source}: image {image_id}: unreadable ignore_regions_x/ignore_regions_y ({exc})"
        ) from None


def _is_coordinate(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def as_int(value: Any, what: str, source: str) -> int:
    """An integer id: an int, or a whole float, within int64 (floats exact: |v| < 2^53)."""
    limit = 2**53 if isinstance(value, float) else 2**63
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value != int(value)
        or abs(value) >= limit
    ):
        raise DataError(
            f"{source}: {what} must be an integer (within int64), got {reprlib.repr(value)}"
        )
    return int(value)


@dataclass
class _Group:
    """Selected annotations of one kind, with their image index and position in the file."""

    annotations: list[dict[str, Any]] = field(default_factory=list)
    image_index: list[int] = field(default_factory=list)
    position: list[int] = field(default_factory=list)
    keypoints: list[list[Any]] = field(default_factory=list)  # persons: the joined fields

    def column(self, key: str) -> list[Any]:
        return [ann.get(key) for ann in self.annotations]


def _collect_annotations(
    annotations: list[Any],
    index_of: dict[int, int],
    selected: frozenset[int],
    fields: tuple[str, ...],
    schema: KeypointSchema,
    source: str,
    dropped: frozenset[int] = frozenset(),
    hint: str = "pass the matching data.schema",
) -> tuple[_Group, _Group]:
    """One pass over the annotations: (non-crowd persons, crowd regions) of selected categories.
    A person's keypoints are its ``fields`` joined (stored under ``_KEYPOINTS``)."""
    persons, crowds = _Group(), _Group()
    expected = 3 * schema.num_keypoints
    seen_ids: set[int] = set()
    for position, ann in enumerate(annotations):
        if type(ann) is not dict:
            raise DataError(f"{source}: annotations[{position}] is not an object")
        category_id = ann.get("category_id")
        if isinstance(category_id, (list, dict)) or category_id not in selected:
            continue
        image_id = ann.get("image_id")
        if type(image_id) is int and image_id in dropped:
            continue
        image_index = index_of.get(image_id) if type(image_id) is int else None
        if image_index is None or type(ann.get("id")) is not int:
            _raise_bad_annotation(ann, position, index_of, source)
        if ann["id"] in seen_ids:
            raise DataError(
                f"{source}: annotation id {ann['id']} appears twice; give each annotation its "
                "own id (posekit check-data lists them)"
            )
        seen_ids.add(ann["id"])
        group = crowds if ann.get("iscrowd") else persons
        if group is persons:
            keypoints = joined_keypoints(ann, fields)
            if type(keypoints) is not list or len(keypoints) != expected:
                _raise_bad_keypoints(ann, keypoints, fields, schema, source, hint)
            group.keypoints.append(keypoints)
        group.annotations.append(ann)
        group.image_index.append(image_index)
        group.position.append(position)
    return persons, crowds


def joined_keypoints(ann: dict[str, Any], fields: tuple[str, ...]) -> Any:
    if len(fields) == 1:
        return ann.get(fields[0])
    parts = [ann.get(name) for name in fields]
    if not all(type(part) is list for part in parts):
        return None
    return list(chain.from_iterable(parts))


def _raise_bad_annotation(
    ann: dict[str, Any], position: int, index_of: dict[int, int], source: str
) -> None:
    ann_id = ann.get("id")
    if type(ann_id) is not int:
        raise DataError(
            f"{source}: annotations[{position}] has no integer 'id' (got {reprlib.repr(ann_id)})"
        )
    image_id = ann.get("image_id")
    if type(image_id) is not int or image_id not in index_of:
        raise DataError(
            f"{source}: annotation {ann_id} refers to image_id {reprlib.repr(image_id)}, which "
            "is not in 'images'; run posekit check-data to list such annotations"
        )
    raise DataError(f"{source}: annotations[{position}] is malformed")


def _raise_bad_keypoints(
    ann: dict[str, Any],
    keypoints: Any,
    fields: tuple[str, ...],
    schema: KeypointSchema,
    source: str,
    hint: str,
) -> None:
    where = "+".join(fields)
    if type(keypoints) is not list:
        raise DataError(
            f"{source}: annotation {ann['id']} has no list {where!r}; check keypoints_field"
        )
    count = len(keypoints) // 3
    raise DataError(
        f"{source}: annotation {ann['id']} has {len(keypoints)} values ({count} keypoints) in "
        f"{where!r} but schema {schema.name!r} has {schema.num_keypoints} keypoints (needs "
        f"{3 * schema.num_keypoints}); {hint}"
    )


def _float_rows(values: list[Any], width: int, what: str, ids: list[Any], source: str) -> Any:
    """(len(values), width) float32; DataError naming the first annotation that is not numeric."""
    count = len(values)
    try:
        if count and not (np.fromiter(map(len, values), np.int64, count) == width).all():
            raise ValueError("wrong length")
        with np.errstate(over="ignore"):  # numbers beyond float32 become inf: refused below
            flat = np.fromiter(chain.from_iterable(values), np.float32, count * width)
        if np.isfinite(flat).all():
            return flat.reshape(count, width)
    except (TypeError, ValueError):
        pass
    for ann_id, value in zip(ids, values, strict=True):
        try:
            with np.errstate(over="ignore"):
                ok = np.isfinite(np.array(value, dtype=np.float32).reshape(width)).all()
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise DataError(f"{source}: annotation {ann_id}: {what} must be {width} finite numbers")
    raise DataError(f"{source}: {what} values are not all numeric")


def _areas(group: _Group, boxes: np.ndarray, table: ImageTable, source: str) -> np.ndarray:
    """'area' per annotation as float32. A missing or null area is filled as COCO defines it:
    the segmentation's area, else the box's w * h (see :func:`area_repairs`)."""
    areas, ids = group.column("area"), group.column("id")
    for ann_id, area in zip(ids, areas, strict=True):
        if area is not None and type(area) not in (int, float):
            raise DataError(
                f"{source}: annotation {ann_id}: 'area' must be a number, got {reprlib.repr(area)}"
            )
    values = np.array([np.nan if a is None else a for a in areas], dtype=np.float64)
    for row in np.flatnonzero(np.isnan(values)).tolist():
        values[row] = _filled_area(group, row, boxes[row], table)
    with np.errstate(over="ignore"):
        result = values.astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(result))
    if bad.size:
        raise DataError(f"{source}: annotation {ids[bad[0]]}: 'area' (or bbox w * h) is not finite")
    return result


def _filled_area(group: _Group, row: int, box: np.ndarray, table: ImageTable) -> float:
    segmentation = group.annotations[row].get("segmentation")
    if segmentation:
        index = group.image_index[row]
        height, width = table.heights[index], table.widths[index]
        rle = _segmentation_rle(segmentation, height, width, table.ids[index])
        if rle is not None:
            return float(mask_utils.area(rle))
    return float(box[2]) * float(box[3])


def _field_repairs(groups: tuple[_Group, ...]) -> tuple[Repair, ...]:
    """Missing or null ``area`` (filled) and missing ``iscrowd`` (read as 0)."""
    annotations = [a for group in groups for a in group.annotations]
    missing_area = tuple(a["id"] for a in annotations if a.get("area") is None)
    missing_crowd = tuple(a["id"] for a in annotations if "iscrowd" not in a)
    repairs = []
    if missing_area:
        message = "'area' missing or null: filled with the segmentation's area, else the box's w*h"
        repairs.append(Repair("area_filled", message, missing_area))
    if missing_crowd:
        message = "'iscrowd' missing: read as 0 (not a crowd region)"
        repairs.append(Repair("iscrowd_missing", message, missing_crowd))
    return tuple(repairs)


def _count_repairs(persons: _Group, visibility: np.ndarray) -> tuple[Repair, ...]:
    """num_keypoints recounted from the flags; flags other than 0, 1, 2 read as v > 0."""
    counted = (visibility > 0).sum(axis=1).tolist()
    given = persons.column("num_keypoints")
    ids = persons.column("id")
    recounted = tuple(i for i, g, c in zip(ids, given, counted, strict=True) if g != c)
    unusual = np.flatnonzero(~np.isin(visibility, (0.0, 1.0, 2.0)).all(axis=1)).tolist()
    repairs = []
    if recounted:
        message = "'num_keypoints' missing or not the count of flags v > 0: recounted"
        repairs.append(Repair("num_keypoints_recounted", message, recounted))
    if unusual:
        message = "visibility flags other than 0, 1, 2: v > 0 counts as labelled"
        repairs.append(Repair("visibility_values", message, tuple(ids[i] for i in unusual)))
    return tuple(repairs)


def group_slices(sorted_image_index: np.ndarray, num_images: int) -> list[slice]:
    """Per image, the slice of rows that belong to it in an array sorted by image index."""
    counts = np.bincount(sorted_image_index, minlength=num_images)
    ends = np.cumsum(counts)
    starts = ends - counts
    return [slice(s, e) for s, e in zip(starts.tolist(), ends.tolist(), strict=True)]


def read_only(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.flags.writeable = False
    return array


@dataclass(frozen=True)
class _Ignores:
    segmentations: list[Any]
    boxes: np.ndarray
    areas: np.ndarray
    annotation_ids: np.ndarray
    category_ids: np.ndarray
    crowd: np.ndarray
    slices: list[slice]


def _ignore_regions(
    persons: _Group, person_columns: dict[str, np.ndarray], unlabelled: np.ndarray,
    crowds: _Group, table: ImageTable, source: str,
) -> _Ignores:  # fmt: skip
    """Crowd regions, persons without labelled keypoints and image-level regions, in file
    order within each image (image-level ones last)."""
    crowd_ids = crowds.column("id")
    crowd_boxes = _float_rows(crowds.column("bbox"), 4, "bbox", crowd_ids, source)
    picked = unlabelled.tolist()
    extra = _image_level_regions(table, max([0, *crowd_ids, *persons.column("id")]))
    last = len(persons.annotations) + len(crowds.annotations)
    image_index = np.array(
        [persons.image_index[i] for i in picked] + crowds.image_index + extra.image_index,
        np.int64,
    )
    position = np.array(
        [persons.position[i] for i in picked] + crowds.position + [last] * len(extra.ids),
        np.int64,
    )
    order = np.lexsort((position, image_index)).tolist()
    segmentations = [persons.annotations[i].get("segmentation") for i in picked]
    segmentations += crowds.column("segmentation") + extra.polygons
    columns = {
        "boxes": np.concatenate(
            [person_columns["boxes"][unlabelled], crowd_boxes, extra.boxes]
        ).reshape(-1, 4),
        "areas": np.concatenate(
            [
                person_columns["areas"][unlabelled],
                _areas(crowds, crowd_boxes, table, source),
                extra.areas,
            ]
        ).astype(np.float32),
        "annotation_ids": np.concatenate(
            [person_columns["ids"][unlabelled], np.asarray(crowd_ids, np.int64), extra.ids]
        ).astype(np.int64),
        "category_ids": np.concatenate(
            [person_columns["categories"][unlabelled], _category_column(crowds), extra.categories]
        ).astype(np.int64),
        "crowd": np.concatenate(
            [np.zeros(len(picked), bool), np.ones(len(crowd_ids) + len(extra.ids), bool)]
        ),
    }
    return _Ignores(
        segmentations=[segmentations[i] for i in order],
        **{name: read_only(values[order]) for name, values in columns.items()},
        slices=group_slices(image_index[order], len(table.ids)),
    )


@dataclass(frozen=True)
class _ImageRegions:
    image_index: list[int]
    polygons: list[list[list[float]]]
    boxes: np.ndarray
    areas: np.ndarray
    ids: np.ndarray
    categories: np.ndarray


def _image_level_regions(table: ImageTable, max_id: int) -> _ImageRegions:
    """Image-level ignore regions as crowd regions of category 1, ids after the file's."""
    image_index, polygons, boxes, areas = [], [], [], []
    for index, regions in enumerate(table.ignore_polygons):
        for polygon in regions:
            xy = np.asarray(polygon, np.float64).reshape(-1, 2)
            x0, y0 = xy.min(axis=0)
            x1, y1 = xy.max(axis=0)
            image_index.append(index)
            polygons.append([polygon])
            boxes.append([x0, y0, x1 - x0, y1 - y0])
            rle = _segmentation_rle([polygon], table.heights[index], table.widths[index], 0)
            areas.append(float(mask_utils.area(rle)) if rle is not None else 0.0)
    count = len(polygons)
    return _ImageRegions(
        image_index,
        polygons,
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(areas, np.float32),
        np.arange(max_id + 1, max_id + 1 + count, dtype=np.int64),
        np.ones(count, np.int64),
    )


def _category_column(group: _Group) -> np.ndarray:
    return np.asarray(group.column("category_id"), dtype=np.int64).reshape(-1)


def _build_records(
    table: ImageTable, persons: _Group, crowds: _Group, fields: tuple[str, ...],
    schema: KeypointSchema, source: str,
) -> tuple[list[PersonImage], tuple[Repair, ...]]:  # fmt: skip
    count, num_images, k = len(persons.annotations), len(table.ids), schema.num_keypoints
    ids = persons.column("id")
    where = "+".join(fields)
    keypoints = _float_rows(persons.keypoints, 3 * k, where, ids, source).reshape(count, k, 3)
    boxes = _float_rows(persons.column("bbox"), 4, "bbox", ids, source)
    columns = {
        "keypoints": keypoints,
        "boxes": boxes,
        "areas": _areas(persons, boxes, table, source),
        "ids": np.asarray(ids, dtype=np.int64),
        "categories": _category_column(persons),
    }
    head_sizes = _head_sizes(persons, source)
    image_index = np.asarray(persons.image_index, dtype=np.int64)
    labelled = (keypoints[:, :, 2] > 0).any(axis=1)
    ignores = _ignore_regions(persons, columns, np.flatnonzero(~labelled), crowds, table, source)
    repairs = _field_repairs((persons, crowds)) + _count_repairs(persons, keypoints[:, :, 2])

    chosen = np.flatnonzero(labelled)
    chosen = chosen[np.argsort(image_index[chosen], kind="stable")]
    person_slices = group_slices(image_index[chosen], num_images)
    kept = {name: read_only(values[chosen]) for name, values in columns.items()}
    heads = None if head_sizes is None else read_only(head_sizes[chosen])
    records = []
    for i, image_id in enumerate(table.ids):
        p, g = person_slices[i], ignores.slices[i]
        records.append(
            PersonImage(
                image_id=image_id,
                file_name=table.file_names[i],
                width=table.widths[i],
                height=table.heights[i],
                keypoints=kept["keypoints"][p],
                boxes=kept["boxes"][p],
                areas=kept["areas"][p],
                annotation_ids=kept["ids"][p],
                ignore_segmentations=tuple(ignores.segmentations[g]),
                ignore_boxes=ignores.boxes[g] if g.stop > g.start else _NO_BOXES,
                category_ids=kept["categories"][p],
                ignore_annotation_ids=ignores.annotation_ids[g],
                ignore_category_ids=ignores.category_ids[g],
                ignore_areas=ignores.areas[g],
                ignore_crowd=ignores.crowd[g],
                head_sizes=None if heads is None else heads[p],
            )
        )
    return records, repairs


def _head_sizes(persons: _Group, source: str) -> np.ndarray | None:
    """MPII's PCKh normaliser, carried as a ``head_size`` field (see posekit.data.mpii)."""
    values = persons.column("head_size")
    if not values or all(v is None for v in values):
        return None
    if not all(type(v) in (int, float) for v in values):
        raise DataError(f"{source}: every annotation needs a numeric 'head_size' or none does")
    return np.asarray(values, dtype=np.float32)


def _segmentation_rle(segmentation: Any, height: int, width: int, image_id: int) -> Any:
    """Polygons or RLE (compressed or not) as one compressed RLE; None if nothing usable.

    pycocotools trusts its input: RLE runs that do not add up to the size, or a string outside
    its alphabet, make it read and write out of bounds, and it walks a polygon's whole outline
    (a far-away point costs gigabytes). Both are checked first."""
    try:
        if isinstance(segmentation, list):
            # pycocotools reads a first polygon of 4 numbers as a box: keep real polygons only.
            polygons = [p for p in segmentation if isinstance(p, list) and len(p) >= 6]
            if not polygons:
                return None
            _check_polygons(polygons, height, width)
            return mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
        counts = segmentation.get("counts") if isinstance(segmentation, dict) else None
        if isinstance(counts, (list, str, bytes)):
            size = _rle_size(segmentation.get("size"))
            runs = counts if isinstance(counts, list) else _rle_string_runs(counts)
            if not all(type(r) is int and r >= 0 for r in runs) or sum(runs) != size[0] * size[1]:
                raise ValueError("RLE 'counts' must be runs adding up to height x width")
            if isinstance(counts, list):
                return mask_utils.frPyObjects({"size": size, "counts": runs}, *size)
            return {"size": size, "counts": counts}
    except (TypeError, ValueError, KeyError, IndexError, OverflowError) as exc:
        raise DataError(f"image {image_id}: unreadable segmentation ({exc})") from None
    raise DataError(f"image {image_id}: segmentation is neither polygons nor RLE")


def _check_polygons(polygons: list[Any], height: int, width: int) -> None:
    """pycocotools draws 5 points per pixel of outline: refuse points far outside the image and
    outlines longer than 100 times its width + height."""
    limit, outline = 4 * max(height, width, 1), 0.0
    for polygon in polygons:
        xy = np.asarray(polygon, dtype=np.float64)
        if xy.ndim != 1 or not (np.abs(xy) <= limit).all():
            raise ValueError(f"polygon points must be numbers within {limit} of the image")
        xy = xy[: xy.size // 2 * 2].reshape(-1, 2)
        outline += float(np.abs(xy - np.roll(xy, 1, axis=0)).max(axis=1).sum())
    if outline > 100 * (height + width):
        raise ValueError(f"polygon outlines of {outline:.0f} pixels in a {width}x{height} image")


def _rle_size(size: Any) -> list[int]:
    """An RLE's [height, width]: positive, and at most MAX_IMAGE_PIXELS."""
    if not isinstance(size, (list, tuple)) or len(size) != 2:
        raise ValueError(f"RLE 'size' must be [height, width], got {reprlib.repr(size)}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in size):
        raise ValueError(f"RLE 'size' must be two integers, got {reprlib.repr(size)}")
    height, width = int(size[0]), int(size[1])
    if height <= 0 or width <= 0 or height * width > MAX_IMAGE_PIXELS:
        raise ValueError(f"RLE 'size' {[height, width]} is not a plausible image size")
    return [height, width]


def _rle_string_runs(counts: str | bytes) -> list[int]:
    """The runs of COCO's compressed RLE string, decoded as pycocotools' rleFrString does."""
    runs: list[int] = []
    value = shift = 0
    for code in counts.encode() if isinstance(counts, str) else counts:
        c = code - 48
        if not 0 <= c < 64 or shift > 30:
            raise ValueError("RLE 'counts' is not a COCO RLE string")
        value |= (c & 0x1F) << shift
        shift += 5
        if c & 0x20:  # more characters in this number
            continue
        if c & 0x10:  # negative: sign-extend
            value -= 1 << shift
        runs.append(value + runs[-2] if len(runs) > 2 else value)
        value = shift = 0
    if shift:
        raise ValueError("RLE 'counts' string ends inside a number")
    return runs


def _fill_box(canvas: np.ndarray, box: np.ndarray) -> None:
    x, y, w, h = (float(v) for v in box)
    height, width = canvas.shape
    x0, y0 = max(int(np.floor(x)), 0), max(int(np.floor(y)), 0)
    x1, y1 = min(int(np.ceil(x + w)), width), min(int(np.ceil(y + h)), height)
    if x1 > x0 and y1 > y0:
        canvas[y0:y1, x0:x1] = 1


def _paste(canvas: np.ndarray, region: np.ndarray) -> None:
    """OR a mask of another size into the canvas's top-left corner (crop or pad)."""
    h = min(canvas.shape[0], region.shape[0])
    w = min(canvas.shape[1], region.shape[1])
    canvas[:h, :w] |= region[:h, :w]
