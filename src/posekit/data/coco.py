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
from posekit.schema import KeypointSchema

_NO_BOXES = np.zeros((0, 4), dtype=np.float32)
_NO_BOXES.flags.writeable = False


@dataclass(frozen=True, eq=False, slots=True)
class PersonImage:
    """One image and its people. Arrays are read-only; N persons, K keypoints, M ignores."""

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

    @property
    def num_persons(self) -> int:
        return int(self.keypoints.shape[0])


@dataclass
class CocoKeypoints:
    """A loaded COCO keypoint data set."""

    images: list[PersonImage]
    schema: KeypointSchema
    labels_path: Path
    images_root: Path
    # keypoints mapped from the file's own set onto ``schema`` (the file is not the GT then)
    remapped: bool = False

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
        records = _load_records(labels_path, schema, category_ids, keypoints_field)
    if not include_empty_images:
        records = [r for r in records if r.num_persons > 0]
    return CocoKeypoints(records, schema, labels_path, Path(images_root))


def _load_records(
    labels_path: Path, schema: KeypointSchema, category_ids: list[int] | None, field_name: str
) -> list[PersonImage]:
    source = str(labels_path)
    data = read_coco_json(labels_path)
    image_table = _parse_images(data["images"], source)
    selected = select_category_ids(data, category_ids, source)
    persons, crowds = _collect_annotations(
        data["annotations"], image_table.index_of, selected, field_name, schema, source
    )
    return _build_records(image_table, persons, crowds, field_name, schema, source)


def read_coco_json(path: str | Path) -> dict[str, Any]:
    """Parse a COCO JSON file that has ``images`` and ``annotations`` lists."""
    path = Path(path)
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
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object with 'images' and 'annotations'")
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{path}: missing or non-list {key!r}; is this a COCO labels file?")
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
class _ImageTable:
    ids: list[int]
    file_names: list[str]
    widths: list[int]
    heights: list[int]
    index_of: dict[int, int]


def _parse_images(entries: list[Any], source: str) -> _ImageTable:
    ids, names, widths, heights = [], [], [], []
    index_of: dict[int, int] = {}
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise DataError(f"{source}: images[{position}] is not an object")
        image_id = _as_int(entry.get("id"), f"images[{position}].id", source)
        if image_id in index_of:
            raise DataError(
                f"{source}: image id {image_id} appears twice; run posekit check-data to list "
                "duplicates"
            )
        file_name = entry.get("file_name")
        if not isinstance(file_name, str) or not file_name:
            raise DataError(f"{source}: image {image_id} has no string 'file_name'")
        index_of[image_id] = position
        ids.append(image_id)
        names.append(file_name)
        widths.append(_as_int(entry.get("width"), f"image {image_id} width", source))
        heights.append(_as_int(entry.get("height"), f"image {image_id} height", source))
    return _ImageTable(ids, names, widths, heights, index_of)


def _as_int(value: Any, what: str, source: str) -> int:
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

    def column(self, key: str) -> list[Any]:
        return [ann.get(key) for ann in self.annotations]


def _collect_annotations(
    annotations: list[Any],
    index_of: dict[int, int],
    selected: frozenset[int],
    keypoints_field: str,
    schema: KeypointSchema,
    source: str,
) -> tuple[_Group, _Group]:
    """One pass over the annotations: (non-crowd persons, crowd regions) of selected categories."""
    persons, crowds = _Group(), _Group()
    expected = 3 * schema.num_keypoints
    for position, ann in enumerate(annotations):
        if type(ann) is not dict:
            raise DataError(f"{source}: annotations[{position}] is not an object")
        category_id = ann.get("category_id")
        if isinstance(category_id, (list, dict)) or category_id not in selected:
            continue
        image_id = ann.get("image_id")
        image_index = index_of.get(image_id) if type(image_id) is int else None
        if image_index is None or type(ann.get("id")) is not int:
            _raise_bad_annotation(ann, position, index_of, source)
        group = crowds if ann.get("iscrowd") else persons
        if group is persons:
            keypoints = ann.get(keypoints_field)
            if type(keypoints) is not list or len(keypoints) != expected:
                _raise_bad_keypoints(ann["id"], keypoints, keypoints_field, schema, source)
        group.annotations.append(ann)
        group.image_index.append(image_index)
        group.position.append(position)
    return persons, crowds


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
    ann_id: int, keypoints: Any, field_name: str, schema: KeypointSchema, source: str
) -> None:
    if type(keypoints) is not list:
        raise DataError(
            f"{source}: annotation {ann_id} has no list {field_name!r}; check keypoints_field"
        )
    raise DataError(
        f"{source}: annotation {ann_id} has {len(keypoints)} values in {field_name!r} but schema "
        f"{schema.name!r} has {schema.num_keypoints} keypoints (needs {3 * schema.num_keypoints});"
        " pass the matching schema with --schema"
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


def _areas(areas: list[Any], boxes: np.ndarray, ids: list[Any], source: str) -> np.ndarray:
    """'area' per annotation as float32; box w * h where the annotation has none."""
    for ann_id, area in zip(ids, areas, strict=True):
        if area is not None and type(area) not in (int, float):
            raise DataError(
                f"{source}: annotation {ann_id}: 'area' must be a number, got {reprlib.repr(area)}"
            )
    values = np.array([np.nan if a is None else a for a in areas], dtype=np.float64)
    with np.errstate(over="ignore"):
        result = np.where(np.isnan(values), boxes[:, 2] * boxes[:, 3], values).astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(result))
    if bad.size:
        raise DataError(f"{source}: annotation {ids[bad[0]]}: 'area' (or bbox w * h) is not finite")
    return result


def _group_slices(sorted_image_index: np.ndarray, num_images: int) -> list[slice]:
    """Per image, the slice of rows that belong to it in an array sorted by image index."""
    counts = np.bincount(sorted_image_index, minlength=num_images)
    ends = np.cumsum(counts)
    starts = ends - counts
    return [slice(s, e) for s, e in zip(starts.tolist(), ends.tolist(), strict=True)]


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.flags.writeable = False
    return array


@dataclass(frozen=True)
class _Ignores:
    segmentations: list[Any]
    boxes: np.ndarray
    slices: list[slice]


def _ignore_regions(
    persons: _Group, person_boxes: np.ndarray, unlabelled: np.ndarray, crowds: _Group,
    num_images: int, source: str,
) -> _Ignores:  # fmt: skip
    """Crowd regions and persons without labelled keypoints, in file order within each image."""
    crowd_boxes = _float_rows(crowds.column("bbox"), 4, "bbox", crowds.column("id"), source)
    picked = unlabelled.tolist()
    image_index = np.array([persons.image_index[i] for i in picked] + crowds.image_index, np.int64)
    position = np.array([persons.position[i] for i in picked] + crowds.position, np.int64)
    order = np.lexsort((position, image_index)).tolist()
    segmentations = [persons.annotations[i].get("segmentation") for i in picked]
    segmentations += crowds.column("segmentation")
    boxes = np.concatenate([person_boxes[unlabelled], crowd_boxes]).reshape(-1, 4)
    return _Ignores(
        segmentations=[segmentations[i] for i in order],
        boxes=_frozen(boxes[order]),
        slices=_group_slices(image_index[order], num_images),
    )


def _build_records(
    table: _ImageTable, persons: _Group, crowds: _Group, field_name: str,
    schema: KeypointSchema, source: str,
) -> list[PersonImage]:  # fmt: skip
    count, num_images, k = len(persons.annotations), len(table.ids), schema.num_keypoints
    ids = persons.column("id")
    keypoints = _float_rows(persons.column(field_name), 3 * k, field_name, ids, source)
    keypoints = keypoints.reshape(count, k, 3)
    boxes = _float_rows(persons.column("bbox"), 4, "bbox", ids, source)
    areas = _areas(persons.column("area"), boxes, ids, source)
    image_index = np.asarray(persons.image_index, dtype=np.int64)
    labelled = (keypoints[:, :, 2] > 0).any(axis=1)
    ignores = _ignore_regions(persons, boxes, np.flatnonzero(~labelled), crowds, num_images, source)

    chosen = np.flatnonzero(labelled)
    chosen = chosen[np.argsort(image_index[chosen], kind="stable")]
    person_slices = _group_slices(image_index[chosen], num_images)
    ids_array = np.asarray(ids, dtype=np.int64)
    keypoints, boxes, areas, ids_array = (
        _frozen(a[chosen]) for a in (keypoints, boxes, areas, ids_array)
    )
    records = []
    for i, image_id in enumerate(table.ids):
        p, g = person_slices[i], ignores.slices[i]
        records.append(
            PersonImage(
                image_id=image_id,
                file_name=table.file_names[i],
                width=table.widths[i],
                height=table.heights[i],
                keypoints=keypoints[p],
                boxes=boxes[p],
                areas=areas[p],
                annotation_ids=ids_array[p],
                ignore_segmentations=tuple(ignores.segmentations[g]),
                ignore_boxes=ignores.boxes[g] if g.stop > g.start else _NO_BOXES,
            )
        )
    return records


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
