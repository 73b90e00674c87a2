"""COCO keypoint loading: real COCO and Human-Art samples, ignore regions, errors, path safety."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from posekit.data.coco import (
    CocoKeypoints,
    PersonImage,
    ignore_mask,
    load_coco_keypoints,
    resolve_image_path,
)
from posekit.errors import DataError
from posekit.schema import COCO17, make_schema

COCO_IMAGE_IDS = [785, 40083, 196141, 197388]


def _raw(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _by_id(dataset: CocoKeypoints) -> dict[int, PersonImage]:
    return {record.image_id: record for record in dataset.images}


@pytest.fixture(scope="module")
def coco(real_coco_dir: Path) -> CocoKeypoints:
    return load_coco_keypoints(real_coco_dir / "test_coco.json", real_coco_dir, COCO17)


def test_real_coco_images_and_person_counts(coco: CocoKeypoints, real_coco_dir: Path) -> None:
    assert [r.image_id for r in coco.images] == COCO_IMAGE_IDS
    records = _by_id(coco)
    assert {i: r.num_persons for i, r in records.items()} == {
        785: 1, 40083: 2, 196141: 4, 197388: 5,
    }  # fmt: skip
    assert sum(r.num_persons for r in coco.images) == 12
    assert records[785].file_name == "000000000785.jpg"
    assert (records[785].height, records[785].width) == (425, 640)
    for record in coco.images:
        assert record.keypoints.shape == (record.num_persons, 17, 3)
        assert record.keypoints.dtype == np.float32
        assert record.boxes.shape == (record.num_persons, 4)
        assert record.annotation_ids.dtype == np.int64
        assert coco.image_path(record) == real_coco_dir / record.file_name
        assert coco.image_path(record).is_file()


def test_real_coco_values_match_the_json(coco: CocoKeypoints, real_coco_dir: Path) -> None:
    raw = _raw(real_coco_dir / "test_coco.json")
    record = _by_id(coco)[197388]
    annotations = [a for a in raw["annotations"] if a["image_id"] == 197388]
    assert record.annotation_ids.tolist() == [a["id"] for a in annotations]
    for row, ann in enumerate(annotations):
        np.testing.assert_allclose(record.keypoints[row].ravel(), ann["keypoints"], rtol=1e-6)
        np.testing.assert_allclose(record.boxes[row], ann["bbox"], rtol=1e-6)
        assert record.areas[row] == pytest.approx(ann["area"], rel=1e-6)


def test_zero_keypoint_persons_become_ignore_regions(coco: CocoKeypoints) -> None:
    records = _by_id(coco)
    assert 1202706 not in records[40083].annotation_ids
    assert 508900 not in records[196141].annotation_ids
    assert [len(records[i].ignore_segmentations) for i in COCO_IMAGE_IDS] == [0, 1, 1, 0]
    np.testing.assert_allclose(records[40083].ignore_boxes, [[275.17, 126.5, 10.69, 68.26]])


def test_ignore_mask_covers_the_zero_keypoint_person(coco: CocoKeypoints) -> None:
    records = _by_id(coco)
    assert ignore_mask(records[785]).sum() == 0
    for image_id, area, (x, y, w, h) in [
        (40083, 491.2669, (275.17, 126.5, 10.69, 68.26)),
        (196141, 285.7906, (440.85, 73.13, 16.79, 32.45)),
    ]:
        mask = ignore_mask(records[image_id])
        assert mask.shape == (records[image_id].height, records[image_id].width)
        assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
        assert abs(int(mask.sum()) - area) < 0.2 * area
        ys, xs = np.nonzero(mask)
        assert xs.min() >= int(x) - 1 and xs.max() <= x + w + 1
        assert ys.min() >= int(y) - 1 and ys.max() <= y + h + 1


def test_arrays_are_read_only(coco: CocoKeypoints) -> None:
    with pytest.raises(ValueError):
        coco.images[1].keypoints[0, 0, 0] = 1.0


def test_include_empty_images_false_drops_images_without_persons(tmp_path: Path) -> None:
    labels = _write_labels(tmp_path, extra_images=[_image(7, "empty.jpg")])
    assert [r.image_id for r in load_coco_keypoints(labels, tmp_path, COCO17).images] == [42, 7]
    kept = load_coco_keypoints(labels, tmp_path, COCO17, include_empty_images=False)
    assert [r.image_id for r in kept.images] == [42]


def test_humanart_17_and_21_keypoints(real_humanart_dir: Path) -> None:
    labels = real_humanart_dir / "annotations" / "test_humanart.json"
    raw = _raw(labels)
    coco17 = load_coco_keypoints(labels, real_humanart_dir, COCO17)
    assert [r.image_id for r in coco17.images] == [2000000001648, 12000000005603, 15000000000590]
    assert [r.num_persons for r in coco17.images] == [1, 1, 2]
    assert all(coco17.image_path(r).is_file() for r in coco17.images)
    assert all(len(r.ignore_segmentations) == 0 for r in coco17.images)

    names = raw["categories"][0]["keypoints"]
    schema21 = make_schema("humanart21", names, [[15, 19], [16, 20]], [[17, 18], [19, 20]])
    wide = load_coco_keypoints(labels, real_humanart_dir, schema21, keypoints_field="keypoints_21")
    last = _by_id(wide)[15000000000590]
    assert last.keypoints.shape == (2, 21, 3)
    assert last.annotation_ids.tolist() == [15000000092347, 15000000092348]
    np.testing.assert_allclose(last.keypoints[0].ravel(), raw["annotations"][2]["keypoints_21"])
    np.testing.assert_array_equal(last.keypoints[:, :17], _by_id(coco17)[15000000000590].keypoints)


def test_keypoint_length_mismatch_names_annotation_and_schema(real_humanart_dir: Path) -> None:
    labels = real_humanart_dir / "annotations" / "test_humanart.json"
    with pytest.raises(
        DataError, match=r"annotation 2000000006746 has 63 .*coco17.*data.schema=humanart21"
    ):
        load_coco_keypoints(labels, real_humanart_dir, COCO17, keypoints_field="keypoints_21")


# ---- small synthetic files -------------------------------------------------------------------


def _image(image_id: int, file_name: str, width: int = 100, height: int = 80) -> dict[str, Any]:
    return {"id": image_id, "file_name": file_name, "width": width, "height": height}


def _person(ann_id: int, image_id: int, **changes: Any) -> dict[str, Any]:
    keypoints = [0.0] * 51
    keypoints[0:3] = [10.0, 20.0, 2]
    keypoints[15:18] = [30.0, 40.0, 1]
    ann = {
        "id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0,
        "bbox": [5.0, 6.0, 40.0, 50.0], "area": 1500.0, "num_keypoints": 2,
        "keypoints": keypoints, "segmentation": [[5, 6, 45, 6, 45, 56, 5, 56]],
    }  # fmt: skip
    ann.update(changes)
    return ann


def _write_labels(
    folder: Path,
    annotations: list[dict[str, Any]] | None = None,
    extra_images: list[dict[str, Any]] | None = None,
    categories: list[dict[str, Any]] | None = None,
) -> Path:
    data = {
        "images": [_image(42, "000000000001.jpg"), *(extra_images or [])],
        "annotations": [_person(1, 42)] if annotations is None else annotations,
        "categories": categories
        or [{"id": 1, "name": "person", "keypoints": list(COCO17.keypoints)}],
    }
    path = folder / "labels.json"
    path.write_text(json.dumps(data))
    return path


def test_files_without_a_usable_annotation_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "labels.json"
    path.write_text(
        '{"images": [], "annotations": [], "categories": [{"id": 1, "name": "person"}]}'
    )
    with pytest.raises(DataError, match=r"labels.json: no annotation of categories \[1\]"):
        load_coco_keypoints(path, tmp_path, COCO17)
    with pytest.raises(DataError, match="has a labelled keypoint"):
        load_coco_keypoints(_write_labels(tmp_path, []), tmp_path, COCO17)


def test_image_id_comes_from_json_not_file_name(tmp_path: Path) -> None:
    record = load_coco_keypoints(_write_labels(tmp_path), tmp_path, COCO17).images[0]
    assert record.image_id == 42
    assert record.keypoints[0, 0].tolist() == [10.0, 20.0, 2.0]
    assert record.keypoints[0, 5].tolist() == [30.0, 40.0, 1.0]


def test_crowd_rle_regions_match_pycocotools(tmp_path: Path) -> None:
    truth = np.zeros((80, 100), dtype=np.uint8)
    truth[10:30, 20:50] = 1
    other = np.zeros((80, 100), dtype=np.uint8)
    other[60:70, 5:15] = 1
    compressed = mask_utils.encode(np.asfortranarray(truth))
    compressed["counts"] = compressed["counts"].decode("ascii")
    flat = other.ravel(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
    uncompressed = {"counts": runs if flat[0] == 0 else [0, *runs], "size": [80, 100]}
    annotations = [
        _person(1, 42),
        _person(2, 42, iscrowd=1, segmentation=compressed, bbox=[20, 10, 30, 20]),
        _person(3, 42, iscrowd=1, segmentation=uncompressed, bbox=[5, 60, 10, 10]),
    ]
    record = load_coco_keypoints(_write_labels(tmp_path, annotations), tmp_path, COCO17).images[0]
    assert record.annotation_ids.tolist() == [1]
    assert len(record.ignore_segmentations) == 2
    np.testing.assert_array_equal(ignore_mask(record), truth | other)


def test_regions_without_segmentation_are_filled_boxes(tmp_path: Path) -> None:
    unlabelled = _person(2, 42, keypoints=[0] * 51, num_keypoints=0, bbox=[10.5, 20.0, 5.0, 4.0])
    del unlabelled["segmentation"]
    labels = _write_labels(tmp_path, [_person(1, 42), unlabelled])
    record = load_coco_keypoints(labels, tmp_path, COCO17).images[0]
    assert record.ignore_segmentations == (None,)
    mask = ignore_mask(record)
    expected = np.zeros((80, 100), dtype=np.uint8)
    expected[20:24, 10:16] = 1
    np.testing.assert_array_equal(mask, expected)
    assert ignore_mask(record, height=22, width=12).sum() == 2 * 2


def test_category_filter(tmp_path: Path) -> None:
    annotations = [_person(1, 42), _person(2, 42, category_id=2)]
    categories = [{"id": 1, "name": "person"}, {"id": 2, "name": "dog"}]
    labels = _write_labels(tmp_path, annotations, categories=categories)
    assert load_coco_keypoints(labels, tmp_path, COCO17).images[0].annotation_ids.tolist() == [1]
    dogs = load_coco_keypoints(labels, tmp_path, COCO17, category_ids=[2])
    assert dogs.images[0].annotation_ids.tolist() == [2]
    keypoint_categories = [{"id": 2, "name": "dog"}, {"id": 1, "name": "human", "keypoints": ["a"]}]
    labels = _write_labels(tmp_path, annotations, categories=keypoint_categories)
    assert load_coco_keypoints(labels, tmp_path, COCO17).images[0].annotation_ids.tolist() == [1]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"images": [', "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"images": []}', "'annotations'"),
        ('{"images": {}, "annotations": []}', "'images'"),
    ],
)
def test_unreadable_json(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "labels.json"
    path.write_text(text)
    with pytest.raises(DataError, match=match) as exc:
        load_coco_keypoints(path, tmp_path, COCO17)
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_missing_labels_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="labels file not found"):
        load_coco_keypoints(tmp_path / "none.json", tmp_path, COCO17)


@pytest.mark.parametrize(
    ("annotation", "match"),
    [
        (_person(5, 999), "annotation 5 refers to image_id 999"),
        (_person("x", 42), r"annotations\[0\] has no integer 'id'"),
        (_person(5, 42, keypoints=["a"] * 51), "annotation 5: keypoints must be 51 finite"),
        (_person(5, 42, keypoints=[1] * 50), "annotation 5 has 50 values"),
        (_person(5, 42, bbox=[1, 2, 3]), "annotation 5: bbox must be 4 finite"),
        (_person(5, 42, area="big"), "annotation 5: 'area' must be a number"),
    ],
)
def test_bad_annotation_is_named(tmp_path: Path, annotation: dict, match: str) -> None:
    with pytest.raises(DataError, match=match):
        load_coco_keypoints(_write_labels(tmp_path, [annotation]), tmp_path, COCO17)


def test_duplicate_image_id(tmp_path: Path) -> None:
    labels = _write_labels(tmp_path, extra_images=[_image(42, "again.jpg")])
    with pytest.raises(DataError, match="image id 42 appears twice"):
        load_coco_keypoints(labels, tmp_path, COCO17)


@pytest.mark.parametrize("file_name", ["../../x.jpg", "a/../../x.jpg", "/etc/passwd", ""])
def test_file_names_escaping_the_root_are_refused(tmp_path: Path, file_name: str) -> None:
    with pytest.raises(DataError, match="file_name"):
        resolve_image_path(tmp_path / "images", file_name)


def test_escape_refused_through_the_data_set(tmp_path: Path) -> None:
    labels = _write_labels(tmp_path, extra_images=[_image(7, "../../x.jpg")])
    dataset = load_coco_keypoints(labels, tmp_path / "images", COCO17)
    assert dataset.image_path(dataset.images[0]) == tmp_path / "images" / "000000000001.jpg"
    with pytest.raises(DataError, match="escapes the images folder"):
        dataset.image_path(dataset.images[1])


def test_inner_dot_dot_that_stays_inside_is_allowed(tmp_path: Path) -> None:
    assert resolve_image_path(tmp_path, "a/../b/c.jpg") == tmp_path / "b" / "c.jpg"
