"""check-data on the real COCO sample and on deliberately broken copies of it."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from posekit.data.check import check_dataset, run_check_data
from posekit.errors import DataError, SchemaError
from posekit.schema import COCO17

Breakage = Callable[[dict[str, Any], Path], None]


@pytest.fixture
def coco_copy(real_coco_dir: Path, tmp_path: Path) -> Path:
    """A writable copy of the real COCO sample: labels.json and the images beside it."""
    for image in real_coco_dir.glob("*.jpg"):
        shutil.copy(image, tmp_path / image.name)
    shutil.copy(real_coco_dir / "test_coco.json", tmp_path / "labels.json")
    return tmp_path


def _break(folder: Path, *breakages: Breakage) -> Path:
    labels = folder / "labels.json"
    data = json.loads(labels.read_text())
    for breakage in breakages:
        breakage(data, folder)
    labels.write_text(json.dumps(data))
    return labels


def _ann(data: dict[str, Any], ann_id: int) -> dict[str, Any]:
    return next(a for a in data["annotations"] if a["id"] == ann_id)


def _image(data: dict[str, Any], image_id: int) -> dict[str, Any]:
    return next(i for i in data["images"] if i["id"] == image_id)


def delete_image(data: dict[str, Any], folder: Path) -> None:
    (folder / "000000000785.jpg").unlink()


def truncate_image(data: dict[str, Any], folder: Path) -> None:
    path = folder / "000000040083.jpg"
    path.write_bytes(path.read_bytes()[:5000])


def short_keypoints(data: dict[str, Any], folder: Path) -> None:
    _ann(data, 442619)["keypoints"] = _ann(data, 442619)["keypoints"][:-3]


def keypoint_outside(data: dict[str, Any], folder: Path) -> None:
    keypoints = _ann(data, 230195)["keypoints"]
    first_visible = next(i for i in range(17) if keypoints[3 * i + 2] > 0)
    keypoints[3 * first_visible] = 501.0  # image 40083 is 500 wide


def zero_box(data: dict[str, Any], folder: Path) -> None:
    _ann(data, 460541)["bbox"][2] = 0


def negative_area(data: dict[str, Any], folder: Path) -> None:
    _ann(data, 488308)["area"] = -3.0


def duplicate_annotation_id(data: dict[str, Any], folder: Path) -> None:
    _ann(data, 488308)["id"] = 460541


def duplicate_image_id(data: dict[str, Any], folder: Path) -> None:
    data["images"].append(dict(_image(data, 196141)))


def unknown_image(data: dict[str, Any], folder: Path) -> None:
    _ann(data, 1717641)["image_id"] = 123456


def wrong_num_keypoints(data: dict[str, Any], folder: Path) -> None:
    _ann(data, 437295)["num_keypoints"] += 1


def wrong_image_size(data: dict[str, Any], folder: Path) -> None:
    _image(data, 785)["width"] = 641


def no_file_name(data: dict[str, Any], folder: Path) -> None:
    del _image(data, 196141)["file_name"]


def escaping_file_name(data: dict[str, Any], folder: Path) -> None:
    _image(data, 40083)["file_name"] = "../../000000040083.jpg"


CASES = [
    (delete_image, "missing_image", 785, None),
    (truncate_image, "unreadable_image", 40083, None),
    (short_keypoints, "bad_keypoints_length", 785, 442619),
    (duplicate_annotation_id, "duplicate_annotation_id", None, 460541),
    (duplicate_image_id, "duplicate_image_id", 196141, None),
    (unknown_image, "unknown_image", None, 1717641),
    (wrong_image_size, "image_size_mismatch", 785, None),
    (escaping_file_name, "unsafe_file_name", 40083, None),
    (no_file_name, "bad_image_entry", 196141, None),
]


def test_clean_real_sample_passes(real_coco_dir: Path) -> None:
    out = io.StringIO()
    code = run_check_data(real_coco_dir / "test_coco.json", real_coco_dir, "coco17", False, out)
    assert code == 0
    assert out.getvalue().splitlines() == [
        f"check-data {real_coco_dir / 'test_coco.json'} (schema coco17): 4 images, "
        "14 annotations, 14 non_crowd, 0 crowd, 12 usable: no problems found"
    ]


def test_clean_humanart_sample_passes(real_humanart_dir: Path) -> None:
    labels = real_humanart_dir / "annotations" / "test_humanart.json"
    report = check_dataset(labels, real_humanart_dir, COCO17)
    assert report.ok, report.problems
    assert report.counts["images"] == 3 and report.counts["annotations"] == 4


@pytest.mark.parametrize(("breakage", "kind", "image_id", "annotation_id"), CASES)
def test_each_breakage_is_reported_with_its_ids(
    coco_copy: Path, breakage: Breakage, kind: str, image_id: int | None, annotation_id: int | None
) -> None:
    labels = _break(coco_copy, breakage)
    report = check_dataset(labels, coco_copy, COCO17)
    found = [(p.kind, p.image_id, p.annotation_id) for p in report.problems]
    assert found == [(kind, image_id, annotation_id)]

    out = io.StringIO()
    assert run_check_data(labels, coco_copy, "coco17", as_json=False, out=out) == 1
    lines = out.getvalue().splitlines()
    assert lines[0].endswith(": 1 problems")
    assert len(lines) == 2 and lines[1].startswith(kind)
    ids = [f"image_id={image_id}"] * (image_id is not None)
    ids += [f"annotation_id={annotation_id}"] * (annotation_id is not None)
    assert all(text in lines[1] for text in ids)


def test_all_breakages_at_once_as_json(coco_copy: Path) -> None:
    # these would hide or rename others' problems (same id, same image file)
    overlapping = (duplicate_annotation_id, wrong_image_size, truncate_image)
    breakages = [case[0] for case in CASES if case[0] not in overlapping]
    labels = _break(coco_copy, *breakages)
    out = io.StringIO()
    assert run_check_data(labels, coco_copy, "coco17", as_json=True, out=out) == 1
    assert out.getvalue().count("\n") == 1
    report = json.loads(out.getvalue())
    assert report["ok"] is False
    found = {(p["kind"], p["image_id"], p["annotation_id"]) for p in report["problems"]}
    expected = {case[1:] for case in CASES if case[0] in breakages}
    assert found == expected
    assert len(report["problems"]) == len(expected)
    assert sum(report["problem_kinds"].values()) == len(report["problems"])


# quirks the loader accepts: warnings with a count and example ids, exit status 0
WARNINGS = [
    (keypoint_outside, "keypoint_outside_image", 230195),
    (zero_box, "zero_box", 460541),
    (negative_area, "zero_area", 488308),
    (wrong_num_keypoints, "num_keypoints_recounted", 437295),
]


@pytest.mark.parametrize(("breakage", "kind", "annotation_id"), WARNINGS)
def test_accepted_quirks_are_warnings_with_ids(
    coco_copy: Path, breakage: Breakage, kind: str, annotation_id: int
) -> None:
    labels = _break(coco_copy, breakage)
    report = check_dataset(labels, coco_copy, COCO17)
    assert report.ok, report.problems
    assert [(w.kind, w.annotation_ids) for w in report.warnings] == [(kind, (annotation_id,))]
    out = io.StringIO()
    assert run_check_data(labels, coco_copy, "coco17", as_json=False, out=out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].endswith(": no problems found, 1 warnings")
    assert lines[1].startswith(f"warning {kind}: 1 annotation (e.g. {annotation_id}): ")


def test_keypoints_21_checked_with_a_schema_file(real_humanart_dir: Path, tmp_path: Path) -> None:
    labels = real_humanart_dir / "annotations" / "test_humanart.json"
    names = json.loads(labels.read_text())["categories"][0]["keypoints"]
    schema_file = tmp_path / "humanart21.yaml"
    schema_file.write_text(json.dumps({"name": "humanart21", "keypoints": names, "skeleton": []}))
    out = io.StringIO()
    code = run_check_data(labels, real_humanart_dir, schema_file, False, out, "keypoints_21")
    assert code == 0, out.getvalue()
    out = io.StringIO()
    assert run_check_data(labels, real_humanart_dir, "coco17", False, out, "keypoints_21") == 1
    assert out.getvalue().count("bad_keypoints_length") == 4


def test_unreadable_json_raises(tmp_path: Path) -> None:
    labels = tmp_path / "labels.json"
    labels.write_text('{"images": [1, 2')
    with pytest.raises(DataError, match="not valid JSON"):
        run_check_data(labels, tmp_path, "coco17", False, io.StringIO())


def test_missing_images_folder_raises(real_coco_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="images folder not found"):
        run_check_data(real_coco_dir / "test_coco.json", tmp_path / "nope", "coco17", False)


def test_unknown_schema_raises(real_coco_dir: Path) -> None:
    with pytest.raises(SchemaError):
        run_check_data(real_coco_dir / "test_coco.json", real_coco_dir, "no_such_schema", False)
