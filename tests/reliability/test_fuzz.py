"""Property-based fuzzing of the four user-facing input readers: the COCO keypoint loader
(with what training reads through it: ``load_training_labels``, prepared labels included, and
the ignore masks rasterised from the raw segmentations), the schema loader, the config loader
with its ``key.path=value`` overrides, and check-data.

Each target gets ``POSEKIT_FUZZ_EXAMPLES`` (default 5,000) generated inputs, most of them valid
documents with a few random edits (keys deleted, values replaced by garbage of every JSON or
YAML type, images and annotations duplicated, text truncated, YAML tags and syntax that trip
the parsers, bytes that are not UTF-8). Every input must end in a correct result or in a
:class:`UserError` whose message is one non-empty line (the CLI prints it on stderr and exits
with status 2): any other exception is a traceback for the user, a warning is more lines on
stderr, and an input still running after ``HANG_SECONDS`` is a hang. Generation is
derandomized and uses no example database, so every run tries the same inputs. ``RUNS`` counts
the examples each target ran and ``OUTCOMES`` how each call ended (``pytest -rP`` shows them).
Inputs too big or too rare for the generators (deep nesting, YAML alias bombs, odd paths) have
their own tests, and a few malformed files go through the CLI itself.
"""

from __future__ import annotations

import copy
import io
import json
import os
import signal
import subprocess
import sys
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posekit.config import (
    PosekitConfig,
    apply_overrides,
    config_from_mapping,
    config_to_yaml,
    load_config,
    validate_config,
)
from posekit.data.check import run_check_data
from posekit.data.coco import CocoKeypoints, PersonImage, ignore_mask, load_coco_keypoints
from posekit.data.training_labels import load_training_labels
from posekit.detector.coco_boxes import load_coco_boxes
from posekit.errors import UserError
from posekit.schema import (
    BUILTIN_SCHEMAS,
    KeypointSchema,
    load_schema,
    make_schema,
    schema_from_dict,
)

EXAMPLES = int(os.environ.get("POSEKIT_FUZZ_EXAMPLES", "5000"))
HANG_SECONDS = 10
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.large_base_example,
    ],
    print_blob=False,
)

RUNS: Counter[str] = Counter()  # generated examples run, per target
OUTCOMES: dict[str, Counter[str]] = {}  # per target: "ok", or the UserError subclass raised

SCHEMA3 = make_schema("fuzz3", ["a", "b", "c"], [[0, 1], [1, 2]], [], [0.1, 0.1, 0.1])
IMAGE_SIZES = {"a.png": (8, 6), "b.jpg": (5, 4)}  # the decodable images: (width, height)
FILE_NAMES = [
    *IMAGE_SIZES, "corrupt.png", "empty.png", "folder.png", "missing.png", "../a.png",
    "/etc/hostname", "", "n" * 300 + ".png", "x/../a.png", "a\x00.png", "ä/ü.png", " a.png",
]  # fmt: skip
ENV_SET, ENV_UNSET = "POSEKIT_FUZZ_SET", "POSEKIT_FUZZ_UNSET"


# ---------------------------------------------------------------------------------------------
# Outcomes


class Hang(BaseException):
    """An input that ran past HANG_SECONDS (BaseException: no reader may swallow it)."""


@contextmanager
def time_limit(seconds: float = HANG_SECONDS) -> Iterator[None]:
    def on_alarm(signum: int, frame: Any) -> None:
        raise Hang(f"no result after {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def attempt(target: str, call: Callable[[], Any]) -> tuple[bool, Any]:
    """(True, result), or (False, error) for a UserError of one non-empty line; any other
    exception propagates and fails the example."""
    outcomes = OUTCOMES.setdefault(target, Counter())
    try:
        with warnings.catch_warnings():  # a RuntimeWarning would be more lines on stderr
            warnings.simplefilter("error")
            warnings.simplefilter("ignore", DeprecationWarning)  # hidden from users anyway
            result = call()
    except UserError as exc:
        message = str(exc).strip()
        assert message, f"{type(exc).__name__} with an empty message"
        assert len(message.splitlines()) == 1, f"message of several lines: {message!r}"
        outcomes[type(exc).__name__] += 1
        return False, exc
    outcomes["ok"] += 1
    return True, result


def write(path: Path, data: bytes) -> None:
    """A fresh file each time: rewriting one in place costs ext4 a flush (about 1 ms)."""
    path.unlink(missing_ok=True)
    path.write_bytes(data)


def report(target: str, *calls: str) -> None:
    """Print the examples run and how they ended (``pytest -rP`` shows it); check the count."""
    print(f"fuzz {target}: {RUNS[target]} examples")
    for name in (target, *calls):
        print(f"  {name}: {dict(sorted(OUTCOMES.get(name, Counter()).items()))}")
    assert RUNS[target] >= EXAMPLES


# ---------------------------------------------------------------------------------------------
# Generic garbage. Generation, not the readers, is most of the time per example, so strategies
# are built once at module level and draw few choices (sampled lists of nasty values rather
# than deep recursive structures); helpers take hypothesis' ``draw`` instead of being composites.

SPECIAL_NUMBERS = [0, -1, 1e39, -1e39, 3.4e38, 2**31, 2**63, 2**64, 2**70, 1e308, 5e-324, -0.0, 1.5]
_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=5)  # Cs: lone surrogates
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 12),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(SPECIAL_NUMBERS),
    _text,
)
SPECIALS = [
    None, "", "1", "a\nb", "\x00", "💥", [], {}, [[[[]]]], {"": None}, [1, 2, 3, 4], [None],
    [[1, 2], [3]], {"a": {"b": [None]}}, [{}], ["1", "2"], {"id": 1}, [True, False], [1e39],
]  # fmt: skip
garbage = st.one_of(
    _scalars,
    st.lists(_scalars, max_size=3),
    st.dictionaries(_text, _scalars, max_size=2),
    st.sampled_from(SPECIALS).map(copy.deepcopy),  # fresh containers: mutations edit them
)
_actions = st.sampled_from(["replace", "replace", "delete", "duplicate"])
_small_text = st.text(max_size=3)


def mutate(draw: st.DrawFn, document: Any, max_mutations: int) -> Any:
    """A copy of ``document`` with up to ``max_mutations`` random edits (replace by garbage,
    delete, duplicate a list entry such as an image or an annotation) at random depths."""
    document = copy.deepcopy(document)
    for _ in range(draw(st.integers(0, max_mutations))):
        parent: Any = None
        key: Any = None
        node = document
        stop = 7  # edit a top-level entry 1 time in 8, one deeper down 1 time in 4
        while isinstance(node, (dict, list)) and node:
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            parent, key = node, keys[draw(st.integers(0, len(keys) - 1))]
            node = parent[key]
            if not (isinstance(node, (dict, list)) and node) or draw(st.integers(0, stop)) == 0:
                break
            stop = 3
        if parent is None:
            document = draw(garbage)
            continue
        action = draw(_actions)
        if action == "replace":
            parent[key] = draw(garbage)
        elif action == "delete":
            del parent[key]
        elif isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
        else:
            parent[draw(_small_text)] = copy.deepcopy(parent[key])
    return document


TEXT_TOKENS = [
    "NaN", "Infinity", "-Infinity", "1e400", "1" * 400, "\\ud800", "\x00", "\ufeff", "\u2028",
    ",", ":", "]", "}", "[", "{", '"', "\\", "null", "true", "💥", "\x85", "\t", "\n",
]  # fmt: skip
_text_edits = st.sampled_from(["truncate", "insert", "insert", "delete"])
_pieces = st.sampled_from(TEXT_TOKENS) | st.text(max_size=2)
_prefixes = st.sampled_from([b"", b"", b"\xef\xbb\xbf", b"\xff\xfe", b"\x00"])


def mangle_bytes(draw: st.DrawFn, text: str) -> bytes:
    """``text`` truncated, with characters or tokens spliced in, as (maybe invalid) UTF-8."""
    for _ in range(draw(st.integers(1, 2))):
        position = draw(st.integers(0, len(text)))
        action = draw(_text_edits)
        if action == "truncate":
            text = text[:position]
        elif action == "insert":
            text = text[:position] + draw(_pieces) + text[position:]
        else:
            text = text[:position] + text[position + 3 :]
    return draw(_prefixes) + text.encode("utf-8", "surrogatepass")


# ---------------------------------------------------------------------------------------------
# 1 and 4: COCO keypoint files (schema fuzz3: 3 keypoints, 9 values per person)

KEYPOINT_ROWS = [
    [1, 1, 2, 2, 2, 2, 3, 3, 2],  # all labelled, inside the 8x6 image
    [1, 1, 2, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0],  # nothing labelled: an ignore region
    [1, 1, 1, 7.5, 5.5, 2, 0, 0, 0],
]
BAD_KEYPOINT_ROWS = [
    [9, 1, 2, 1, 1, 2, 1, 1, 2],  # outside the image
    [1.5, -1, 2, 1, 1, 1, 1, 1, 1],
    [1, 1, 2, 1, 1, 3, 1, 1, 2],  # bad visibility
    [1, 1, 2, 1, 1, 2],  # too short
    [1, 1, 2] * 4,  # too long
    [1e39, 0, 0, 1, 1, 2, 1, 1, 2],  # not a float32, where v = 0
    ["1", 1, 2, 1, 1, 2, 1, 1, 2],
    [True, 1, 2, 1, 1, 2, 1, 1, 2],
    [None, 1, 2, 1, 1, 2, 1, 1, 2],
    [[1], 1, 2, 1, 1, 2, 1, 1, 2],
]
BOXES = [[0, 0, 2, 2], [1, 1, 3, 2.5], [0, 0, 8, 6]]
BAD_BOXES = [
    [0, 0, 0, 2], [0, 0, -1, 2], [1, 2, 3], [0, 0, 1e39, 1], ["1", 0, 1, 1], [None] * 4,
    [True, 0, 1, 1], [3.4e38, 0, 3.4e38, 2], [0, 0, 2, 2, 2], "0 0 2 2",
]  # fmt: skip
AREAS = [3, 0.5, 48, None]
BAD_AREAS = [0, -2, "3", 1e39, True, [3]]
RLE_6X8 = "=3300000;"  # a 3x4 block in a 6x8 image, as pycocotools compresses it
SEGMENTATIONS = [
    [[1, 1, 4, 1, 4, 4, 1, 4]], [[1, 1, 4, 1, 4]], [[1, 1, 4, 1, 4, 4, 1]], [[1, 2, 3, 4]],
    [[1e30, 0, 1, 1, 2, 2]], [[0, 0, 8, 0, 0, 6] * 300], [[-1e9, 0, 1e9, 0, 0, 6]],
    [["a", 0, 1, 1, 2, 2]], [[[1, 2], [3, 4], [5, 6]]], [[None] * 6], [[1, 1, 4, 1, 4, 4], "x"],
    {"size": [6, 8], "counts": [0, 48]}, {"size": [6, 8], "counts": [48]},
    {"size": [6, 8], "counts": [10, 5, 33]}, {"size": [6, 8], "counts": [100]},
    {"size": [6, 8], "counts": [-1, 49]}, {"size": [6, 8], "counts": [2**32, 1]},
    {"size": [6, 8], "counts": []}, {"size": [60, 80], "counts": [4800]},
    {"size": [4, 4], "counts": [16]}, {"size": [6, 8], "counts": [1.5, 46.5]},
    {"size": [6, 8], "counts": RLE_6X8}, {"size": [6, 8], "counts": RLE_6X8 + "0"},
    {"size": [12, 4], "counts": RLE_6X8}, {"size": [6, 8], "counts": "o"},
    {"size": [6, 8], "counts": "\x00"}, {"size": [6, 8], "counts": "ÿ"},
    {"size": [6, 8], "counts": "ooooooooooooooo1"}, {"size": [6, 8], "counts": ""},
    {"size": [2**40, 2**40], "counts": [1]}, {"size": [-6, 8], "counts": [48]},
    {"size": [6.0, 8.0], "counts": [48]}, {"size": "6x8", "counts": [48]},
    {"size": [True, 8], "counts": [8]}, {"size": [6], "counts": [48]}, {"counts": RLE_6X8},
    {"size": [6, 8]}, {"size": [6, 8], "counts": None}, "abc", 5, [], {}, [[]], None,
]  # fmt: skip
segmentations = st.one_of(
    st.sampled_from(SEGMENTATIONS).map(copy.deepcopy),
    st.lists(
        st.lists(st.integers(-2, 10) | st.sampled_from([1e30, -1e9, 2**40, 0.5]), max_size=8),
        min_size=1,
        max_size=2,
    ),
    st.fixed_dictionaries(
        {
            "size": st.sampled_from([[6, 8], [6, 8], [4, 4], [2, 24]]).map(list),
            "counts": st.text(st.characters(min_codepoint=40, max_codepoint=120), max_size=6)
            | st.lists(st.integers(-1, 48), max_size=4),
        }
    ),
)
CATEGORIES = [
    [{"id": 1, "name": "person", "keypoints": ["a", "b", "c"]}],
    [{"id": 1, "name": "person"}, {"id": 2, "name": "dog"}],
    [{"id": 1, "keypoints": ["a", "b", "c"]}],  # no 'person': the categories with keypoints
    [{"id": 2, "name": "person"}],
    [{"name": "person"}],
    [],
]
_keypoints = st.sampled_from(KEYPOINT_ROWS * 5 + BAD_KEYPOINT_ROWS) | st.lists(
    st.sampled_from([0, 1, 2, 2, 3.5, -1, 9, 0.5]), min_size=9, max_size=9
)
_categories = st.sampled_from([1, 1, 1, 2])
_crowd = st.sampled_from([0, 0, 1])
_boxes = st.sampled_from(BOXES * 4 + BAD_BOXES)
_areas = st.sampled_from(AREAS * 3 + BAD_AREAS)
_file_names = st.sampled_from(FILE_NAMES)
_image_names = st.lists(st.sampled_from([*IMAGE_SIZES] * 3 + FILE_NAMES), min_size=1, max_size=3)
_category_lists = st.sampled_from(CATEGORIES[:1] * 4 + CATEGORIES)
_coco_forms = st.sampled_from(["mutated"] * 7 + ["prepared", "garbage", "text", "bytes"])


def annotation(draw: st.DrawFn, ann_id: int, num_images: int) -> dict[str, Any]:
    """Mostly valid: about one value in six comes from the BAD_ lists."""
    keypoints = copy.deepcopy(draw(_keypoints))
    values = [v for v in keypoints[2::3] if type(v) in (int, float)]
    pick = draw(st.integers(0, 3 * num_images))  # 3 in 4 an existing image
    result = {
        "id": ann_id,
        "image_id": pick % num_images if pick < 3 * num_images else num_images,
        "category_id": draw(_categories),
        "iscrowd": draw(_crowd),
        "keypoints": keypoints,
        "num_keypoints": sum(1 for v in values if v > 0),
        "bbox": copy.deepcopy(draw(_boxes)),
        "area": copy.deepcopy(draw(_areas)),
    }
    if result["iscrowd"] or not any(v > 0 for v in values) or draw(st.booleans()):
        result["segmentation"] = draw(segmentations)
    return result


def prepared_person(draw: st.DrawFn) -> dict[str, Any]:
    """A person of ``posekit prepare``'s JSON (a list of records: what training also reads)."""
    row = draw(_keypoints)
    return {
        "keypoints": [row[i : i + 3] for i in range(0, len(row), 3)],
        "bbox": copy.deepcopy(draw(_boxes)),
        "segment_area": copy.deepcopy(draw(_areas)),
    }


def prepared_record(draw: st.DrawFn, image_id: int) -> dict[str, Any]:
    others = [prepared_person(draw) for _ in range(draw(st.integers(0, 1)))]
    regions = [draw(segmentations)] if draw(st.booleans()) else []
    return {
        **prepared_person(draw), "img_paths": draw(_file_names), "img_width": 8,
        "img_height": 6, "objpos": [4, 3], "image_id": image_id, "scale_provided": 1.0,
        "num_keypoints": 3, "segmentations": regions, "processed_other_annotations": others,
    }  # fmt: skip


@st.composite
def coco_file(draw: st.DrawFn) -> tuple[Any, bytes]:
    """(the document, or None when the bytes are not its JSON, and the file's bytes)."""
    form = draw(_coco_forms)
    if form == "bytes":
        return None, draw(st.binary(max_size=16))
    if form == "garbage":
        document = draw(garbage)
    elif form == "prepared":
        document = mutate(draw, [prepared_record(draw, i) for i in range(1, 3)], 2)
    else:
        images = []
        for image_id, name in enumerate(draw(_image_names)):
            width, height = IMAGE_SIZES.get(name, (8, 6))
            images.append({"id": image_id, "file_name": name, "width": width, "height": height})
        count = draw(st.integers(0, 3))
        document = {
            "images": images,
            "annotations": [annotation(draw, i, len(images)) for i in range(1, count + 1)],
            "categories": copy.deepcopy(draw(_category_lists)),
        }
        document = mutate(draw, document, 3)
    text = json.dumps(document, allow_nan=True)
    if form == "text":
        return None, mangle_bytes(draw, text)
    return document, text.encode("utf-8", "surrogatepass")


@pytest.fixture(scope="module")
def images_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz_images")
    for name, (width, height) in IMAGE_SIZES.items():
        cv2.imwrite(str(root / name), np.full((height, width, 3), 127, np.uint8))
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (root / "empty.png").write_bytes(b"")
    (root / "folder.png").mkdir()
    return root


@pytest.fixture(scope="module")
def schema3_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fuzz_schema") / "fuzz3.yaml"
    path.write_text(yaml.safe_dump(SCHEMA3.to_dict()))
    return path


def check_loaded(loaded: CocoKeypoints, document: Any) -> None:
    """A loaded data set is what the documentation promises, and its ignore masks (the only
    use of the raw segmentations, at training time) rasterise or fail with a DataError."""
    if isinstance(document, dict):
        assert len(loaded) == len(document["images"])
    for record in loaded.images:
        n = record.num_persons
        assert record.keypoints.shape == (n, 3, 3) and record.keypoints.dtype == np.float32
        assert np.isfinite(record.keypoints).all()
        assert (record.keypoints[:, :, 2] > 0).any(axis=1).all()
        assert record.boxes.shape == (n, 4) and np.isfinite(record.boxes).all()
        assert record.areas.shape == (n,) and record.annotation_ids.shape == (n,)
        assert len(record.ignore_segmentations) == len(record.ignore_boxes)
        assert np.isfinite(record.ignore_boxes).all()
        if not record.ignore_segmentations:
            continue
        height = record.height if 0 < record.height <= 32 else 6
        width = record.width if 0 < record.width <= 32 else 8
        ok, mask = attempt("ignore_mask", lambda: ignore_mask(record, height, width))  # noqa: B023
        if ok:
            assert mask.shape == (height, width) and mask.dtype == np.uint8
            assert set(np.unique(mask).tolist()) <= {0, 1}


def test_fuzz_coco_loader(images_root: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    labels = tmp_path_factory.mktemp("fuzz_coco") / "labels.json"

    @FUZZ
    @given(
        coco_file(),
        st.sampled_from([None, None, None, [1], [2, 1]]),
        st.lists(segmentations, min_size=1, max_size=2),
    )
    def fuzz(file: tuple[Any, bytes], category_ids: list[int] | None, regions: list[Any]) -> None:
        document, data = file
        RUNS["coco"] += 1
        write(labels, data)
        with time_limit():
            # the ignore mask of crowd regions, whatever the rest of the file: one image of 8x6
            record = PersonImage(
                1, "a.png", 8, 6, np.zeros((0, 3, 3), np.float32), np.zeros((0, 4), np.float32),
                np.zeros(0, np.float32), np.zeros(0, np.int64), tuple(regions),
                np.tile(np.float32([1, 1, 2, 2]), (len(regions), 1)),
            )  # fmt: skip
            ok, mask = attempt("ignore_mask", lambda: ignore_mask(record))
            if ok:
                assert mask.shape == (6, 8) and set(np.unique(mask).tolist()) <= {0, 1}
            ok, loaded = attempt(
                "coco", lambda: load_coco_keypoints(labels, images_root, SCHEMA3, category_ids)
            )
            if ok:
                check_loaded(loaded, document)
            # what training calls: the same loader, or prepared labels for a top-level list
            again, loaded = attempt(
                "training_labels",
                lambda: load_training_labels(labels, images_root, SCHEMA3, category_ids),
            )
            assert again == ok or data.lstrip().startswith(b"[")
            for record in loaded.images if again else ():
                assert record.keypoints.shape[1:] == (3, 3)
                assert np.isfinite(record.keypoints).all() and np.isfinite(record.boxes).all()
            check_boxes(labels, images_root, category_ids)

    fuzz()
    report("coco", "ignore_mask", "training_labels", "coco_boxes", "boxes_ground_truth")


def check_boxes(labels: Path, images_root: Path, category_ids: list[int] | None) -> None:
    """The detector's box loader on the same file: a one-line error, or boxes inside their
    images with positive size, classes in range, and an evaluation ground truth."""
    ok, boxes = attempt("coco_boxes", lambda: load_coco_boxes(labels, images_root, category_ids))
    if not ok:
        return
    classes = len(boxes.category_ids)
    assert classes == len(boxes.category_names) >= 1
    for record in boxes.images:
        xyxy = record.boxes
        assert xyxy.shape == (len(record.labels), 4) and np.isfinite(xyxy).all()
        assert (xyxy[:, 2:] - xyxy[:, :2] >= 1).all()
        assert (xyxy[:, :2] >= 0).all() and (xyxy[:, 2] <= record.width).all()
        assert (xyxy[:, 3] <= record.height).all()
        assert ((record.labels >= 0) & (record.labels < classes)).all()
    attempt("boxes_ground_truth", boxes.ground_truth)


@pytest.fixture
def fuzz3_builtin() -> Iterator[str]:
    """SCHEMA3 as a built-in name for the time of a test: check-data then skips parsing the
    schema YAML (pure-Python PyYAML, about 1 ms) in most examples."""
    BUILTIN_SCHEMAS["fuzz3"] = SCHEMA3
    yield "fuzz3"
    del BUILTIN_SCHEMAS["fuzz3"]


def test_fuzz_check_data(
    images_root: Path,
    schema3_path: Path,
    fuzz3_builtin: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    labels = tmp_path_factory.mktemp("fuzz_check") / "labels.json"
    schemas = [fuzz3_builtin] * 4 + [schema3_path, "coco17"]

    @FUZZ
    @given(coco_file(), st.booleans(), st.sampled_from(schemas))
    def fuzz(file: tuple[Any, bytes], as_json: bool, schema_arg: str | Path) -> None:
        RUNS["check-data"] += 1
        write(labels, file[1])
        out = io.StringIO()
        with time_limit():
            ok, status = attempt(
                "check-data",
                lambda: run_check_data(labels, images_root, schema_arg, as_json=as_json, out=out),
            )
            if not ok:
                return
            assert status in (0, 1, 2)
            OUTCOMES.setdefault("check-data exit", Counter())[str(status)] += 1
            if as_json:
                assert json.loads(out.getvalue())["ok"] == (status == 0)
            if status == 0:  # a clean report: the loader takes the file
                load_coco_keypoints(labels, images_root, load_schema(schema_arg))

    fuzz()
    report("check-data", "check-data exit")


# ---------------------------------------------------------------------------------------------
# YAML text for schemas and configs

YAML_SNIPPETS = [
    "!!binary /w==", "!!int abc", "!!float x", "2020-13-45", "0000-01-01",
    "2001-12-14 21:59:43.10 +25:00", "!!timestamp x", "!!bool maybe", "!!str [1]",
    "!!python/object/apply:os.system ['true']", "!!set {a: 1}", "!!omap [1]", "&a [1, 2]", "*a",
    "*nope", "? [1, 2]\n: 3", "{", "[", "]", "}", "'", '"\\x"', "\t", "%YAML 1.1", "---", "...",
    "|", ">", "- -", ": :", "@", "`", "1" * 5000, "[" * 60 + "]" * 60, "{a: " * 60,
    ".inf", "-.inf", ".nan", "0x", "0b", "0o8", "1e400", "1" * 400, "~", "null", "\x00", "\ufeff",
    "\u2028", "é", "💥", "\x85", "${POSEKIT_FUZZ_SET}", "${POSEKIT_FUZZ_UNSET}", "<<: *a",
    "<<: [1]", "!!merge 1", "&b [*b]", "yes", "0o17", "1:20", "2020-01-01", "!!float", "!!int",
]  # fmt: skip


_styles = st.sampled_from([None, True, False])
_snippets = st.sampled_from(YAML_SNIPPETS) | st.text(max_size=3)
_indents = st.sampled_from(["", "", "  ", " "])


def mangle_yaml(draw: st.DrawFn, document: Any) -> bytes:
    """``document`` as YAML, with up to 2 snippets spliced in as values or lines, and now and
    then its bytes mangled."""
    text = yaml.dump(document, Dumper=yaml.CSafeDumper, default_flow_style=draw(_styles))
    lines = text.splitlines()
    for _ in range(draw(st.integers(0, 2))):
        line = draw(st.integers(0, len(lines)))
        snippet = draw(_snippets)
        if line < len(lines) and ":" in lines[line] and draw(st.booleans()):
            lines[line] = f"{lines[line].split(':', 1)[0]}: {snippet}"
        else:
            lines.insert(line, draw(_indents) + snippet)
    text = "\n".join(lines) + "\n"
    if draw(st.integers(0, 7)) == 0:
        return mangle_bytes(draw, text)
    return text.encode("utf-8", "surrogatepass")


# ---------------------------------------------------------------------------------------------
# 2: schemas

NAME_POOL = ["a", "b", "nose", "left_hip", "right_hip", "c", "d"]
_schema_names = st.sampled_from(["fuzz", "fuzz", "", None, 3, "x" * 40])
_sigma_kinds = st.sampled_from(["none", "same", "drawn", "absent"])


@st.composite
def schema_file(draw: st.DrawFn) -> tuple[Any, bytes]:
    """(a valid schema of 1-4 keypoints after up to 2 random edits, and it as mangled YAML)."""
    count, offset = draw(st.integers(1, 4)), draw(st.integers(0, 3))
    order = draw(st.permutations(range(count)))
    flips = [[order[i], order[i + 1]] for i in range(0, count - 1, 2)]
    skeleton = []
    for _ in range(draw(st.integers(0, 3)) if count > 1 else 0):
        first = draw(st.integers(0, count - 1))
        skeleton.append([first, (first + draw(st.integers(1, count - 1))) % count])
    document: dict[str, Any] = {
        "name": draw(_schema_names),
        "keypoints": NAME_POOL[offset : offset + count],
        "skeleton": skeleton,
        "flip_pairs": flips[: draw(st.integers(0, len(flips)))],
    }
    sigmas = draw(_sigma_kinds)
    if sigmas == "none":
        document["sigmas"] = None
    elif sigmas == "same":
        document["sigmas"] = [0.05] * count
    elif sigmas == "drawn":
        document["sigmas"] = [draw(st.floats(0.01, 1)) for _ in range(count)]
    if draw(st.booleans()):
        document["joint_weights"] = [1.5] * count
    document = mutate(draw, document, 2)
    return document, mangle_yaml(draw, document)


def check_schema(schema: KeypointSchema) -> None:
    k = schema.num_keypoints
    assert k >= 1 and len(set(schema.keypoints)) == k
    assert all(0 <= i < k for pair in (*schema.skeleton, *schema.flip_pairs) for i in pair)
    assert sorted(schema.flip_index().tolist()) == list(range(k))
    assert schema.sigmas is None or (len(schema.sigmas) == k and min(schema.sigmas) > 0)
    assert len(schema.joint_weights) == k and np.isfinite(schema.joint_weights).all()
    assert schema_from_dict(schema.to_dict()) == schema


def test_fuzz_schema(tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("fuzz_schema_files") / "schema.yaml"

    @FUZZ
    @given(schema_file())
    def fuzz(case: tuple[Any, bytes]) -> None:
        document, data = case
        RUNS["schema"] += 1
        write(path, data)
        with time_limit():
            ok, schema = attempt("schema_from_dict", lambda: schema_from_dict(document, "fuzz"))
            if ok:
                check_schema(schema)
            ok, schema = attempt("schema", lambda: load_schema(path))
            if ok:
                check_schema(schema)

    fuzz()
    report("schema", "schema_from_dict")


# ---------------------------------------------------------------------------------------------
# 3: configs and overrides


def _leaves(data: dict[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[Any, ...]]:
    for key, value in data.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, (*prefix, key))
        else:
            yield (*prefix, key), value


DEFAULTS = {".".join(path): value for path, value in _leaves(PosekitConfig().to_dict())}
DEFAULT_SECTIONS = {key: json.dumps(value) for key, value in PosekitConfig().to_dict().items()}
CONFIG_KEYS = sorted(DEFAULTS)
SECTIONS = sorted({key.rsplit(".", 1)[0] for key in CONFIG_KEYS if "." in key})
ODD_KEYS = [
    "training.optimzer.lr", "model.params.x", "model.params.a.b", "base", "data..schema", ".a",
    "a.", "", "training.amp.x", "data.train_sets.0.labels", "ä", "a" + ".a" * 40,
]  # fmt: skip
_key_path = st.one_of(
    st.sampled_from(CONFIG_KEYS),
    st.sampled_from(CONFIG_KEYS),
    st.sampled_from(SECTIONS),
    st.sampled_from(ODD_KEYS),
    st.text(max_size=4),
)
VALUES = [
    True, False, 0, 1, -1, 2, 8, 64, 368, 0.5, 1e-4, 1.5, -0.5, float("inf"), "adam", "sgd",
    "cosine", "stop", "skip", "coco17", "body14", [1, 2], [[1, 256]], [224, 256], [0.9, 0.999],
    {"backbone.": {"lr_mult": 0}}, {"backbone.": {"lr_mult": -1}}, None, "", "1e-4",
    "${POSEKIT_FUZZ_SET}", "${POSEKIT_FUZZ_UNSET}", "${POSEKIT_FUZZ_UNSET:7}", "2020-01-01",
    [{"labels": "a.json", "sample_ratio": 0}], [[0, 1], [1, 0]],
]  # fmt: skip
OVERRIDE_VALUES = [
    "true", "1e-4", "-1", "0", "[1, 2]", "[[1, 256]]", "{a: 1}", "{lr_mult: 0}", "adam",
    "${POSEKIT_FUZZ_SET}", "${POSEKIT_FUZZ_UNSET}", "${POSEKIT_FUZZ_UNSET:d}", "${", "${}",
    "${1A}", "$POSEKIT_FUZZ_SET", "x${POSEKIT_FUZZ_SET}y${POSEKIT_FUZZ_UNSET:}", "", " ", "=",
    "a=b", "[1, 2", "0.5", "inf", "nan", "-inf", "null", "stop", "skip", "1_000",
]  # fmt: skip
_value_text = st.one_of(
    st.sampled_from(YAML_SNIPPETS),
    st.sampled_from(OVERRIDE_VALUES),
    st.sampled_from(CONFIG_KEYS).map(lambda key: json.dumps(DEFAULTS[key])),
    st.text(max_size=5),
)
PLAIN_OVERRIDES = [f"{key}={json.dumps(value)}" for key, value in DEFAULTS.items()]
override_word = st.one_of(  # one_of drops a repeated strategy object: two of them weigh double
    st.sampled_from(PLAIN_OVERRIDES),
    st.sampled_from(PLAIN_OVERRIDES),
    st.tuples(_key_path, _value_text).map("=".join),
    st.sampled_from(["training.amp", "=1", "training=1", "a..b=1", "training.amp=true=1"]),
    st.text(max_size=6),
)
_base = st.sampled_from(
    ["good_base.yaml", "bad_base.yaml", "missing.yaml", "config.yaml", ".", "/",
     ["good_base.yaml", 3], 5, None, [], "n" * 300, "a\x00b", "a\nb"]
)  # fmt: skip


_config_values = st.one_of(st.sampled_from(VALUES).map(copy.deepcopy), garbage)
_key_lists = st.lists(_key_path, max_size=4)


@st.composite
def config_file(draw: st.DrawFn) -> tuple[Any, bytes]:
    """(up to 4 keys, mostly real ones, with default, plausible or garbage values, sometimes a
    'base', after up to 2 random edits; and that as mangled YAML)."""
    document: dict[str, Any] = {}
    for key in draw(_key_lists):
        value = DEFAULTS.get(key) if draw(st.booleans()) else draw(_config_values)
        node, parts = document, key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[parts[-1]] = copy.deepcopy(value)
    if draw(st.integers(0, 4)) == 0:
        document["base"] = copy.deepcopy(draw(_base))
    document = mutate(draw, document, 2)
    return document, mangle_yaml(draw, document)


def check_config(cfg: PosekitConfig, show: bool = False) -> None:
    """``config show`` prints it (``config_to_yaml``), and the printed YAML reads back as the
    same config. For speed the fuzz round-trips only the top-level sections that are not the
    defaults, through PyYAML's C dumper and loader; ``show=True`` takes the printed YAML."""
    assert isinstance(cfg, PosekitConfig)
    data = cfg.to_dict()
    if show:
        text = config_to_yaml(cfg)
    else:
        changed = {k: v for k, v in data.items() if json.dumps(v) != DEFAULT_SECTIONS[k]}
        text = yaml.dump(changed, Dumper=yaml.CSafeDumper)
    again = validate_config(yaml.load(text, Loader=yaml.CSafeLoader) or {}, "round trip")
    assert json.dumps(again.to_dict(), sort_keys=True) == json.dumps(data, sort_keys=True)


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("fuzz_config")
    (folder / "good_base.yaml").write_text("training:\n  batch_size: 2\n")
    (folder / "bad_base.yaml").write_text("training: [\n")
    previous = {name: os.environ.get(name) for name in (ENV_SET, ENV_UNSET)}
    os.environ[ENV_SET] = "from-env"
    os.environ.pop(ENV_UNSET, None)
    yield folder
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def test_fuzz_config(config_dir: Path) -> None:
    path = config_dir / "config.yaml"

    @FUZZ
    @given(
        config_file(),
        st.lists(override_word, max_size=3),
    )
    def fuzz(case: tuple[Any, bytes], overrides: list[str]) -> None:
        document, data = case
        RUNS["config"] += 1
        write(path, data)
        with time_limit():
            ok, cfg = attempt("config", lambda: load_config(path, overrides))
            if ok:
                check_config(cfg)
            if isinstance(document, dict) and "base" not in document:
                mapping = copy.deepcopy(document)
                ok, cfg = attempt(
                    "config_from_mapping", lambda: config_from_mapping(mapping, overrides=overrides)
                )
                if ok:
                    check_config(cfg)
                ok, merged = attempt("apply_overrides", lambda: apply_overrides(mapping, overrides))
                if ok:
                    assert isinstance(merged, dict) and mapping == document  # input untouched

    fuzz()
    report("config", "config_from_mapping", "apply_overrides")


# ---------------------------------------------------------------------------------------------
# Inputs no generator is likely to hit: nesting, alias bombs, huge lists, odd paths

_DEEP_JSON = b'{"images": [], "annotations": [{"category_id": 1, "id": ' + b"[" * 1000
_DEEP_JSON += b"]" * 1000 + b"}], " + b'"categories": [{"id": 1, "name": "person"}]}'
_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n"
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
)


@pytest.mark.parametrize(
    "data",
    [
        _DEEP_JSON,
        b'{"images": [{"id": ' + b"[" * 1000 + b"]" * 1000 + b"}], " + b'"annotations": []}',
        b'{"images": [], "annotations": [], "categories": [{"id": [1], "name": "person"}]}',
        b'{"images": [], "annotations": [{"category_id": [1]}], "categories": [{"id": 1, '
        b'"name": "person"}]}',
        json.dumps({"images": [{"id": 0, "file_name": "a.png", "width": 8, "height": 6}],
                    "annotations": [{"id": 1, "image_id": 0, "category_id": 1,
                    "iscrowd": 1, "bbox": [0, 0, 2, 2], "segmentation": [[1e30, 0, 1, 1, 2, 2]]}],
                    "categories": [{"id": 1, "name": "person"}]}).encode(),
        json.dumps({"images": [{"id": 0, "file_name": "a.png", "width": 8, "height": 6}],
                    "annotations": [{"id": i, "image_id": 0, "category_id": 1, "iscrowd": 1,
                                     "bbox": [0, 0, 2, 2],
                                     "segmentation": {"size": [6, 8], "counts": [1] * 400}}
                                    for i in (1, 2)],
                    "categories": [{"id": 1, "name": "person"}]}).encode(),
        json.dumps([{"img_paths": "a.png", "img_width": 8, "img_height": 6, "objpos": [4, 3],
                     "image_id": 1, "bbox": [0, 0, 2, 2], "segment_area": 4,
                     "scale_provided": 1.0, "num_keypoints": 3, "segmentations": [],
                     "keypoints": [[1, 1, 1e39]] * 3, "processed_other_annotations": []}]
                   ).encode(),
    ],
    ids=["deep-annotation-id", "deep-image-id", "list-category-id", "list-category-ref", "polygon",
         "rle-runs-overflow", "prepared-huge-visibility"],
)  # fmt: skip
def test_nasty_coco_files(
    data: bytes, images_root: Path, schema3_path: Path, tmp_path: Path
) -> None:
    labels = tmp_path / "labels.json"
    write(labels, data)
    with time_limit():
        ok, loaded = attempt("nasty", lambda: load_coco_keypoints(labels, images_root, SCHEMA3))
        if ok:
            check_loaded(loaded, None)
        attempt("nasty", lambda: load_training_labels(labels, images_root, SCHEMA3))
        check_boxes(labels, images_root, None)
        attempt(
            "nasty", lambda: run_check_data(labels, images_root, schema3_path, out=io.StringIO())
        )


@pytest.mark.parametrize(
    "text",
    [
        _LAUGHS + "keypoints: [a, b]\nskeleton: [*i]\n",
        _LAUGHS + "keypoints: [a, b]\nskeleton: []\nflip_pairs: [*i]\n",
        "keypoints: [a]\nskeleton: []\nsigmas: [" + "9" * 400 + "]\n",
        "keypoints: [a]\nskeleton: []\nname: " + "[" * 1000 + "]" * 1000 + "\n",
        "keypoints: [a]\nskeleton: []\nname: 2020-13-45\n",
    ],
    ids=["laughs-skeleton", "laughs-flip", "huge-int-sigma", "deep", "bad-date"],
)
def test_nasty_schemas(text: str, tmp_path: Path) -> None:
    path = tmp_path / "schema.yaml"
    path.write_text(text)
    with time_limit():
        ok, schema = attempt("nasty", lambda: load_schema(path))
        if ok:
            check_schema(schema)


def test_many_duplicate_keypoint_names_fail_fast() -> None:
    """The duplicate names are listed in linear time (this took minutes, quadratically)."""
    names = [f"k{i}" for i in range(100_000)] * 2
    with time_limit(), pytest.raises(UserError, match="duplicate keypoint names"):
        schema_from_dict({"keypoints": names, "skeleton": []})


@pytest.mark.parametrize(
    ("text", "overrides"),
    [
        (_LAUGHS, []),
        (_LAUGHS.replace("\n", "\n  ").replace("a: &a", "model:\n  params:\n    a: &a", 1), []),
        ("training:\n  grad_clip: " + "[" * 1000 + "]" * 1000 + "\n", []),
        ("", ["model.params.x=" + "[" * 1000 + "]" * 1000]),
        ("", ["model.params.x=" + "1" * 5000]),
        ("", ["model.params.x=!!binary /w=="]),
        ("model:\n  params:\n    x: !!binary /w==\n", []),
        ("", ["experiment_name=2020-13-45"]),
        ("seed: !!int\n", ["seed=!!float"]),
        ("", ["model.params.x=[&a [1,1,1,1,1,1,1,1], &b [*a,*a,*a,*a,*a,*a,*a,*a], "
              "&c [*b,*b,*b,*b,*b,*b,*b,*b], &d [*c,*c,*c,*c,*c,*c,*c,*c], "
              "&e [*d,*d,*d,*d,*d,*d,*d,*d], &f [*e,*e,*e,*e,*e,*e,*e,*e], "
              "&g [*f,*f,*f,*f,*f,*f,*f,*f], &h [*g,*g,*g,*g,*g,*g,*g,*g]]"]),
    ],
    ids=["laughs", "laughs-params", "deep", "deep-override", "5000-digits", "binary-override",
         "binary", "bad-date", "empty-tags", "laughs-override"],
)  # fmt: skip
def test_nasty_configs(text: str, overrides: list[str], config_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with time_limit():
        ok, cfg = attempt("nasty", lambda: load_config(path, overrides))
        if ok:
            check_config(cfg, show=True)


@pytest.mark.parametrize("name", ["n" * 300 + ".yaml", "a\x00b.yaml", ".", "missing/"])
def test_odd_paths(name: str, images_root: Path, tmp_path: Path) -> None:
    path = str(tmp_path / name)
    with time_limit():
        for call in (
            lambda: load_coco_keypoints(path, images_root, SCHEMA3),
            lambda: load_training_labels(path, images_root, SCHEMA3),
            lambda: load_schema(path),
            lambda: load_config(path),
            lambda: run_check_data(path, images_root, out=io.StringIO()),
            lambda: run_check_data(tmp_path / "x.json", path, out=io.StringIO()),
        ):
            assert not attempt("paths", call)[0]


# ---------------------------------------------------------------------------------------------
# The CLI: exit status 2 and one line on stderr


def _posekit(*args: str | Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("posekit")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "posekit"]
    return subprocess.run(
        [*command, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


CLI_CASES = {
    "not-json.json": b"{'images': []",
    "not-utf8.json": b'{"images": ["\xff"]}',
    "list.json": b"[1, 2]",
    "category.json": b'{"images": [], "annotations": [], "categories": [{"id": [1], '
    b'"name": "person"}]}',
    "syntax.yaml": b"training: [\n",
    "tag.yaml": b"training:\n  batch_size: !!int abc\n",
    "date.yaml": b"experiment_name: 2020-13-45\n",
    "deep.yaml": b"training: " + b"[" * 1000 + b"]" * 1000 + b"\n",
    "binary.yaml": b"model:\n  params:\n    x: !!binary /w==\n",
    "unknown.yaml": b"trainig:\n  amp: true\n",
    "not-utf8.yaml": b"experiment_name: \xff\n",
}


@pytest.mark.parametrize("name", sorted(CLI_CASES))
def test_cli_one_line_exit_2(name: str, images_root: Path, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_bytes(CLI_CASES[name])
    if name.endswith(".json"):
        result = _posekit("check-data", "--labels", path, "--images", images_root)
    else:
        result = _posekit("config", "show", path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: ")


def test_cli_bad_override_and_long_path(tmp_path: Path) -> None:
    for args in (
        ("config", "show", "training.batch_size=" + "[" * 1000 + "]" * 1000),
        ("config", "show", str(tmp_path / ("n" * 300 + ".yaml"))),
        ("check-data", "--labels", str(tmp_path / ("n" * 300 + ".json")), "--images", tmp_path),
    ):
        result = _posekit(*args)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
