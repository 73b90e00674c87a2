"""Ultralytics YOLO pose data sets: reading a split, and converting COCO <-> YOLO."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml

from posekit.cli import main
from posekit.data.ultralytics import (
    coco_to_yolo,
    image_size,
    label_path,
    read_yolo_split,
    yolo_to_coco,
)
from posekit.errors import DataError
from posekit.schema import COCO17, KeypointSchema, make_schema

from ..conftest import real_sample

CROWDPOSE_FLIPS = [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11)]
CROWDPOSE_SIGMAS = [0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087,
                    0.089, 0.089, 0.079, 0.079]  # fmt: skip


@pytest.fixture(scope="module")
def crowdpose_dir() -> Path:
    return real_sample("crowdpose/test_crowdpose.json").parent


def _crowdpose_schema(labels: Path) -> KeypointSchema:
    names = json.loads(labels.read_text())["categories"][0]["keypoints"]
    return make_schema("crowdpose14", names, [], CROWDPOSE_FLIPS, CROWDPOSE_SIGMAS)


def _expected_people(labels: Path) -> dict[int, list[dict[str, Any]]]:
    """Per image id, the annotations a YOLO label keeps: non-crowd, with a non-empty box."""
    data = json.loads(labels.read_text())
    people: dict[int, list[dict[str, Any]]] = {image["id"]: [] for image in data["images"]}
    for ann in data["annotations"]:
        if not ann.get("iscrowd") and ann["bbox"][2] > 0 and ann["bbox"][3] > 0:
            people[ann["image_id"]].append(ann)
    return people


def _assert_same_data_set(coco: dict[str, Any], labels: Path) -> None:
    """``coco`` (read back from YOLO) holds the images and people of the COCO file."""
    original = json.loads(labels.read_text())
    by_id = {image["id"]: image for image in original["images"]}
    assert sorted(by_id) == sorted(image["id"] for image in coco["images"])
    for image in coco["images"]:
        source = by_id[image["id"]]
        assert (image["file_name"], image["width"], image["height"]) == (
            source["file_name"], source["width"], source["height"],
        )  # fmt: skip
    expected = _expected_people(labels)
    got: dict[int, list[dict[str, Any]]] = {image_id: [] for image_id in expected}
    for ann in coco["annotations"]:
        got[ann["image_id"]].append(ann)
    assert sum(map(len, expected.values())) > 0
    for image_id, anns in expected.items():
        image = by_id[image_id]
        tolerance = 1e-6 * max(image["width"], image["height"])
        assert len(got[image_id]) == len(anns)
        for read, source in zip(got[image_id], anns, strict=True):
            _assert_same_person(read, source, tolerance)


def _assert_same_person(read: dict[str, Any], source: dict[str, Any], tolerance: float) -> None:
    assert read["category_id"] == source["category_id"] and read["iscrowd"] == 0
    np.testing.assert_allclose(read["bbox"], source["bbox"], rtol=0, atol=tolerance)
    assert read["area"] == pytest.approx(read["bbox"][2] * read["bbox"][3])
    got = np.asarray(read["keypoints"], dtype=np.float64).reshape(-1, 3)
    want = np.asarray(source["keypoints"], dtype=np.float64).reshape(-1, 3)
    np.testing.assert_array_equal(got[:, 2], want[:, 2])
    labelled = want[:, 2] > 0
    np.testing.assert_allclose(got[labelled, :2], want[labelled, :2], rtol=0, atol=tolerance)
    assert (got[~labelled] == 0).all()
    assert read["num_keypoints"] == int(labelled.sum())


# ------------------------------------------------------------------- real samples, round trip


def test_real_coco_sample_round_trip(real_coco_dir: Path, tmp_path: Path) -> None:
    labels = real_coco_dir / "test_coco.json"
    data_yaml = coco_to_yolo(labels, real_coco_dir, tmp_path / "yolo")
    assert data_yaml == tmp_path / "yolo" / "data.yaml"
    spec = yaml.safe_load(data_yaml.read_text())
    assert "path" not in spec  # Ultralytics then takes the YAML's folder
    assert spec["train"] == "images/train" and spec["kpt_shape"] == [17, 3]
    assert spec["names"] == {0: "person"}
    assert spec["flip_idx"] == COCO17.flip_index().tolist()
    assert spec["sigmas"] == list(COCO17.sigmas or ())
    split = read_yolo_split(data_yaml, "train")
    assert split.schema is COCO17
    assert split.images_root == tmp_path / "yolo" / "images" / "train"
    assert split.coco["categories"][0]["keypoints"] == list(COCO17.keypoints)
    _assert_same_data_set(split.coco, labels)


def test_yolo_to_coco_writes_the_same_data_set(real_coco_dir: Path, tmp_path: Path) -> None:
    labels = real_coco_dir / "test_coco.json"
    data_yaml = coco_to_yolo(labels, real_coco_dir, tmp_path / "yolo")
    out = yolo_to_coco(data_yaml, "train", tmp_path / "back.json")
    written = json.loads(out.read_text())
    split = read_yolo_split(data_yaml, "train")
    assert written["images"] == split.coco["images"]
    assert written["annotations"] == split.coco["annotations"]
    _assert_same_data_set(written, labels)
    with pytest.raises(DataError, match=r"back\.json: exists"):
        yolo_to_coco(data_yaml, "train", out)


def test_real_crowdpose_sample_round_trip(crowdpose_dir: Path, tmp_path: Path) -> None:
    labels = crowdpose_dir / "test_crowdpose.json"
    schema = _crowdpose_schema(labels)
    data_yaml = coco_to_yolo(labels, crowdpose_dir, tmp_path, "val", schema=schema)
    assert yaml.safe_load(data_yaml.read_text())["kpt_shape"] == [14, 3]
    split = read_yolo_split(data_yaml, "val")
    assert split.schema.name == "data"
    assert split.schema.keypoints == schema.keypoints
    assert split.schema.flip_pairs == schema.flip_pairs
    assert split.schema.sigmas == schema.sigmas
    _assert_same_data_set(split.coco, labels)


def test_crowdpose_needs_a_schema(crowdpose_dir: Path, tmp_path: Path) -> None:
    labels = crowdpose_dir / "test_crowdpose.json"
    with pytest.raises(DataError, match=r"test_crowdpose\.json: .*14.*--schema"):
        coco_to_yolo(labels, crowdpose_dir, tmp_path)
    assert not (tmp_path / "data.yaml").exists()


def test_train_and_val_merge_into_one_data_yaml(real_coco_dir: Path, tmp_path: Path) -> None:
    labels = real_coco_dir / "test_coco.json"
    coco_to_yolo(labels, real_coco_dir, tmp_path, "train")
    data_yaml = coco_to_yolo(labels, real_coco_dir, tmp_path, "val")
    spec = yaml.safe_load(data_yaml.read_text())
    assert (spec["train"], spec["val"]) == ("images/train", "images/val")
    for split in ("train", "val"):
        _assert_same_data_set(read_yolo_split(data_yaml, split).coco, labels)


# ------------------------------------------------------------------------ clobbering


def test_converter_refuses_to_clobber(
    real_coco_dir: Path, crowdpose_dir: Path, tmp_path: Path
) -> None:
    labels = real_coco_dir / "test_coco.json"
    data_yaml = coco_to_yolo(labels, real_coco_dir, tmp_path)
    before = data_yaml.read_text()
    assert coco_to_yolo(labels, real_coco_dir, tmp_path) == data_yaml  # same content: fine
    label = tmp_path / "labels" / "train" / "000000000785.txt"
    label.write_text("0 0.5 0.5 0.1 0.1" + " 0 0 0" * 17 + "\n")
    with pytest.raises(DataError, match=r"000000000785\.txt: exists .*choose another --out"):
        coco_to_yolo(labels, real_coco_dir, tmp_path)
    crowd = crowdpose_dir / "test_crowdpose.json"
    with pytest.raises(DataError, match=r"data\.yaml: exists with another 'kpt_shape'"):
        coco_to_yolo(crowd, crowdpose_dir, tmp_path, "val", _crowdpose_schema(crowd))
    assert data_yaml.read_text() == before
    assert not (tmp_path / "images" / "val").exists()


def test_converter_refuses_another_image_of_the_same_name(
    real_coco_dir: Path, tmp_path: Path
) -> None:
    target = tmp_path / "images" / "train" / "000000000785.jpg"
    target.parent.mkdir(parents=True)
    target.write_bytes((real_coco_dir / "000000040083.jpg").read_bytes())
    with pytest.raises(DataError, match=r"000000000785\.jpg: exists and is another image"):
        coco_to_yolo(real_coco_dir / "test_coco.json", real_coco_dir, tmp_path)


# ---------------------------------------------------------------- COCO -> YOLO, hand-made


def _write_image(path: Path, width: int, height: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((height, width, 3), 90, dtype=np.uint8))
    return path


def _tiny_coco(tmp_path: Path) -> tuple[Path, Path]:
    images = tmp_path / "pictures"
    _write_image(images / "sub" / "x.png", 40, 20)
    _write_image(images / "y.jpg", 30, 30)
    keypoints = [4, 2, 2, 0, 0, 0, 8, 10, 1, 12, 6, 2]
    data = {
        "images": [
            {"id": 7, "file_name": "sub/x.png", "width": 40, "height": 20},
            {"id": 9, "file_name": "y.jpg", "width": 30, "height": 30},
        ],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 3, "iscrowd": 0, "bbox": [2, 1, 20, 10],
             "keypoints": keypoints},
            {"id": 2, "image_id": 7, "category_id": 3, "iscrowd": 1, "bbox": [0, 0, 5, 5],
             "keypoints": [0] * 12},
            {"id": 3, "image_id": 7, "category_id": 3, "iscrowd": 0, "bbox": [1, 1, 0, 4],
             "keypoints": keypoints},
            {"id": 4, "image_id": 7, "category_id": 5, "iscrowd": 0, "bbox": [1, 1, 3, 4]},
        ],
        "categories": [
            {"id": 3, "name": "hand", "keypoints": ["a", "b", "c", "d"]},
            {"id": 5, "name": "car"},
        ],
    }  # fmt: skip
    labels = tmp_path / "tiny.json"
    labels.write_text(json.dumps(data))
    return labels, images


def test_coco_to_yolo_sub_folders_crowds_and_empty_boxes(tmp_path: Path) -> None:
    labels, images = _tiny_coco(tmp_path)
    schema = make_schema("hand4", ["a", "b", "c", "d"], [], [(0, 2)])
    data_yaml = coco_to_yolo(labels, images, tmp_path / "out", "test", schema)
    spec = yaml.safe_load(data_yaml.read_text())
    assert spec["test"] == "images/test" and spec["names"] == {0: "hand"}
    assert spec["kpt_shape"] == [4, 3] and spec["flip_idx"] == [2, 1, 0, 3]
    assert spec["kpt_names"] == {0: ["a", "b", "c", "d"]} and "sigmas" not in spec
    x_label = tmp_path / "out" / "labels" / "test" / "sub" / "x.txt"
    assert x_label.read_text() == "0 0.3 0.3 0.5 0.5 0.1 0.1 2 0 0 0 0.2 0.5 1 0.3 0.3 2\n"
    assert (tmp_path / "out" / "labels" / "test" / "y.txt").read_text() == ""
    assert (tmp_path / "out" / "images" / "test" / "sub" / "x.png").is_file()
    split = read_yolo_split(data_yaml, "test")
    assert [(i["id"], i["file_name"]) for i in split.coco["images"]] == [
        (1, "sub/x.png"), (2, "y.jpg"),
    ]  # fmt: skip
    (ann,) = split.coco["annotations"]
    assert ann["bbox"] == pytest.approx([2, 1, 20, 10])
    assert ann["keypoints"] == pytest.approx([4, 2, 2, 0, 0, 0, 8, 10, 1, 12, 6, 2])
    assert split.schema.flip_pairs == ((0, 2),) and split.schema.sigmas is None


def test_coco_to_yolo_refuses_a_wrong_image_size(tmp_path: Path) -> None:
    labels, images = _tiny_coco(tmp_path)
    _write_image(images / "y.jpg", 31, 30)
    schema = make_schema("hand4", ["a", "b", "c", "d"], [])
    with pytest.raises(DataError, match=r"y\.jpg: the image is 31x30 but the labels say"):
        coco_to_yolo(labels, images, tmp_path / "out", "train", schema)


def test_coco_to_yolo_checks_the_keypoints_field(tmp_path: Path) -> None:
    labels, images = _tiny_coco(tmp_path)
    schema = make_schema("five", ["a", "b", "c", "d", "e"], [])
    with pytest.raises(DataError, match=r"tiny\.json: annotation 1: 'keypoints' must be 15"):
        coco_to_yolo(labels, images, tmp_path / "out", "train", schema)
    with pytest.raises(DataError, match=r"split '\.\./x' must be a plain name"):
        coco_to_yolo(labels, images, tmp_path / "out", "../x", schema)


# ---------------------------------------------------------------- YOLO sets, hand-written


def _tiny_yolo(root: Path, spec: dict[str, Any], labels: dict[str, str]) -> Path:
    """Images a.png (40x20), sub/b.jpg (20x10) and c.png (no label) under images/train."""
    _write_image(root / "images" / "train" / "a.png", 40, 20)
    _write_image(root / "images" / "train" / "sub" / "b.jpg", 20, 10)
    _write_image(root / "images" / "train" / "c.png", 10, 10)
    for name, text in labels.items():
        path = root / "labels" / "train" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    data_yaml = root / "pose.yaml"
    data_yaml.write_text(yaml.safe_dump(spec))
    return data_yaml


TWO_DIM = {"train": "images/train", "kpt_shape": [4, 2], "flip_idx": [1, 0, 3, 2],
           "names": ["person"]}  # fmt: skip
TWO_DIM_LABELS = {
    "a.txt": "0 0.5 0.5 0.5 0.5 0.25 0.5 0 0 0.5 0.25 0.75 0.75\n\n",
    "sub/b.txt": "0 0.5 0.5 1 1 0 0 0 0 0 0 0.1 0.1\n0 0.5 0.5 0.2 0.2 0 0 0 0 0 0 0.5 0.5\n",
}


def test_two_value_keypoints_names_list_and_missing_label(tmp_path: Path) -> None:
    split = read_yolo_split(_tiny_yolo(tmp_path, TWO_DIM, TWO_DIM_LABELS), "train")
    coco = split.coco
    assert split.images_root == tmp_path / "images" / "train"
    assert [(i["id"], i["file_name"], i["width"], i["height"]) for i in coco["images"]] == [
        (1, "a.png", 40, 20), (2, "c.png", 10, 10), (3, "sub/b.jpg", 20, 10),
    ]  # fmt: skip
    assert coco["categories"] == [{"id": 1, "name": "person", "supercategory": "person",
                                   "keypoints": ["kpt_0", "kpt_1", "kpt_2", "kpt_3"],
                                   "skeleton": []}]  # fmt: skip
    first, second, third = coco["annotations"]
    assert first["image_id"] == 1 and first["bbox"] == [10, 5, 20, 10]
    assert first["keypoints"] == [10, 10, 2, 0, 0, 0, 20, 5, 2, 30, 15, 2]
    assert first["num_keypoints"] == 3 and first["area"] == 200
    assert (second["image_id"], third["image_id"]) == (3, 3)
    assert [a["id"] for a in coco["annotations"]] == [1, 2, 3]
    assert split.schema.name == "pose" and split.schema.flip_pairs == ((0, 1), (2, 3))
    assert split.schema.keypoints == ("kpt_0", "kpt_1", "kpt_2", "kpt_3")
    assert split.schema.sigmas is None and split.schema.skeleton == ()


THREE_DIM = {
    "path": ".", "train": "images/train", "kpt_shape": [4, 3], "names": {0: "hand", 1: "foot"},
    "flip_idx": [0, 1, 2, 3], "kpt_names": {1: ["heel", "toe", "ball", "arch"]},
    "sigmas": [0.1, 0.2, 0.3, 0.4],
}  # fmt: skip


def test_three_value_keypoints_names_dict_and_kpt_names(tmp_path: Path) -> None:
    labels = {"a.txt": "1 0.5 0.5 0.5 0.5 0.25 0.5 2 0.1 0.1 0 0.5 0.25 1 0 0 2\n"}
    split = read_yolo_split(_tiny_yolo(tmp_path / "set", THREE_DIM, labels), "train")
    (ann,) = split.coco["annotations"]
    assert ann["category_id"] == 2
    assert ann["keypoints"] == [10, 10, 2, 0, 0, 0, 20, 5, 1, 0, 0, 2]
    assert ann["num_keypoints"] == 3
    hand, foot = split.coco["categories"]
    assert (hand["id"], hand["name"], foot["id"], foot["name"]) == (1, "hand", 2, "foot")
    assert foot["keypoints"] == ["heel", "toe", "ball", "arch"]
    assert split.schema.keypoints == ("heel", "toe", "ball", "arch")
    assert split.schema.sigmas == (0.1, 0.2, 0.3, 0.4) and split.schema.flip_pairs == ()


def test_txt_list_and_list_of_folders(tmp_path: Path) -> None:
    data_yaml = _tiny_yolo(tmp_path, TWO_DIM, TWO_DIM_LABELS)
    (tmp_path / "val.txt").write_text("./images/train/sub/b.jpg\n\nimages/train/a.png\n")
    extra = _write_image(tmp_path / "more" / "images" / "12.png", 10, 10)
    label_path(extra).parent.mkdir(parents=True)
    label_path(extra).write_text("0 0.5 0.5 0.2 0.2 0.1 0.1 0 0 0 0 0 0\n")
    spec = {**TWO_DIM, "val": "val.txt", "test": ["images/train/sub", "more/images"]}
    data_yaml.write_text(yaml.safe_dump(spec))
    val = read_yolo_split(data_yaml, "val")
    assert val.images_root == tmp_path / "images" / "train"
    assert [i["file_name"] for i in val.coco["images"]] == ["a.png", "sub/b.jpg"]
    assert [a["image_id"] for a in val.coco["annotations"]] == [1, 2, 2]
    test = read_yolo_split(data_yaml, "test")
    assert test.images_root == tmp_path
    names = [i["file_name"] for i in test.coco["images"]]
    assert names == ["images/train/sub/b.jpg", "more/images/12.png"]
    assert [i["id"] for i in test.coco["images"]] == [1, 2]  # stem 'b' is not a number
    assert [a["image_id"] for a in test.coco["annotations"]] == [1, 1, 2]


def test_numeric_stems_become_image_ids(tmp_path: Path) -> None:
    _write_image(tmp_path / "images" / "val" / "0042.png", 8, 8)
    _write_image(tmp_path / "images" / "val" / "7.png", 8, 8)
    (tmp_path / "data.yaml").write_text(yaml.safe_dump({**TWO_DIM, "val": "images/val"}))
    split = read_yolo_split(tmp_path / "data.yaml", "val")
    assert [(i["id"], i["file_name"]) for i in split.coco["images"]] == [
        (42, "0042.png"), (7, "7.png"),
    ]  # fmt: skip
    assert split.coco["annotations"] == []


def test_label_path_follows_the_last_images_folder() -> None:
    assert label_path("/d/images/x/images/train/a.b.jpg") == Path(
        "/d/images/x/labels/train/a.b.txt"
    )
    assert label_path("/d/pics/a.png") == Path("/d/pics/a.txt")


def test_image_size_applies_exif_orientation(tmp_path: Path) -> None:
    ok, encoded = cv2.imencode(".jpg", np.zeros((20, 40, 3), dtype=np.uint8))
    assert ok
    orientation = struct.pack("<HHIHH", 0x0112, 3, 1, 6, 0)  # rotate 90 degrees, little-endian
    tiff = b"II\x2a\x00" + struct.pack("<IH", 8, 1) + orientation + struct.pack("<I", 0)
    app1 = b"Exif\x00\x00" + tiff
    data = encoded.tobytes()
    path = tmp_path / "rotated.jpg"
    path.write_bytes(data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:])
    decoded = cv2.imread(str(path))
    assert image_size(path) == (decoded.shape[1], decoded.shape[0]) == (20, 40)
    assert image_size(_write_image(tmp_path / "plain.bmp", 7, 5)) == (7, 5)


# ------------------------------------------------------------------------ malformed input

BAD_SPECS = [
    ("no kpt_shape", {"kpt_shape": None}, "'kpt_shape' must be"),
    ("bad kpt_shape", {"kpt_shape": [4, 4]}, "'kpt_shape' must be"),
    ("not a permutation", {"flip_idx": [0, 0, 1, 2]}, "'flip_idx' must list"),
    ("not an involution", {"flip_idx": [1, 2, 3, 0]}, "'flip_idx' must list"),
    ("short flip_idx", {"flip_idx": [1, 0]}, "'flip_idx' must list"),
    ("no names", {"names": None}, "'names' must be"),
    ("no split", {"train": None}, "no usable 'train' split"),
    ("missing images", {"train": "images/nope"}, "images/nope are missing"),
    ("bad kpt_names", {"kpt_names": {0: ["a", "b"]}}, "'kpt_names' of class 0"),
    ("bad sigmas", {"sigmas": [0.1]}, "sigmas has 1 entries"),
    ("bad path", {"path": 3}, "'path' must be"),
]


@pytest.mark.parametrize(("change", "needle"), [case[1:] for case in BAD_SPECS],
                         ids=[case[0] for case in BAD_SPECS])  # fmt: skip
def test_malformed_data_yaml(tmp_path: Path, change: dict[str, Any], needle: str) -> None:
    spec = {key: value for key, value in {**TWO_DIM, **change}.items() if value is not None}
    data_yaml = _tiny_yolo(tmp_path, spec, TWO_DIM_LABELS)
    with pytest.raises(DataError) as caught:
        read_yolo_split(data_yaml, "train")
    message = str(caught.value)
    assert message.startswith(str(data_yaml)) and needle in message
    assert "\n" not in message


def test_unreadable_data_yaml(tmp_path: Path) -> None:
    (tmp_path / "data.yaml").write_text("kpt_shape: [4, 2\n")
    with pytest.raises(DataError, match=r"data\.yaml: not a readable YAML file"):
        read_yolo_split(tmp_path / "data.yaml", "train")
    with pytest.raises(DataError, match=r"nope\.yaml: data\.yaml not found"):
        read_yolo_split(tmp_path / "nope.yaml", "train")


BAD_LINES = [
    ("wrong count", "0 0.5 0.5 0.5 0.5 0.1 0.1\n", 1, "7 numbers, but kpt_shape [4, 2]"),
    ("not a number", "0 0.5 0.5 0.5 x" + " 0" * 8 + "\n", 1, "'x' is not a finite number"),
    ("not finite", "0 0.5 0.5 0.5 nan" + " 0" * 8 + "\n", 1, "'nan' is not a finite number"),
    ("unknown class", "\n3 0.5 0.5 0.5 0.5" + " 0" * 8 + "\n", 2, "class 3 is not in 'names'"),
    ("fractional class", "0.5 0.5 0.5 0.5 0.5" + " 0" * 8 + "\n", 1, "is not in 'names'"),
]


@pytest.mark.parametrize(("text", "line", "needle"), [case[1:] for case in BAD_LINES],
                         ids=[case[0] for case in BAD_LINES])  # fmt: skip
def test_malformed_label_lines(tmp_path: Path, text: str, line: int, needle: str) -> None:
    data_yaml = _tiny_yolo(tmp_path, TWO_DIM, {**TWO_DIM_LABELS, "a.txt": text})
    with pytest.raises(DataError) as caught:
        read_yolo_split(data_yaml, "train")
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'labels' / 'train' / 'a.txt'}:{line}: ")
    assert needle in message


def test_bad_visibility(tmp_path: Path) -> None:
    text = "0 0.5 0.5 0.5 0.5 0.1 0.1 3 0 0 0 0 0 0 0 0 0\n"
    data_yaml = _tiny_yolo(tmp_path, {**THREE_DIM, "path": None}, {"a.txt": text})
    with pytest.raises(DataError, match=r"a\.txt:1: keypoint 0 has visibility 3"):
        read_yolo_split(data_yaml, "train")


def test_missing_listed_image(tmp_path: Path) -> None:
    data_yaml = _tiny_yolo(tmp_path, {**TWO_DIM, "train": "list.txt"}, {})
    (tmp_path / "list.txt").write_text("images/train/a.png\nimages/train/gone.png\n")
    with pytest.raises(DataError, match=r"list\.txt:2: image .*gone\.png not found"):
        read_yolo_split(data_yaml, "train")


# ---------------------------------------------------------------------------------- CLI


def test_cli_convert_both_ways(
    real_coco_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = real_coco_dir / "test_coco.json"
    out = tmp_path / "yolo"
    args = ["convert", "--to", "yolo", "--labels", str(labels), "--images", str(real_coco_dir)]
    assert main([*args, "--out", str(out), "--split", "val"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1 and "data.yaml" in printed
    assert "'val', 4 images, 14 people" in printed
    back = tmp_path / "back.json"
    assert main(["convert", "--to", "coco", "--data", str(out / "data.yaml"),
                 "--out", str(back)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1 and "4 images, 14 people" in printed
    _assert_same_data_set(json.loads(back.read_text()), labels)


def test_cli_convert_user_errors(
    real_coco_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "data.yaml"
    bad.write_text("kpt_shape: [4, 5]\nnames: [person]\nval: images\n")
    assert (
        main(["convert", "--to", "coco", "--data", str(bad), "--out", str(tmp_path / "o.json")])
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}: 'kpt_shape'") and err.count("\n") == 1
    assert main(["convert", "--to", "yolo", "--labels", "x.json", "--out", str(tmp_path)]) == 2
    assert "--images" in capsys.readouterr().err
    assert main(["convert", "--to", "xml", "--out", str(tmp_path)]) == 2
    assert "invalid choice" in capsys.readouterr().err
