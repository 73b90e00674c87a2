"""Keypoint schemas: names, limbs (skeleton), flip pairs, OKS sigmas and joint weights.

COCO-17 is built in. Any other keypoint set comes from a YAML file::

    name: crowdpose
    keypoints: [left_shoulder, right_shoulder, ...]
    skeleton: [[0, 2], [2, 4], ...]      # limbs, 0-based: PAF channels and drawing
    flip_pairs: [[0, 1], [2, 3], ...]
    sigmas: [0.079, 0.079, ...]          # OKS; required for COCO AP, else PCK is reported
    joint_weights: [1.0, ...]            # optional loss weights, default all 1
    keypoints_fields: [keypoints, ...]   # optional: COCO fields whose lists, joined, are these

Indices are 0-based. Validation rejects out-of-range indices, a keypoint in two flip pairs,
a pair that maps a keypoint to itself, and sigma/weight lists whose length is not the
keypoint count.

``keypoints_fields`` is for data sets that split a person's keypoints over several COCO
annotation fields (COCO-WholeBody: ``keypoints``, ``foot_kpts``, ``face_kpts``,
``lefthand_kpts``, ``righthand_kpts``); absent means the usual single ``keypoints`` field.

Built-in schemas: ``coco17`` (in code) and every YAML in ``configs/schemas`` (crowdpose, aic,
mpii, ochuman, posetrack18, coco_wholebody, halpe, halpe26, ap10k, macaque, humanart21, body14),
loadable by name. :func:`builtin_schema_for_names` finds the one whose keypoint names match a
file's ``categories[].keypoints``.
"""

from __future__ import annotations

import functools
import reprlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from posekit.errors import SchemaError, did_you_mean

COCO17_KEYPOINTS = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
# The COCO annotation file's skeleton (1-based there), converted to 0-based indices.
COCO17_SKELETON = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
    (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)  # fmt: skip
COCO17_FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
COCO17_SIGMAS = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
    0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
)  # fmt: skip
COCO17_JOINT_WEIGHTS = (
    1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.2, 1.2, 1.5, 1.5, 1.0, 1.0, 1.2, 1.2, 1.5, 1.5,
)  # fmt: skip


SCHEMAS_DIR = Path(__file__).resolve().parent / "configs" / "schemas"
LOWER_BODY_WORDS = ("hip", "knee", "ankle", "heel", "toe", "foot", "feet", "leg", "thigh", "shin")


@dataclass(frozen=True)
class KeypointSchema:
    """An immutable keypoint set. Build it with :func:`make_schema` to get validation."""

    name: str
    keypoints: tuple[str, ...]
    skeleton: tuple[tuple[int, int], ...]
    flip_pairs: tuple[tuple[int, int], ...]
    sigmas: tuple[float, ...] | None = None
    joint_weights: tuple[float, ...] = field(default=())
    keypoints_fields: tuple[str, ...] | None = None

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)

    @property
    def num_limbs(self) -> int:
        return len(self.skeleton)

    @property
    def has_sigmas(self) -> bool:
        return self.sigmas is not None

    def flip_index(self) -> np.ndarray:
        """Permutation that maps keypoint ``i`` to its mirror image (identity if unpaired)."""
        index = np.arange(self.num_keypoints)
        for a, b in self.flip_pairs:
            index[a], index[b] = b, a
        return index

    def body_halves(self) -> tuple[np.ndarray, np.ndarray]:
        """(upper ids, lower ids) for half-body augmentation: a keypoint is lower-body when
        its name holds a word such as hip, knee, ankle, toe, heel or foot."""
        lower = np.array(
            [any(word in name.lower() for word in LOWER_BODY_WORDS) for name in self.keypoints]
        )
        ids = np.arange(self.num_keypoints)
        return ids[~lower], ids[lower]

    def sigmas_array(self) -> np.ndarray:
        if self.sigmas is None:
            raise SchemaError(
                f"schema {self.name!r} has no 'sigmas'; add one OKS sigma per keypoint to "
                "its YAML to compute COCO AP"
            )
        return np.asarray(self.sigmas, dtype=np.float64)

    def joint_weights_array(self) -> np.ndarray:
        return np.asarray(self.joint_weights, dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (YAML/JSON/checkpoint safe); :func:`schema_from_dict` reads it back.
        ``keypoints_fields`` appears only when set, so other schemas keep their old form."""
        data: dict[str, Any] = {
            "name": self.name,
            "keypoints": list(self.keypoints),
            "skeleton": [list(limb) for limb in self.skeleton],
            "flip_pairs": [list(pair) for pair in self.flip_pairs],
            "sigmas": None if self.sigmas is None else list(self.sigmas),
            "joint_weights": list(self.joint_weights),
        }
        if self.keypoints_fields is not None:
            data["keypoints_fields"] = list(self.keypoints_fields)
        return data


def make_schema(
    name: str,
    keypoints: list[str] | tuple[str, ...],
    skeleton: list | tuple,
    flip_pairs: list | tuple = (),
    sigmas: list | tuple | None = None,
    joint_weights: list | tuple | None = None,
    source: str = "schema",
    *,
    keypoints_fields: list | tuple | None = None,
) -> KeypointSchema:
    """Validate and build a schema; ``source`` names the file in error messages."""
    keypoint_names = _as_names(keypoints, source)
    count = len(keypoint_names)
    limbs = _as_index_pairs(skeleton, count, f"{source}: skeleton")
    pairs = _as_index_pairs(flip_pairs, count, f"{source}: flip_pairs")
    _check_flip_pairs(pairs, source)
    sigma_values = None if sigmas is None else _as_floats(sigmas, count, f"{source}: sigmas")
    if sigma_values is not None and any(s <= 0 for s in sigma_values):
        raise SchemaError(f"{source}: sigmas must all be > 0; fix the non-positive entries")
    weights = (
        (1.0,) * count
        if joint_weights is None
        else _as_floats(joint_weights, count, f"{source}: joint_weights")
    )
    fields = None if keypoints_fields is None else _as_fields(keypoints_fields, source)
    return KeypointSchema(
        name=str(name),
        keypoints=keypoint_names,
        skeleton=limbs,
        flip_pairs=pairs,
        sigmas=sigma_values,
        joint_weights=weights,
        keypoints_fields=fields,
    )


_SCHEMA_KEYS = (
    "name",
    "keypoints",
    "skeleton",
    "flip_pairs",
    "sigmas",
    "joint_weights",
    "keypoints_fields",
)


def schema_from_dict(data: Any, source: str = "schema") -> KeypointSchema:
    if not isinstance(data, dict):
        raise SchemaError(f"{source}: expected a mapping with keys {list(_SCHEMA_KEYS)}")
    for key in data:
        if key not in _SCHEMA_KEYS:
            hint = did_you_mean(str(key), _SCHEMA_KEYS)
            raise SchemaError(f"{source}: unknown key {key!r}{hint}; allowed: {list(_SCHEMA_KEYS)}")
    for key in ("keypoints", "skeleton"):
        if key not in data:
            raise SchemaError(f"{source}: missing required key {key!r}")
    name = data.get("name")
    if isinstance(name, bool) or not isinstance(name, (str, int, float, type(None))):
        raise SchemaError(f"{source}: 'name' must be a string")
    return make_schema(
        name=name or Path(source).stem,
        keypoints=data["keypoints"],
        skeleton=data["skeleton"],
        flip_pairs=data.get("flip_pairs") or (),
        sigmas=data.get("sigmas"),
        joint_weights=data.get("joint_weights"),
        source=source,
        keypoints_fields=data.get("keypoints_fields"),
    )


def load_schema(name_or_path: str | Path) -> KeypointSchema:
    """A built-in schema by name (``coco17``, or any YAML shipped in ``configs/schemas``:
    ``crowdpose``, ``coco_wholebody``, ``humanart21``, ...) or a schema YAML file by path."""
    text = str(name_or_path)
    if text in BUILTIN_SCHEMAS:
        return BUILTIN_SCHEMAS[text]
    path = Path(text)
    if not path.suffix and _is_file(SCHEMAS_DIR / f"{text}.yaml"):
        path = SCHEMAS_DIR / f"{text}.yaml"  # a schema shipped in configs/schemas
    if not _is_file(path):
        known = sorted([*BUILTIN_SCHEMAS, *(p.stem for p in SCHEMAS_DIR.glob("*.yaml"))])
        hint = did_you_mean(text, known)
        raise SchemaError(
            f"schema {text!r} is neither a built-in ({known}) nor a YAML "
            f"file{hint}; give a built-in name or the path of a schema YAML"
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (*YAML_ERRORS, OSError) as exc:
        raise SchemaError(f"{path}: not a readable YAML file ({_first_line(exc)})") from None
    return schema_from_dict(data, source=str(path))


# What yaml.safe_load raises on bad text besides YAMLError: bad dates, ``!!int x``, an empty
# ``!!float`` and other tags PyYAML's constructors do not check, ints over Python's 4300 digits
# (ValueError), deep nesting (RecursionError).
YAML_ERRORS = (
    yaml.YAMLError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    RecursionError,
)


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # e.g. a name too long for the file system
        return False


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _as_names(values: Any, source: str) -> tuple[str, ...]:
    if not isinstance(values, (list, tuple)) or not values:
        raise SchemaError(f"{source}: 'keypoints' must be a non-empty list of names")
    if not all(isinstance(v, str) and v for v in values):
        raise SchemaError(f"{source}: every entry of 'keypoints' must be a non-empty string")
    if len(set(values)) != len(values):
        dupes = sorted(name for name, times in Counter(values).items() if times > 1)
        raise SchemaError(f"{source}: duplicate keypoint names {dupes}; make them unique")
    return tuple(values)


def _as_fields(values: Any, source: str) -> tuple[str, ...]:
    if not isinstance(values, (list, tuple)) or not values:
        raise SchemaError(
            f"{source}: 'keypoints_fields' must be a non-empty list of annotation field names"
        )
    if not all(isinstance(v, str) and v.strip() for v in values):
        raise SchemaError(f"{source}: every entry of 'keypoints_fields' must be a non-empty string")
    if len(set(values)) != len(values):
        dupes = sorted(name for name, times in Counter(values).items() if times > 1)
        raise SchemaError(f"{source}: 'keypoints_fields' names {dupes} more than once")
    return tuple(values)


def _as_index_pairs(values: Any, count: int, where: str) -> tuple[tuple[int, int], ...]:
    if not isinstance(values, (list, tuple)):
        raise SchemaError(f"{where} must be a list of [i, j] index pairs")
    pairs = []
    for item in values:
        ok = isinstance(item, (list, tuple)) and len(item) == 2
        if not ok or not all(isinstance(i, int) and not isinstance(i, bool) for i in item):
            raise SchemaError(
                f"{where}: {reprlib.repr(item)} is not a pair of integer indices [i, j]"
            )
        a, b = item
        if not (0 <= a < count and 0 <= b < count):
            raise SchemaError(
                f"{where}: pair {[a, b]} is out of range; indices are 0-based, 0..{count - 1}"
            )
        if a == b:
            raise SchemaError(f"{where}: pair {[a, b]} joins a keypoint to itself")
        pairs.append((a, b))
    return tuple(pairs)


def _check_flip_pairs(pairs: tuple[tuple[int, int], ...], source: str) -> None:
    seen: set[int] = set()
    for a, b in pairs:
        for index in (a, b):
            if index in seen:
                raise SchemaError(
                    f"{source}: flip_pairs: keypoint {index} appears in more than one pair; "
                    "each keypoint may have at most one mirror partner"
                )
            seen.add(index)


def _as_floats(values: Any, count: int, where: str) -> tuple[float, ...]:
    if not isinstance(values, (list, tuple)):
        raise SchemaError(f"{where} must be a list of {count} numbers")
    if len(values) != count:
        raise SchemaError(f"{where} has {len(values)} entries; give one per keypoint ({count})")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise SchemaError(f"{where}: every entry must be a number")
    try:
        result = tuple(float(v) for v in values)
    except OverflowError:  # an integer too big for a float
        raise SchemaError(f"{where}: every entry must be finite") from None
    if not all(np.isfinite(result)):
        raise SchemaError(f"{where}: every entry must be finite")
    return result


COCO17 = make_schema(
    "coco17",
    COCO17_KEYPOINTS,
    COCO17_SKELETON,
    COCO17_FLIP_PAIRS,
    COCO17_SIGMAS,
    COCO17_JOINT_WEIGHTS,
)

BUILTIN_SCHEMAS: dict[str, KeypointSchema] = {"coco17": COCO17}


def normalise_keypoint_name(name: str) -> str:
    """``'Right Shoulder'`` -> ``'right_shoulder'``, ``'face-0'`` -> ``'face_0'``: stripped,
    lower-case, spaces and hyphens turned into underscores."""
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def builtin_schema_names() -> list[str]:
    """Names of the built-in schemas: ``coco17`` first, then the YAMLs of ``configs/schemas``
    alphabetically."""
    shipped = sorted(p.stem for p in SCHEMAS_DIR.glob("*.yaml") if p.stem not in BUILTIN_SCHEMAS)
    return [*BUILTIN_SCHEMAS, *shipped]


@functools.lru_cache(maxsize=1)
def _builtin_name_lists() -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple(
        (name, tuple(normalise_keypoint_name(k) for k in load_schema(name).keypoints))
        for name in builtin_schema_names()
    )


def builtin_schema_for_names(names: Sequence[str]) -> str | None:
    """The built-in schema whose keypoint names equal ``names`` (e.g. a COCO file's
    ``categories[].keypoints``), order included, after :func:`normalise_keypoint_name`; None if
    none does. Where several match (coco17, ochuman and macaque share COCO's names) coco17 wins,
    then the first alphabetically."""
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        return None
    wanted = tuple(normalise_keypoint_name(n) for n in names)
    for name, keypoints in _builtin_name_lists():
        if keypoints == wanted:
            return name
    return None


def first_name_difference(file_names: Sequence[str], schema: KeypointSchema) -> str | None:
    """None when ``file_names`` equal ``schema``'s keypoint names (normalised, in order), else a
    short phrase naming the first difference, for error messages."""
    names = list(file_names)
    if len(names) != schema.num_keypoints:
        return (
            f"the file names {len(names)} keypoints, schema {schema.name!r} {schema.num_keypoints}"
        )
    for index, (given, expected) in enumerate(zip(names, schema.keypoints, strict=True)):
        if normalise_keypoint_name(str(given)) != normalise_keypoint_name(expected):
            return (
                f"keypoint {index} is {given!r} in the file, {expected!r} in schema {schema.name!r}"
            )
    return None
