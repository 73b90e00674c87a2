"""COCO object boxes: category mapping, clipping, crowds, negatives, errors, ground truth."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from posekit.detector.coco_boxes import BoxImage, CocoBoxes, load_coco_boxes
from posekit.errors import DataError
from posekit.evaluation import evaluate_bboxes

PERSON, DOG, CAT = 1, 18, 17


def _coco() -> dict[str, Any]:
    """Three 100x80 images: person + dog boxes, a crowd, clipping, a degenerate box, a negative."""
    return {
        "info": {"description": "hand-written"},
        "images": [
            {"id": 7, "file_name": "a.jpg", "width": 100, "height": 80},
            {"id": 3, "file_name": "sub/b.jpg", "width": 100, "height": 80},
            {"id": 5, "file_name": "c.jpg", "width": 100, "height": 80},  # no annotations
        ],
        "categories": [
            {"id": DOG, "name": "dog", "supercategory": "animal"},
            {"id": PERSON, "name": "person", "supercategory": "person"},
            {"id": CAT, "name": "cat", "supercategory": "animal"},
        ],
        "annotations": [
            # image 7: a person, a dog sticking out on the right and bottom, a crowd
            {"id": 1, "image_id": 7, "category_id": PERSON, "bbox": [10, 20, 30, 40],
             "area": 1000.0, "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": DOG, "bbox": [80.5, 60, 50, 50],
             "area": 2000.0, "iscrowd": 0},
            {"id": 3, "image_id": 7, "category_id": PERSON, "bbox": [0, 0, 60, 50],
             "area": 2500.0, "iscrowd": 1},
            # image 3: a person sticking out top-left, a degenerate one (0.5 px wide after
            # clipping), one entirely outside, a dog without iscrowd/area, a cat
            {"id": 4, "image_id": 3, "category_id": PERSON, "bbox": [-5, -10, 25, 30],
             "area": 600.0, "iscrowd": 0},
            {"id": 5, "image_id": 3, "category_id": PERSON, "bbox": [99.5, 10, 20, 20],
             "area": 400.0, "iscrowd": 0},
            {"id": 6, "image_id": 3, "category_id": PERSON, "bbox": [200, 10, 20, 20],
             "area": 400.0, "iscrowd": 0},
            {"id": 7, "image_id": 3, "category_id": DOG, "bbox": [30.25, 40, 20, 10]},
            {"id": 8, "image_id": 3, "category_id": CAT, "bbox": [50, 50, 10, 10],
             "area": 100.0, "iscrowd": 0},
        ],
    }  # fmt: skip


def _write(tmp_path: Path, data: dict[str, Any], name: str = "labels.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _by_id(dataset: CocoBoxes) -> dict[int, BoxImage]:
    return {record.image_id: record for record in dataset.images}


def test_default_selects_person(tmp_path: Path) -> None:
    path = _write(tmp_path, _coco())
    dataset = load_coco_boxes(path, tmp_path / "images")
    assert dataset.category_ids == [PERSON]
    assert dataset.category_names == ["person"]
    assert dataset.labels_path == path
    assert len(dataset) == 3
    assert [r.image_id for r in dataset.images] == [7, 3, 5]  # file order, negatives kept
    records = _by_id(dataset)
    np.testing.assert_array_equal(records[7].boxes, [[10, 20, 40, 60]])
    np.testing.assert_array_equal(records[3].boxes, [[0, 0, 20, 20]])  # clipped top-left
    for record in dataset.images:
        assert record.labels.tolist() == [0] * record.boxes.shape[0]
    assert records[5].boxes.shape == (0, 4)
    assert records[5].labels.shape == (0,)


def test_explicit_categories_map_to_contiguous_labels(tmp_path: Path) -> None:
    dataset = load_coco_boxes(_write(tmp_path, _coco()), tmp_path, category_ids=[DOG, PERSON])
    assert dataset.category_ids == [PERSON, DOG]  # ascending id order
    assert dataset.category_names == ["person", "dog"]
    records = _by_id(dataset)
    image7, image3, image5 = records[7], records[3], records[5]
    assert image7.boxes.dtype == np.float32
    assert image7.labels.dtype == np.int64
    # the crowd (id 3) is not a training box; the dog is clipped to 100x80
    np.testing.assert_array_equal(image7.boxes, [[10, 20, 40, 60], [80.5, 60, 100, 80]])
    assert image7.labels.tolist() == [0, 1]
    # ids 5 (0.5 px wide after clipping) and 6 (outside) are dropped; file order kept
    np.testing.assert_array_equal(image3.boxes, [[0, 0, 20, 20], [30.25, 40, 50.25, 50]])
    assert image3.labels.tolist() == [0, 1]
    assert image5.boxes.shape == (0, 4)
    assert (image7.width, image7.height, image3.file_name) == (100, 80, "sub/b.jpg")
    assert not image7.boxes.flags.writeable
    assert dataset.image_path(image3) == tmp_path / "sub" / "b.jpg"


def test_all_categories_when_no_person(tmp_path: Path) -> None:
    data = _coco()
    data["categories"] = [c for c in data["categories"] if c["name"] != "person"]
    data["annotations"] = [a for a in data["annotations"] if a["category_id"] != PERSON]
    dataset = load_coco_boxes(_write(tmp_path, data), tmp_path)
    assert dataset.category_ids == [CAT, DOG]
    assert dataset.category_names == ["cat", "dog"]
    records = _by_id(dataset)
    assert records[3].labels.tolist() == [1, 0]  # dog (file order first), then cat
    assert records[7].labels.tolist() == [1]


def _mutated(change: Any) -> dict[str, Any]:
    data = copy.deepcopy(_coco())
    change(data)
    return data


def _set_ann(index: int, key: str, value: Any) -> Any:
    return lambda data: data["annotations"][index].__setitem__(key, value)


@pytest.mark.parametrize(
    ("change", "category_ids", "expected"),
    [
        (None, [PERSON, 42], r"category id\(s\) \[42\] not in .*\[1, 17, 18\]"),
        (_set_ann(1, "category_id", 99), None, r"annotation 2 has category_id 99"),
        (_set_ann(0, "bbox", [1, 2, 3]), None, r"annotation 1: 'bbox' must be 4 finite"),
        (_set_ann(0, "bbox", [1, 2, "3", 4]), None, r"annotation 1: 'bbox' must be 4 finite"),
        (_set_ann(0, "bbox", None), None, r"annotation 1: 'bbox' must be 4 finite"),
        (_set_ann(2, "bbox", "1234"), None, r"annotation 3: 'bbox' must be 4 finite"),
        (_set_ann(4, "image_id", 12345), None, r"annotation 5 refers to image_id 12345"),
        (
            lambda d: d["categories"].append({"id": DOG, "name": "hound"}),
            None,
            r"category id 18 appears twice",
        ),
        (lambda d: d.pop("categories"), None, r"missing or empty 'categories'"),
        (
            lambda d: d["images"][0].__setitem__("width", 0),
            None,
            r"image 7 width must be a positive integer",
        ),
        (_set_ann(1, "id", 1), [PERSON, DOG], r"annotation id 1 appears twice"),
        (_set_ann(0, "area", "big"), None, r"annotation 1: 'area' must be a number"),
        (None, [], r"category_ids is empty"),
    ],
)
def test_errors_name_the_file(
    tmp_path: Path, change: Any, category_ids: list[int] | None, expected: str
) -> None:
    data = _mutated(change) if change else _coco()
    path = _write(tmp_path, data, "bad labels.json")
    with pytest.raises(DataError, match=expected) as info:
        load_coco_boxes(path, tmp_path, category_ids=category_ids)
    message = str(info.value)
    assert message.startswith(str(path))
    assert "\n" not in message


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="labels file not found"):
        load_coco_boxes(tmp_path / "missing.json", tmp_path)


def test_ground_truth_keeps_crowds_and_selected_categories(tmp_path: Path) -> None:
    dataset = load_coco_boxes(_write(tmp_path, _coco()), tmp_path, category_ids=[PERSON, DOG])
    gt = dataset.ground_truth()
    assert [image["id"] for image in gt["images"]] == [7, 3, 5]
    assert [c["id"] for c in gt["categories"]] == [PERSON, DOG]
    assert [a["id"] for a in gt["annotations"]] == [1, 2, 3, 4, 5, 6, 7]  # no cat (id 8)
    crowd = next(a for a in gt["annotations"] if a["id"] == 3)
    assert crowd["iscrowd"] == 1
    dog = next(a for a in gt["annotations"] if a["id"] == 7)
    assert (dog["area"], dog["iscrowd"], dog["bbox"]) == (200.0, 0, [30.25, 40, 20, 10])
    assert gt["info"] == {"description": "hand-written"}

    person_only = load_coco_boxes(_write(tmp_path, _coco(), "again.json"), tmp_path)
    assert {a["category_id"] for a in person_only.ground_truth()["annotations"]} == {PERSON}


def _perfect_results(gt: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
         "score": 1.0}
        for a in gt["annotations"]
        if not a["iscrowd"]
    ]  # fmt: skip


def test_ground_truth_is_evaluable(tmp_path: Path) -> None:
    dataset = load_coco_boxes(_write(tmp_path, _coco()), tmp_path, category_ids=[PERSON, DOG])
    gt = dataset.ground_truth()
    stats = evaluate_bboxes(gt, _perfect_results(gt))
    assert stats["AP"] == pytest.approx(1.0)


def test_ground_truth_notices_a_changed_file(tmp_path: Path) -> None:
    path = _write(tmp_path, _coco())
    dataset = load_coco_boxes(path, tmp_path)
    data = _coco()
    data["images"].pop()
    _write(tmp_path, data)
    with pytest.raises(DataError, match="changed since"):
        dataset.ground_truth()


def _check_inside(dataset: CocoBoxes) -> None:
    for record in dataset.images:
        boxes = record.boxes
        assert boxes.shape == (record.labels.shape[0], 4)
        assert (boxes[:, :2] >= 0).all()
        assert (boxes[:, 2] <= record.width).all()
        assert (boxes[:, 3] <= record.height).all()
        assert (boxes[:, 2:] - boxes[:, :2] >= 1).all()


def test_real_coco_sample(real_coco_dir: Path) -> None:
    dataset = load_coco_boxes(real_coco_dir / "test_coco.json", real_coco_dir)
    assert [r.image_id for r in dataset.images] == [785, 40083, 196141, 197388]
    assert dataset.category_ids == [PERSON]
    assert [r.boxes.shape[0] for r in dataset.images] == [1, 3, 5, 5]
    _check_inside(dataset)
    for record in dataset.images:
        assert dataset.image_path(record).is_file()
    gt = dataset.ground_truth()
    assert evaluate_bboxes(gt, _perfect_results(gt))["AP"] == pytest.approx(1.0)


def test_synthetic_data(tmp_path: Path) -> None:
    from posekit.data.synthetic.generate import generate_synthetic
    from posekit.data.synthetic.scene import SceneParams

    paths = generate_synthetic(
        tmp_path, num_train=1, num_val=6, size=(96, 96), seed=3,
        params=SceneParams(crowd_prob=0.5),
    )  # fmt: skip
    assert paths.val_labels is not None and paths.val_images is not None
    raw = json.loads(paths.val_labels.read_text())
    crowds = sum(1 for a in raw["annotations"] if a.get("iscrowd"))
    dataset = load_coco_boxes(paths.val_labels, paths.val_images)
    assert len(dataset) == 6
    assert dataset.category_ids == [PERSON]
    assert sum(r.boxes.shape[0] for r in dataset.images) <= len(raw["annotations"]) - crowds
    _check_inside(dataset)
    for record in dataset.images:
        assert dataset.image_path(record).is_file()
    gt = dataset.ground_truth()
    assert sum(1 for a in gt["annotations"] if a["iscrowd"]) == crowds
