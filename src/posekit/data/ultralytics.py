"""Ultralytics YOLO pose data sets: read a split as COCO keypoints, and convert both ways.

The format (as Ultralytics' pose trainer reads it):

* A ``data.yaml`` file with the keys

  - ``path``: the data set root; relative to the YAML's folder here (absent = that folder).
    Ultralytics itself resolves a relative ``path`` from the working directory, so the
    converter leaves ``path`` out: both then use the YAML's folder.
  - ``train`` / ``val`` / ``test``: a folder of images (searched recursively), a ``.txt``
    file listing image paths one a line (relative ones relative to the ``.txt``'s folder), or
    a list of folders; each relative to ``path``.
  - ``kpt_shape: [K, 2 or 3]``: K keypoints of ``x y`` or ``x y v`` each.
  - ``flip_idx``: optional, K entries, the mirror partner of each keypoint (a permutation
    that is its own inverse).
  - ``names``: the classes, ``{0: person}`` or ``[person]``.
  - ``kpt_names``: optional keypoint names per class, ``{0: [nose, ...]}`` (or one list
    for all classes); else ``kpt_0 .. kpt_{K-1}``.
  - ``sigmas``: optional, K OKS sigmas. Not an Ultralytics key (it ignores it): posekit's
    own, so a custom keypoint set gets COCO AP; without it posekit reports PCK.

* One label file per image: for ``.../images/<sub>/x.jpg`` it is ``.../labels/<sub>/x.txt``
  (the last ``images`` folder of the path replaced by ``labels``, the extension by
  ``.txt``). One line per object: ``class cx cy w h`` (box centre and size) and then K
  keypoints ``x y`` or ``x y v``, all coordinates normalised to 0..1 by the image width and
  height. A missing or empty label file is an image without objects.

* Visibility: with ``x y v`` keypoints, v is COCO's (0 unlabelled, 1 labelled but hidden,
  2 visible). With ``x y`` keypoints a point at exactly (0, 0) is unlabelled (v=0) and any
  other is v=2. Unlabelled keypoints are written as ``0 0 0`` (and read as 0, 0, 0).

:func:`read_yolo_split` gives a split as a COCO keypoint dict (category id = class + 1,
image sizes from the image headers, EXIF orientation applied as decoding does, ids = the
file stems when they are all unique non-negative integers, else 1..n in path order).
:func:`coco_to_yolo` writes a COCO keypoint JSON as a YOLO pose data set (crowd
annotations and empty boxes are dropped) and :func:`yolo_to_coco` writes a split back as
COCO JSON.
"""

from __future__ import annotations

import filecmp
import math
import os
import re
import reprlib
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import yaml

from posekit.atomic import atomic_write_bytes, atomic_write_text, atomic_write_with
from posekit.data.coco import read_coco_json, resolve_image_path
from posekit.data.images import header_image_size, read_image
from posekit.errors import DataError, SchemaError, UserError
from posekit.schema import COCO17, YAML_ERRORS, KeypointSchema, load_schema, make_schema

IMAGE_SUFFIXES = frozenset(
    {".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".pfm"}
)
_HEADER_BYTES = 256 * 1024  # enough for the EXIF block and frame header of nearly any JPEG
_SPLIT_ORDER = ("train", "val", "test")


@dataclass(frozen=True)
class YoloSplit:
    """One split of a YOLO pose data set as COCO keypoints (pixels; file names relative to
    ``images_root``, forward slashes)."""

    coco: dict[str, Any]
    images_root: Path
    schema: KeypointSchema


@dataclass(frozen=True)
class _Spec:
    """A checked data.yaml."""

    file: Path
    raw: dict[str, Any]
    root: Path
    num_keypoints: int
    dims: int
    flip_idx: tuple[int, ...]
    names: dict[int, str]
    kpt_names: dict[int, tuple[str, ...]]


# ---------------------------------------------------------------------------------- reading


def read_yolo_split(data_yaml: str | Path, split: str) -> YoloSplit:
    """The ``split`` of the data set that ``data_yaml`` describes; DataError when unusable."""
    spec = _load_spec(Path(data_yaml))
    schema = _schema_of(spec)
    paths, images_root = _split_images(spec, split)
    file_names = [Path(os.path.relpath(p, images_root)).as_posix() for p in paths]
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, path, file_name in zip(_image_ids(file_names), paths, file_names, strict=True):
        width, height = image_size(path)
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        for row in _read_label_file(label_path(path), spec):
            annotations.append(_annotation(row, len(annotations) + 1, image_id, width, height))
    coco = {"images": images, "annotations": annotations, "categories": _categories(spec, schema)}
    return YoloSplit(coco=coco, images_root=images_root, schema=schema)


def yolo_schema(data_yaml: str | Path) -> KeypointSchema:
    """The keypoint schema a data.yaml defines (``kpt_shape``, ``flip_idx``, names, sigmas)."""
    return _schema_of(_load_spec(Path(data_yaml)))


def label_path(image: str | Path) -> Path:
    """The label file of an image: the last ``images`` folder of its absolute path becomes
    ``labels`` and the extension ``.txt``."""
    text = os.path.abspath(image)
    head, found, tail = text.rpartition(f"{os.sep}images{os.sep}")
    if found:
        text = f"{head}{os.sep}labels{os.sep}{tail}"
    return Path(os.path.splitext(text)[0] + ".txt")


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image as decoded (EXIF orientation applied); PNG and JPEG sizes
    come from the header, other formats are decoded."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(_HEADER_BYTES)
    except OSError:
        head = b""  # read_image below says what is wrong
    size = header_image_size(head)
    if size is None:
        height, width = read_image(path).shape[:2]
        return int(width), int(height)
    height, width = size
    if head.startswith(b"\xff\xd8") and _jpeg_orientation(head) in (5, 6, 7, 8):
        return height, width  # rotated by 90 degrees when decoded
    return width, height


def _jpeg_orientation(data: bytes) -> int:
    """The EXIF orientation (1..8) of a JPEG's APP1 block; 1 when there is none."""
    position = 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker == 0xFF:  # a fill byte
            position += 1
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan: no EXIF before it
            return 1
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        if marker == 0xE1 and data[position + 4 : position + 10] == b"Exif\x00\x00":
            return _tiff_orientation(data[position + 10 : position + 2 + length])
        position += 2 + length
    return 1


def _tiff_orientation(tiff: bytes) -> int:
    """Tag 0x0112 of the first image directory of an EXIF TIFF block; 1 when absent."""
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 1
    (offset,) = struct.unpack(f"{order}I", tiff[4:8])
    if offset + 2 > len(tiff):
        return 1
    (count,) = struct.unpack(f"{order}H", tiff[offset : offset + 2])
    for entry in range(offset + 2, min(offset + 2 + 12 * count, len(tiff) - 11), 12):
        tag, kind = struct.unpack(f"{order}HH", tiff[entry : entry + 4])
        if tag == 0x0112 and kind == 3:  # a SHORT
            return int(struct.unpack(f"{order}H", tiff[entry + 8 : entry + 10])[0])
    return 1


def _read_yaml(path: Path, what: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: {what} not found; check the path") from None
    except (*YAML_ERRORS, OSError, UnicodeDecodeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: not a readable YAML file ({reason}); fix the {what}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: the {what} must be a mapping (keys kpt_shape, names, ...)")
    return data


def _load_spec(file: Path) -> _Spec:
    file = Path(os.path.abspath(file))
    raw = _read_yaml(file, "data.yaml")
    num_keypoints, dims = _kpt_shape(raw.get("kpt_shape"), file)
    names = _names(raw.get("names"), file)
    return _Spec(
        file=file,
        raw=raw,
        root=_root(raw.get("path"), file),
        num_keypoints=num_keypoints,
        dims=dims,
        flip_idx=_flip_idx(raw.get("flip_idx"), num_keypoints, file),
        names=names,
        kpt_names=_kpt_names(raw.get("kpt_names"), num_keypoints, names, file),
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kpt_shape(value: Any, file: Path) -> tuple[int, int]:
    ok = isinstance(value, list) and len(value) == 2 and all(_is_int(v) for v in value)
    if not ok or value[0] < 1 or value[1] not in (2, 3):
        raise DataError(
            f"{file}: 'kpt_shape' must be [K, 2] or [K, 3] (K keypoints of x y or x y v), got "
            f"{reprlib.repr(value)}; fix kpt_shape in the data.yaml"
        )
    return value[0], value[1]


def _names(value: Any, file: Path) -> dict[int, str]:
    if isinstance(value, list):
        value = dict(enumerate(value))
    ok = isinstance(value, dict) and bool(value)
    if not ok or not all(_is_int(k) and k >= 0 and isinstance(v, str) for k, v in value.items()):
        raise DataError(
            f"{file}: 'names' must be the class names, as {{0: person}} or [person], got "
            f"{reprlib.repr(value)}; fix names in the data.yaml"
        )
    return dict(sorted(value.items()))


def _root(value: Any, file: Path) -> Path:
    if value is None or value == "":
        return file.parent
    if not isinstance(value, str):
        raise DataError(f"{file}: 'path' must be a folder name, got {reprlib.repr(value)}")
    return Path(os.path.abspath(file.parent / os.path.expanduser(value)))


def _flip_idx(value: Any, count: int, file: Path) -> tuple[int, ...]:
    if value is None:
        return tuple(range(count))
    ok = isinstance(value, list) and all(_is_int(v) for v in value)
    if (
        not ok
        or sorted(value) != list(range(count))
        or any(value[v] != i for i, v in enumerate(value))
    ):
        raise DataError(
            f"{file}: 'flip_idx' must list, for each of the {count} keypoints, its mirror "
            f"partner (a permutation of 0..{count - 1} that is its own inverse), got "
            f"{reprlib.repr(value)}; fix flip_idx in the data.yaml"
        )
    return tuple(value)


def _kpt_names(
    value: Any, count: int, names: dict[int, str], file: Path
) -> dict[int, tuple[str, ...]]:
    if value is None:
        return {}
    per_class = dict.fromkeys(names, value) if isinstance(value, list) else value
    if not isinstance(per_class, dict):
        raise DataError(f"{file}: 'kpt_names' must be {{class: [names]}}; fix it or remove it")
    result = {}
    for key, entry in per_class.items():
        ok = isinstance(entry, list) and len(entry) == count and len(set(entry)) == count
        if key not in names or not ok or not all(isinstance(n, str) and n for n in entry):
            raise DataError(
                f"{file}: 'kpt_names' of class {key!r} must be {count} different names of a "
                "class in 'names'; fix kpt_names or remove it"
            )
        result[key] = tuple(entry)
    return result


def _schema_of(spec: _Spec) -> KeypointSchema:
    """COCO-17 for 17 keypoints with COCO's flips, else a schema named after the YAML."""
    if spec.num_keypoints == 17 and spec.flip_idx == tuple(COCO17.flip_index().tolist()):
        return COCO17
    first = min(spec.kpt_names) if spec.kpt_names else None
    keypoints = spec.kpt_names[first] if first is not None else _default_names(spec)
    pairs = [(i, j) for i, j in enumerate(spec.flip_idx) if i < j]
    try:
        return make_schema(
            spec.file.stem, keypoints, (), pairs, spec.raw.get("sigmas"), source=str(spec.file)
        )
    except SchemaError as exc:
        raise DataError(str(exc)) from None


def _default_names(spec: _Spec) -> tuple[str, ...]:
    return tuple(f"kpt_{i}" for i in range(spec.num_keypoints))


def _categories(spec: _Spec, schema: KeypointSchema) -> list[dict[str, Any]]:
    return [
        {
            "id": index + 1,
            "name": name,
            "supercategory": name,
            "keypoints": list(spec.kpt_names.get(index, schema.keypoints)),
            "skeleton": [],
        }
        for index, name in spec.names.items()
    ]


def _split_images(spec: _Spec, split: str) -> tuple[list[Path], Path]:
    """The split's image files (sorted) and the folder their file names are relative to."""
    value = spec.raw.get(split)
    entries = value if isinstance(value, list) else [value]
    if value is None or value == [] or not all(isinstance(e, str) and e for e in entries):
        raise DataError(
            f"{spec.file}: no usable {split!r} split (got {reprlib.repr(value)}); add "
            f"'{split}: images/{split}' (a folder, a .txt list or a list of folders) or choose "
            "another --split"
        )
    paths: set[Path] = set()
    roots: list[str] = []
    for entry in entries:
        location = Path(os.path.abspath(spec.root / os.path.expanduser(entry)))
        found = _images_at(location, spec, split)
        paths.update(found)
        roots += [str(location)] if location.is_dir() else [str(p.parent) for p in found]
    if not paths:
        raise DataError(
            f"{spec.file}: split {split!r} ({reprlib.repr(value)}) has no images (looked for "
            f"{', '.join(sorted(IMAGE_SUFFIXES))}); fix {split!r} or 'path'"
        )
    return sorted(paths), Path(os.path.commonpath(roots))


def _images_at(location: Path, spec: _Spec, split: str) -> list[Path]:
    if location.is_dir():
        return [
            p for p in location.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        ]
    if location.suffix == ".txt" and location.is_file():
        return _listed_images(location)
    raise DataError(
        f"{spec.file}: the {split!r} images {location} are missing (neither a folder nor a "
        f".txt list); fix {split!r} or 'path' (the data set root, now {spec.root})"
    )


def _listed_images(listing: Path) -> list[Path]:
    try:
        lines = listing.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{listing}: cannot read the image list ({exc}); fix the file") from None
    images = []
    for number, line in enumerate(lines, start=1):
        name = line.strip()
        if not name or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
            continue
        path = Path(os.path.abspath(listing.parent / name))
        if not path.is_file():
            raise DataError(f"{listing}:{number}: image {path} not found; fix or remove the line")
        images.append(path)
    return images


def _image_ids(file_names: list[str]) -> list[int]:
    """The file stems when all are unique non-negative integers (int64), else 1..n."""
    stems = [Path(name).stem for name in file_names]
    if all(s.isascii() and s.isdigit() and int(s) < 2**63 for s in stems):
        ids = [int(s) for s in stems]
        if len(set(ids)) == len(ids):
            return ids
    return list(range(1, len(file_names) + 1))


@dataclass(frozen=True)
class _Row:
    class_index: int
    box: tuple[float, ...]  # cx, cy, w, h normalised
    keypoints: tuple[tuple[float, float, int], ...]  # x, y normalised; v


def _read_label_file(path: Path, spec: _Spec) -> list[_Row]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read label file ({exc}); fix or remove it") from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if tokens:
            rows.append(_parse_row(tokens, spec, f"{path}:{number}"))
    return rows


def _parse_row(tokens: list[str], spec: _Spec, where: str) -> _Row:
    k, dims = spec.num_keypoints, spec.dims
    if len(tokens) != 5 + k * dims:
        layout = "x y v" if dims == 3 else "x y"
        raise DataError(
            f"{where}: {len(tokens)} numbers, but kpt_shape {[k, dims]} of {spec.file} needs "
            f"{5 + k * dims} (class cx cy w h, then {k} keypoints of {layout}); fix the line "
            "or kpt_shape"
        )
    values = []
    for token in tokens:
        try:
            value = float(token)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise DataError(f"{where}: {reprlib.repr(token)} is not a finite number; fix the line")
        values.append(value)
    if not values[0].is_integer() or int(values[0]) not in spec.names:
        raise DataError(
            f"{where}: class {tokens[0]} is not in 'names' of {spec.file} (classes "
            f"{sorted(spec.names)}); fix the class index or add the class to names"
        )
    return _Row(int(values[0]), tuple(values[1:5]), _keypoints(values[5:], dims, where))


def _keypoints(values: list[float], dims: int, where: str) -> tuple[tuple[float, float, int], ...]:
    points = []
    for i in range(0, len(values), dims):
        x, y = values[i], values[i + 1]
        if dims == 2:
            v = 0 if x == 0 and y == 0 else 2
        elif values[i + 2] in (0, 1, 2):
            v = int(values[i + 2])
        else:
            raise DataError(
                f"{where}: keypoint {i // dims} has visibility {values[i + 2]:g}; it must be "
                "0 (unlabelled), 1 (hidden) or 2 (visible)"
            )
        points.append((x, y, v) if v else (0.0, 0.0, 0))
    return tuple(points)


def _annotation(row: _Row, ann_id: int, image_id: int, width: int, height: int) -> dict[str, Any]:
    cx, cy, w, h = row.box
    box_w, box_h = w * width, h * height
    keypoints: list[float | int] = []
    for x, y, v in row.keypoints:
        keypoints += [x * width, y * height, v] if v else [0, 0, 0]
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": row.class_index + 1,
        "iscrowd": 0,
        "bbox": [(cx - w / 2) * width, (cy - h / 2) * height, box_w, box_h],
        "area": box_w * box_h,
        "keypoints": keypoints,
        "num_keypoints": sum(1 for _, _, v in row.keypoints if v),
    }


def yolo_to_coco(data_yaml: str | Path, split: str, out_file: str | Path) -> Path:
    """Write ``split`` of a YOLO pose data set as COCO keypoint JSON (file names relative to
    the split's images root); refuses to overwrite ``out_file``."""
    out_file = Path(out_file)
    _refuse_existing(out_file)
    return _write_coco(read_yolo_split(data_yaml, split), out_file)


def _refuse_existing(out_file: Path) -> None:
    if out_file.exists():
        raise DataError(f"{out_file}: exists; choose another --out (or delete it first)")


def _write_coco(split: YoloSplit, out_file: Path) -> Path:
    _refuse_existing(out_file)
    atomic_write_bytes(out_file, orjson.dumps(split.coco))
    return out_file


# ---------------------------------------------------------------------------- COCO -> YOLO


@dataclass(frozen=True)
class _Image:
    image_id: int
    file_name: str
    width: int
    height: int


@dataclass(frozen=True)
class _Output:
    source: Path  # the image to copy
    image: Path  # where it goes
    label: Path
    text: str  # the label file's content


@dataclass(frozen=True)
class YoloWritten:
    """What :func:`convert_coco_to_yolo` wrote."""

    data_yaml: Path
    images: int
    people: int


def coco_to_yolo(
    labels: str | Path,
    images: str | Path,
    out_dir: str | Path,
    split: str = "train",
    schema: KeypointSchema | None = None,
    keypoints_field: str = "keypoints",
) -> Path:
    """Write a COCO keypoint JSON as split ``split`` of a YOLO pose data set in ``out_dir``;
    returns its data.yaml. See :func:`convert_coco_to_yolo`."""
    return convert_coco_to_yolo(labels, images, out_dir, split, schema, keypoints_field).data_yaml


def convert_coco_to_yolo(
    labels: str | Path,
    images: str | Path,
    out_dir: str | Path,
    split: str = "train",
    schema: KeypointSchema | None = None,
    keypoints_field: str = "keypoints",
) -> YoloWritten:
    """:func:`coco_to_yolo`, also counting what was written.

    Images are hard-linked (else copied) to ``out_dir/images/<split>/<file_name>``, labels
    go to ``out_dir/labels/<split>/``; an existing data.yaml gains the split. Nothing is
    overwritten with different content: DataError instead, before anything is written."""
    _check_split_name(split)
    labels, out_dir = Path(labels), Path(out_dir)
    data = read_coco_json(labels)
    categories = _keypoint_categories(data, str(labels))
    schema = schema or _schema_for_categories(categories, str(labels))
    table = _image_table(data["images"], str(labels))
    lines, people = _label_lines(data["annotations"], table, categories, schema,
                                 keypoints_field, str(labels))  # fmt: skip
    outputs = _plan_outputs(table, lines, Path(images), out_dir / "images" / split)
    data_yaml = out_dir / "data.yaml"
    spec_text = _merged_data_yaml(data_yaml, split, schema, categories)
    for output in outputs:
        _check_free(output)
    for output in outputs:
        _place_image(output.source, output.image)
        if not output.label.is_file():
            atomic_write_text(output.label, output.text)
    atomic_write_text(data_yaml, spec_text)
    return YoloWritten(data_yaml=data_yaml, images=len(outputs), people=people)


def _check_split_name(split: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", split or ""):
        raise DataError(f"split {split!r} must be a plain name such as train, val or test")


def _keypoint_categories(data: dict[str, Any], source: str) -> list[dict[str, Any]]:
    """Categories with 'keypoints' (else those named 'person'), sorted by id."""
    categories = data.get("categories")
    if not isinstance(categories, list) or not all(isinstance(c, dict) for c in categories):
        raise DataError(f"{source}: 'categories' must be a list of objects")
    chosen = [c for c in categories if c.get("keypoints")]
    chosen = chosen or [c for c in categories if c.get("name") == "person"]
    if not chosen:
        raise DataError(
            f"{source}: no category has 'keypoints' and none is named 'person'; add the "
            "keypoint category to 'categories'"
        )
    ids = [c.get("id") for c in chosen]
    if not all(_is_int(i) for i in ids) or len(set(ids)) != len(ids):
        raise DataError(f"{source}: keypoint categories need unique integer ids, got {ids}")
    return sorted(chosen, key=lambda c: c["id"])


def _schema_for_categories(categories: list[dict[str, Any]], source: str) -> KeypointSchema:
    counts = sorted({len(c.get("keypoints") or ()) for c in categories})
    if counts == [17]:
        return COCO17
    raise DataError(
        f"{source}: its categories have {counts} keypoints, not COCO's 17; pass the keypoint "
        "schema (--schema NAME or a schema YAML)"
    )


def _image_table(entries: list[Any], source: str) -> dict[int, _Image]:
    table: dict[int, _Image] = {}
    for position, entry in enumerate(entries):
        entry = entry if isinstance(entry, dict) else {}
        image_id, name = entry.get("id"), entry.get("file_name")
        width, height = entry.get("width"), entry.get("height")
        if not (_is_int(image_id) and isinstance(name, str) and name):
            raise DataError(f"{source}: images[{position}] needs an integer 'id' and a 'file_name'")
        if not (_is_int(width) and _is_int(height) and width > 0 and height > 0):
            raise DataError(f"{source}: image {image_id} needs positive integer width and height")
        if image_id in table:
            raise DataError(f"{source}: image id {image_id} appears twice; make ids unique")
        table[image_id] = _Image(image_id, name, width, height)
    return table


def _label_lines(
    annotations: list[Any], table: dict[int, _Image], categories: list[dict[str, Any]],
    schema: KeypointSchema, field: str, source: str,
) -> tuple[dict[int, list[str]], int]:  # fmt: skip
    """Label lines per image id (file order) of the non-crowd annotations with a box."""
    class_of = {c["id"]: index for index, c in enumerate(categories)}
    lines: dict[int, list[str]] = {image_id: [] for image_id in table}
    people = 0
    for position, ann in enumerate(annotations):
        if not isinstance(ann, dict):
            raise DataError(f"{source}: annotations[{position}] is not an object")
        category = ann.get("category_id")
        if not _is_int(category) or category not in class_of or ann.get("iscrowd"):
            continue
        box = _numbers(ann.get("bbox"), 4, "bbox", ann, source)
        if box[2] <= 0 or box[3] <= 0:
            continue
        image_id = ann.get("image_id")
        image = table.get(image_id) if _is_int(image_id) else None
        if image is None:
            raise DataError(
                f"{source}: annotation {ann.get('id')} refers to image_id "
                f"{reprlib.repr(image_id)}, which is not in 'images'; fix it or remove it"
            )
        keypoints = _numbers(ann.get(field), 3 * schema.num_keypoints, field, ann, source)
        lines[image.image_id].append(_line(class_of[category], box, keypoints, image, ann, source))
        people += 1
    return lines, people


def _numbers(value: Any, count: int, what: str, ann: dict[str, Any], source: str) -> list[float]:
    ok = isinstance(value, list) and len(value) == count
    if not ok or not all(type(v) in (int, float) and math.isfinite(v) for v in value):
        raise DataError(
            f"{source}: annotation {ann.get('id')}: {what!r} must be {count} finite numbers, got "
            f"{reprlib.repr(value)}; pass the matching --schema / --keypoints-field or fix it"
        )
    return [float(v) for v in value]


def _line(
    class_index: int, box: list[float], keypoints: list[float], image: _Image,
    ann: dict[str, Any], source: str,
) -> str:  # fmt: skip
    x, y, w, h = box
    width, height = image.width, image.height
    box_values = ((x + w / 2) / width, (y + h / 2) / height, w / width, h / height)
    parts = [str(class_index), *map(_number_text, box_values)]
    for i in range(0, len(keypoints), 3):
        v = keypoints[i + 2]
        if v not in (0, 1, 2):
            raise DataError(
                f"{source}: annotation {ann.get('id')}: keypoint {i // 3} has visibility {v:g}; "
                "it must be 0, 1 or 2"
            )
        if v:
            parts += [_number_text(keypoints[i] / width), _number_text(keypoints[i + 1] / height)]
        else:
            parts += ["0", "0"]
        parts.append(str(int(v)))
    return " ".join(parts)


def _number_text(value: float) -> str:
    """The shortest decimal that reads back as exactly ``value`` (no exponent)."""
    return np.format_float_positional(value, trim="-")


def _plan_outputs(
    table: dict[int, _Image], lines: dict[int, list[str]], images_root: Path, target: Path
) -> list[_Output]:
    outputs, seen = [], {}
    for image in table.values():
        source = resolve_image_path(images_root, image.file_name)
        width, height = image_size(source)
        if (width, height) != (image.width, image.height):
            raise DataError(
                f"{source}: the image is {width}x{height} but the labels say image "
                f"{image.image_id} is {image.width}x{image.height}; fix its width and height"
            )
        destination = resolve_image_path(target, image.file_name)
        label = label_path(destination)
        if label in seen:
            raise DataError(
                f"images {seen[label]!r} and {image.file_name!r} would share the label file "
                f"{label}; rename one of them"
            )
        seen[label] = image.file_name
        text = "".join(f"{line}\n" for line in lines[image.image_id])
        outputs.append(_Output(source, destination, label, text))
    return outputs


def _check_free(output: _Output) -> None:
    """DataError when the image or label file exists with other content."""
    if output.label.exists():
        try:
            same = output.label.read_text(encoding="utf-8") == output.text
        except (OSError, UnicodeDecodeError):
            same = False
        if not same:
            raise DataError(f"{output.label}: exists with other labels; choose another --out")
    if output.image.exists() and not _same_file(output.source, output.image):
        raise DataError(f"{output.image}: exists and is another image; choose another --out")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b) or filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


def _place_image(source: Path, destination: Path) -> None:
    """Hard-link ``source`` to ``destination``, else copy it (atomically)."""
    if destination.exists():
        return  # the same image: checked by _check_free
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, destination)
        return
    except OSError:
        pass  # another file system, or links not allowed: copy
    with source.open("rb") as handle:
        atomic_write_with(destination, lambda out: shutil.copyfileobj(handle, out))


def _yaml_content(
    split: str, schema: KeypointSchema, categories: list[dict[str, Any]]
) -> dict[str, Any]:
    names = {i: str(c.get("name") or f"class_{i}") for i, c in enumerate(categories)}
    content: dict[str, Any] = {
        split: f"images/{split}",
        "kpt_shape": [schema.num_keypoints, 3],
        "flip_idx": schema.flip_index().tolist(),
        "names": names,
        "kpt_names": {i: list(schema.keypoints) for i in names},
    }
    if schema.sigmas is not None:
        content["sigmas"] = list(schema.sigmas)
    return content


def _merged_data_yaml(
    file: Path, split: str, schema: KeypointSchema, categories: list[dict[str, Any]]
) -> str:
    """The data.yaml text: this split added to an existing file of the same keypoint set."""
    content = _yaml_content(split, schema, categories)
    if file.exists():
        existing = _read_yaml(file, "data.yaml")
        for key, value in content.items():
            if key in existing and existing[key] != value:
                raise DataError(
                    f"{file}: exists with another {key!r} ({reprlib.repr(existing[key])}); "
                    "choose another --out"
                )
        content = {**existing, **content}
    rank = {name: i for i, name in enumerate(_SPLIT_ORDER)}
    splits = sorted((k for k in content if k in rank or k == split), key=lambda k: rank.get(k, 9))
    ordered = {k: content[k] for k in [*splits, *(k for k in content if k not in splits)]}
    header = "# Ultralytics YOLO pose data set (written by posekit convert)\n"
    return header + yaml.safe_dump(ordered, sort_keys=False, default_flow_style=None, width=100)


# ------------------------------------------------------------------------------------ CLI


def run_convert(
    to: str,
    out: str | Path,
    *,
    labels: str | Path | None = None,
    images: str | Path | None = None,
    data: str | Path | None = None,
    split: str | None = None,
    schema: str | None = None,
    keypoints_field: str | None = None,
    say: Callable[[str], None] = print,
) -> int:
    """``posekit convert``: COCO JSON -> YOLO pose (``to="yolo"``) or back (``to="coco"``)."""
    if to == "yolo":
        if labels is None or images is None or data is not None:
            raise UserError("posekit convert --to yolo needs --labels JSON and --images DIR "
                            "(not --data); see --help")  # fmt: skip
        split = split or "train"
        written = convert_coco_to_yolo(
            labels, images, out, split, load_schema(schema) if schema else None,
            keypoints_field or "keypoints",
        )  # fmt: skip
        say(f"wrote {written.data_yaml}: split {split!r}, {written.images} images, "
            f"{written.people} people")  # fmt: skip
        return 0
    if data is None or labels is not None or images is not None or schema or keypoints_field:
        raise UserError(
            "posekit convert --to coco needs --data DATA.yaml (and takes no --labels, "
            "--images, --schema or --keypoints-field); see --help"
        )
    split = split or "val"
    _refuse_existing(Path(out))
    result = read_yolo_split(data, split)
    _write_coco(result, Path(out))
    say(f"wrote {out}: split {split!r} of {data}, {len(result.coco['images'])} images, "
        f"{len(result.coco['annotations'])} people")  # fmt: skip
    return 0
