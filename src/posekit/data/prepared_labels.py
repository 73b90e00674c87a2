"""Lightweight OpenPose's prepared training labels (its `scripts/prepare_train_labels.py`).

:func:`prepare_train_labels` reproduces the original selection and record layout: per image,
persons with ``num_keypoints >= 5`` and ``area >= 32 * 32`` are chosen in file order, skipping one
whose box centre lies within 0.3 x the box width of an already chosen person's centre; every
record carries the other non-crowd persons of its image (``processed_other_annotations``), the
image's crowd segmentations, and keypoints with the original visibility remapping
(COCO v=2 -> 1, v=1 -> 0, v=0 -> 2).

File format: the original pickles its output, and loading a pickle can run arbitrary code, so
posekit writes the same records as JSON. Asking ``posekit prepare`` for a ``.pkl`` name writes
``<name>.json`` instead and says so; names without ``.json`` get it appended. Existing ``.pkl``
files made by the original script still load, through an unpickler that refuses every global
(only plain lists, dicts, strings, numbers, booleans and None can come out of it).
"""

from __future__ import annotations

import io
import pickle
import sys
from pathlib import Path
from typing import Any, TextIO

import orjson

from posekit.atomic import atomic_write_bytes
from posekit.data.coco import read_coco_json
from posekit.errors import DataError

NET_INPUT_SIZE = 368
MIN_KEYPOINTS = 5
MIN_AREA = 32 * 32
CLOSE_CENTRE_FRACTION = 0.3
RECORD_KEYS = frozenset(
    {"img_paths", "img_width", "img_height", "objpos", "image_id", "bbox", "segment_area",
     "scale_provided", "num_keypoints", "segmentations", "keypoints",
     "processed_other_annotations"}
)  # fmt: skip
_PICKLE_SUFFIXES = (".pkl", ".pickle")
_PLAIN_SCALARS = (str, int, float, bool, type(None))


def prepare_train_labels(
    labels_path: str | Path,
    net_input_size: int = NET_INPUT_SIZE,
    mask_unlabelled_persons: bool = False,
) -> list[dict[str, Any]]:
    """Training records from a COCO keypoint JSON, exactly as the original script makes them.

    ``mask_unlabelled_persons`` also lists the segmentations of non-crowd persons without
    keypoints under ``segmentations`` (the original lists crowd regions only).
    """
    data = read_coco_json(labels_path)
    try:
        return _prepare(data, net_input_size, mask_unlabelled_persons)
    except (KeyError, TypeError, IndexError) as exc:
        raise DataError(
            f"{labels_path}: malformed annotation or image ({type(exc).__name__}: {exc}); "
            "run posekit check-data on it to find the entry"
        ) from None


def _prepare(
    data: dict[str, Any], net_input_size: int, mask_unlabelled: bool
) -> list[dict[str, Any]]:
    persons_by_image: dict[Any, list[dict[str, Any]]] = {}
    ignored_by_image: dict[Any, list[Any]] = {}
    for ann in data["annotations"]:
        if ann["num_keypoints"] != 0 and not ann["iscrowd"]:
            persons_by_image.setdefault(ann["image_id"], []).append(ann)
        elif ann["iscrowd"] or mask_unlabelled:
            ignored_by_image.setdefault(ann["image_id"], []).append(ann["segmentation"])
    images = {image["id"]: image for image in data["images"]}
    records = []
    for image_id, persons in persons_by_image.items():
        if image_id not in images:
            raise KeyError(f"image_id {image_id} is not in 'images'")
        segmentations = ignored_by_image.get(image_id, [])
        records += _image_records(persons, segmentations, images[image_id], net_input_size)
    return records


def _image_records(
    persons: list[dict[str, Any]], segmentations: list[Any], image: dict[str, Any], size: int
) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    chosen_centres: list[tuple[float, float, float]] = []  # x, y, box width
    for ann in persons:
        if ann["num_keypoints"] < MIN_KEYPOINTS or ann["area"] < MIN_AREA:
            continue
        centre = _box_centre(ann["bbox"])
        if _is_close(centre, chosen_centres):
            continue
        record = {
            "img_paths": image["file_name"],
            "img_width": image["width"],
            "img_height": image["height"],
            "objpos": centre,
            "image_id": ann["image_id"],
            "bbox": ann["bbox"],
            "segment_area": ann["area"],
            "scale_provided": ann["bbox"][3] / size,
            "num_keypoints": ann["num_keypoints"],
            "segmentations": segmentations,
            "keypoints": remap_visibility(ann["keypoints"]),
            # dict equality, as the original compares: identical duplicates are dropped too
            "processed_other_annotations": [
                _other_record(other, size) for other in persons if other != ann
            ],
        }
        records.append(record)
        chosen_centres.append((centre[0], centre[1], ann["bbox"][2]))
    return records


def _box_centre(bbox: list[float]) -> list[float]:
    return [bbox[0] + bbox[2] / 2, bbox[1] + bbox[3] / 2]


def _is_close(centre: list[float], chosen: list[tuple[float, float, float]]) -> bool:
    for x, y, width in chosen:
        distance = ((centre[0] - x) ** 2 + (centre[1] - y) ** 2) ** 0.5  # the original's formula
        if distance < width * CLOSE_CENTRE_FRACTION:
            return True
    return False


def _other_record(ann: dict[str, Any], size: int) -> dict[str, Any]:
    return {
        "objpos": _box_centre(ann["bbox"]),
        "bbox": ann["bbox"],
        "segment_area": ann["area"],
        "scale_provided": ann["bbox"][3] / size,
        "num_keypoints": ann["num_keypoints"],
        "keypoints": remap_visibility(ann["keypoints"]),
    }


def remap_visibility(flat_keypoints: list[float]) -> list[list[float]]:
    """COCO [x, y, v, ...] to the original's [[x, y, v'], ...]: v 2 -> 1, 1 -> 0, else 2."""
    remapped = []
    for i in range(len(flat_keypoints) // 3):
        x, y, v = flat_keypoints[3 * i : 3 * i + 3]
        remapped.append([x, y, 1 if v == 2 else 0 if v == 1 else 2])
    return remapped


def save_prepared_labels(records: list[dict[str, Any]], path: str | Path) -> Path:
    """Write records as JSON, atomically (a reader never sees half a file)."""
    try:
        payload = orjson.dumps(records)
    except orjson.JSONEncodeError as exc:
        raise DataError(f"{path}: prepared labels are not plain JSON data ({exc})") from None
    atomic_write_bytes(path, payload)
    return Path(path)


class PlainDataUnpickler(pickle.Unpickler):
    """Unpickles plain data only: any class, function or module reference is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: only plain data allowed")


def load_prepared_labels(path: str | Path) -> list[dict[str, Any]]:
    """Read prepared labels from ``.json``, or from a ``.pkl`` of the original script, safely."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise DataError(
            f"{path}: cannot read prepared labels ({reason}); run posekit prepare"
        ) from None
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        records = _unpickle_plain(raw, path)
    elif path.suffix.lower() == ".json":
        try:
            records = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise DataError(f"{path}: not valid JSON ({exc}); run posekit prepare again") from None
    else:
        raise DataError(f"{path}: unknown prepared labels format; use a .json (or legacy .pkl)")
    _check_records(records, path)
    return records


def _unpickle_plain(raw: bytes, path: Path) -> Any:
    try:
        data = PlainDataUnpickler(io.BytesIO(raw)).load()
    except pickle.UnpicklingError as exc:
        raise DataError(f"{path}: unsafe or corrupt pickle refused ({exc})") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise DataError(f"{path}: corrupt pickle ({type(exc).__name__}: {exc})") from None
    if not _is_plain(data):
        raise DataError(f"{path}: pickle holds non-plain objects; refused")
    return data


def _is_plain(data: Any) -> bool:
    """Only dict / list / tuple containers with str keys and str / number / bool / None leaves."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if not all(isinstance(key, (str, int)) for key in item):
                return False
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif not isinstance(item, _PLAIN_SCALARS):
            return False
    return True


def _check_records(records: Any, path: Path) -> None:
    if not isinstance(records, list):
        raise DataError(f"{path}: prepared labels must be a list of records")
    for index, record in enumerate(records):
        missing = RECORD_KEYS - record.keys() if isinstance(record, dict) else RECORD_KEYS
        if missing:
            raise DataError(
                f"{path}: record {index} lacks {sorted(missing)}; run posekit prepare again"
            )


def prepared_output_path(output_name: str | Path) -> Path:
    """``.json`` as given; ``.pkl`` / ``.pickle`` become ``.json``; other names get ``.json``."""
    path = Path(output_name)
    if path.suffix.lower() == ".json":
        return path
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        return path.with_suffix(".json")
    return path.with_name(path.name + ".json")


def run_prepare(
    labels: str | Path,
    output_name: str | Path = "prepared_train_annotation.json",
    net_input_size: int = NET_INPUT_SIZE,
    out: TextIO | None = None,
) -> int:
    """``posekit prepare``: write the prepared labels JSON; returns the exit status (0)."""
    out = sys.stdout if out is None else out  # looked up now: sys.stdout may be replaced
    records = prepare_train_labels(labels, net_input_size)
    target = prepared_output_path(output_name)
    if Path(output_name).suffix.lower() in _PICKLE_SUFFIXES:
        out.write(
            f"note: writing {target} (JSON) instead of the pickle {output_name}: loading pickles "
            "can run code; posekit reads the JSON, and still reads old .pkl files safely\n"
        )
    save_prepared_labels(records, target)
    out.write(f"prepared {len(records)} training records from {labels} -> {target}\n")
    return 0
