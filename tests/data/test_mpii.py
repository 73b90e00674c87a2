"""MPII's converted JSON to COCO keypoints, and PCKh: the real sample, generated entries, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from scipy.io import savemat

from posekit.data.mpii import (
    MPII_KEYPOINTS,
    is_mpii_entries,
    mpii_pckh,
    mpii_to_coco,
)
from posekit.errors import DataError

from ..conftest import real_sample

# The real sample's images, in the file's entry order, with their (width, height).
REAL_IMAGES = [
    ("005808361.jpg", 1280, 720),
    ("052475643.jpg", 854, 480),
    ("051423444.jpg", 1280, 720),
    ("004645041.jpg", 1280, 720),
    ("060754485.jpg", 1280, 720),
]
TABLE_KEYS = ["Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "PCKh", "PCKh@0.1"]


@pytest.fixture(scope="module")
def real_mpii_dir() -> Path:
    return real_sample("mpii/test_mpii.json").parent


@pytest.fixture(scope="module")
def real_entries(real_mpii_dir: Path) -> list[dict[str, Any]]:
    return json.loads((real_mpii_dir / "test_mpii.json").read_text())


@pytest.fixture(scope="module")
def real_coco(real_entries: list[dict[str, Any]], real_mpii_dir: Path) -> dict[str, Any]:
    return mpii_to_coco(real_entries, "test_mpii.json", real_mpii_dir)


def _ground_truth(coco: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(N, 16, 3) keypoints and (N,) head sizes of a converted file's annotations."""
    annotations = coco["annotations"]
    gt = np.array([ann["keypoints"] for ann in annotations], dtype=np.float64).reshape(-1, 16, 3)
    return gt, np.array([ann["head_size"] for ann in annotations])


# --- the real sample ---------------------------------------------------------------------------


def test_real_sample_is_recognised(real_entries: list[dict[str, Any]]) -> None:
    assert is_mpii_entries(real_entries)


def test_real_sample_converts_with_real_image_sizes(real_coco: dict[str, Any]) -> None:
    images = [(im["file_name"], im["width"], im["height"]) for im in real_coco["images"]]
    assert images == REAL_IMAGES
    assert [im["id"] for im in real_coco["images"]] == [1, 2, 3, 4, 5]
    assert [ann["id"] for ann in real_coco["annotations"]] == [1, 2, 3, 4, 5]
    assert [ann["image_id"] for ann in real_coco["annotations"]] == [1, 2, 3, 4, 5]
    for ann in real_coco["annotations"]:
        assert (ann["category_id"], ann["iscrowd"]) == (1, 0)
    (category,) = real_coco["categories"]
    assert category["keypoints"] == list(MPII_KEYPOINTS)
    assert category == {
        "id": 1,
        "name": "person",
        "keypoints": category["keypoints"],
        "skeleton": [],
    }
    assert json.loads(json.dumps(real_coco)) == real_coco  # plain JSON types throughout


def test_real_sample_keypoints_are_zero_based(
    real_coco: dict[str, Any], real_entries: list[dict[str, Any]]
) -> None:
    for entry, ann in zip(real_entries, real_coco["annotations"], strict=True):
        keypoints = np.array(ann["keypoints"]).reshape(16, 3)
        labelled = np.array(entry["joints_vis"]) == 1
        np.testing.assert_allclose(keypoints[labelled, :2], np.array(entry["joints"])[labelled] - 1)
        assert (keypoints[labelled, 2] == 2).all()
        assert (keypoints[~labelled] == 0).all()
        assert ann["num_keypoints"] == int(labelled.sum())
    # entries 2 and 3 have both ankles unlabelled (given as [-1, -1] in the file)
    assert [ann["num_keypoints"] for ann in real_coco["annotations"]] == [16, 16, 14, 14, 16]


def test_real_sample_boxes_follow_centre_and_scale_and_hold_the_joints(
    real_coco: dict[str, Any],
) -> None:
    # entry 0: centre (966, 340), scale 4.718488 -> side 943.6976; the centre moves
    # 15 * 4.718488 px down, then both coordinates lose 1 for 0-based pixels
    side = 4.718488 * 200
    x, y, w, h = real_coco["annotations"][0]["bbox"]
    assert (w, h) == pytest.approx((side, side))
    assert (x, y) == pytest.approx((965 - side / 2, 340 + 15 * 4.718488 - 1 - side / 2))
    for ann in real_coco["annotations"]:
        x, y, w, h = ann["bbox"]
        assert ann["area"] == pytest.approx(w * h)
        keypoints = np.array(ann["keypoints"]).reshape(16, 3)
        points = keypoints[keypoints[:, 2] > 0, :2]
        assert (points[:, 0] >= x).all() and (points[:, 0] <= x + w).all()
        assert (points[:, 1] >= y).all() and (points[:, 1] <= y + h).all()


def test_real_sample_head_sizes_from_the_head_joints(
    real_coco: dict[str, Any], real_entries: list[dict[str, Any]]
) -> None:
    for entry, ann in zip(real_entries, real_coco["annotations"], strict=True):
        neck, top = np.array(entry["joints"][8]), np.array(entry["joints"][9])
        assert isinstance(ann["head_size"], float)
        assert ann["head_size"] == pytest.approx(0.75 * np.linalg.norm(top - neck))


def test_real_sample_ground_truth_as_predictions_scores_one(real_coco: dict[str, Any]) -> None:
    gt, head_sizes = _ground_truth(real_coco)
    table = mpii_pckh(gt[:, :, :2], gt, head_sizes)
    assert list(table) == TABLE_KEYS
    assert table == {key: 1.0 for key in TABLE_KEYS}
    # every prediction 0.4 head sizes off is still within PCKh@0.5; 0.6 head sizes off is not
    direction = np.array([0.6, 0.8])
    near = gt[:, :, :2] + 0.4 * head_sizes[:, None, None] * direction
    far = gt[:, :, :2] + 0.6 * head_sizes[:, None, None] * direction
    assert mpii_pckh(near, gt, head_sizes)["PCKh"] == 1.0
    assert mpii_pckh(near, gt, head_sizes)["PCKh@0.1"] == 0.0
    assert mpii_pckh(far, gt, head_sizes) == {key: 0.0 for key in TABLE_KEYS}


# --- generated entries -------------------------------------------------------------------------


def _entry(image: str = "a.jpg", **changes: Any) -> dict[str, Any]:
    """A standing person: joints 10 px apart in x, head_top (9) 40 px above upper_neck (8)."""
    joints = [[11.0 + 10 * j, 101.0] for j in range(16)]
    joints[8], joints[9] = [51.0, 61.0], [51.0, 21.0]
    entry: dict[str, Any] = {"image": image, "center": [101.0, 81.0], "scale": 1.0}
    entry["joints"] = joints
    entry["joints_vis"] = [1] * 16
    entry.update(changes)
    return entry


def _write_image(folder: Path, name: str, width: int, height: int) -> None:
    cv2.imwrite(str(folder / name), np.zeros((height, width, 3), np.uint8))


@pytest.fixture
def images(tmp_path: Path) -> Path:
    _write_image(tmp_path, "a.jpg", 64, 48)
    _write_image(tmp_path, "b.png", 30, 20)
    return tmp_path


def test_images_are_shared_and_numbered_by_first_appearance(images: Path) -> None:
    entries = [_entry("b.png"), _entry("a.jpg"), _entry("b.png"), _entry("a.jpg")]
    coco = mpii_to_coco(entries, "gen.json", images)
    assert coco["images"] == [
        {"id": 1, "file_name": "b.png", "width": 30, "height": 20},
        {"id": 2, "file_name": "a.jpg", "width": 64, "height": 48},
    ]
    assert [ann["image_id"] for ann in coco["annotations"]] == [1, 2, 1, 2]
    assert [ann["id"] for ann in coco["annotations"]] == [1, 2, 3, 4]


def test_unlabelled_joints_are_zeroed(images: Path) -> None:
    flags = [1] * 16
    flags[0] = flags[15] = 0
    joints = _entry()["joints"]
    joints[0] = joints[15] = [-1.0, -1.0]
    (ann,) = mpii_to_coco([_entry(joints=joints, joints_vis=flags)], "gen.json", images)[
        "annotations"
    ]
    keypoints = np.array(ann["keypoints"]).reshape(16, 3)
    assert keypoints[0].tolist() == [0, 0, 0] and keypoints[15].tolist() == [0, 0, 0]
    assert keypoints[1].tolist() == [20.0, 100.0, 2]
    assert ann["num_keypoints"] == 14


def test_box_uses_the_shifted_zero_based_centre_and_no_shift_without_a_centre(
    images: Path,
) -> None:
    entries = [_entry(scale=0.5), _entry(center=[-1.0, 81.0], scale=0.5)]
    shifted, unshifted = (
        a["bbox"] for a in mpii_to_coco(entries, "gen.json", images)["annotations"]
    )
    # side 100; centre (101, 81 + 7.5) 1-based -> (100, 87.5) 0-based
    assert shifted == pytest.approx([50.0, 37.5, 100.0, 100.0])
    # MPII's "no centre" (x = -1) is not shifted: (-1, 81) -> (-2, 80)
    assert unshifted == pytest.approx([-52.0, 30.0, 100.0, 100.0])


def test_head_size_estimate_and_nan_without_both_head_joints(images: Path) -> None:
    no_neck = [1] * 16
    no_neck[8] = 0
    no_top = [1] * 16
    no_top[9] = 0
    entries = [_entry(), _entry(joints_vis=no_neck), _entry(joints_vis=no_top)]
    sizes = [a["head_size"] for a in mpii_to_coco(entries, "gen.json", images)["annotations"]]
    assert sizes[0] == pytest.approx(0.75 * 40)
    assert math.isnan(sizes[1]) and math.isnan(sizes[2])


def test_head_boxes_give_the_official_head_size(images: Path, tmp_path: Path) -> None:
    boxes = np.zeros((2, 2, 2))
    boxes[:, :, 0] = [[10, 20], [40, 60]]  # (x1, y1), (x2, y2): diagonal 50
    boxes[:, :, 1] = [[0, 0], [6, 8]]  # diagonal 10
    path = tmp_path / "mpii_gt_val.mat"
    savemat(path, {"headboxes_src": boxes})
    no_head = [1] * 16
    no_head[8] = no_head[9] = 0
    entries = [_entry(), _entry(joints_vis=no_head)]  # the box wins over the joints
    coco = mpii_to_coco(entries, "gen.json", images, head_boxes=path)
    assert [a["head_size"] for a in coco["annotations"]] == pytest.approx([30.0, 6.0])


def test_head_boxes_errors_name_the_file(images: Path, tmp_path: Path) -> None:
    wrong_count = tmp_path / "three.mat"
    savemat(wrong_count, {"headboxes_src": np.ones((2, 2, 3))})
    no_key = tmp_path / "other.mat"
    savemat(no_key, {"pos_gt_src": np.ones((16, 2, 1))})
    not_mat = tmp_path / "text.mat"
    not_mat.write_text("not a mat file")
    cases = [
        (wrong_count, "3 head boxes for 1 entries"),
        (no_key, "headboxes_src"),
        (not_mat, "not a readable MATLAB"),
        (tmp_path / "missing.mat", "not found"),
    ]
    for path, words in cases:
        with pytest.raises(DataError, match=words) as caught:
            mpii_to_coco([_entry()], "gen.json", images, head_boxes=path)
        assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    ("entries", "words"),
    [
        ({"images": []}, r"^gen\.json: expected a JSON list"),
        ([_entry(), "text"], r"^gen\.json: entry 1 is a str"),
        ([_entry(), _entry(), {"image": "a.jpg"}], r"^gen\.json: entry 2 has no 'center'"),
        ([_entry(joints=_entry()["joints"][:15])], r"^gen\.json: entry 0: 'joints' must be 16"),
        ([_entry(joints=[[1.0, 2.0, 3.0]] * 16)], r"^gen\.json: entry 0: 'joints' must be 16"),
        ([_entry(joints_vis=[1] * 15)], r"^gen\.json: entry 0: 'joints_vis' must be 16"),
        ([_entry(center=["1", 2])], r"^gen\.json: entry 0: 'center' must be \[x, y\]"),
        ([_entry(scale=None)], r"^gen\.json: entry 0: 'scale' must be a number"),
        ([_entry(scale=[1.0])], r"^gen\.json: entry 0: 'scale' must be a number"),
        ([_entry(scale=0)], r"^gen\.json: entry 0: 'center' must be finite and 'scale' positive"),
        ([_entry(), _entry(image="")], r"^gen\.json: entry 1: 'image' must be a non-empty"),
        (
            [_entry(), _entry(image="gone.jpg")],
            r"^gen\.json: entry 1: image 'gone.jpg'.*not found",
        ),
        (
            [_entry(image="../a.jpg")],
            r"^gen\.json: entry 0: image '../a.jpg' must be a relative",
        ),
    ],
)
def test_bad_input_names_the_file_and_entry(images: Path, entries: Any, words: str) -> None:
    with pytest.raises(DataError, match=words) as caught:
        mpii_to_coco(entries, "gen.json", images)
    assert "\n" not in str(caught.value)


def test_is_mpii_entries_rejects_other_shapes() -> None:
    assert is_mpii_entries([_entry()])
    assert not is_mpii_entries([])
    assert not is_mpii_entries({"images": [], "annotations": []})
    assert not is_mpii_entries([1, 2])
    assert not is_mpii_entries([{k: v for k, v in _entry().items() if k != "scale"}])


# --- PCKh --------------------------------------------------------------------------------------


def _people(count: int) -> np.ndarray:
    """(count, 16, 3) labelled ground truth at whole-pixel positions."""
    gt = np.ones((count, 16, 3))
    gt[:, :, 0] = 100 + 10 * np.arange(16)
    gt[:, :, 1] = 200 + 5 * np.arange(count)[:, None]
    return gt


def test_perfect_predictions_score_one() -> None:
    gt = _people(3)
    assert mpii_pckh(gt[:, :, :2], gt, np.full(3, 20.0)) == {key: 1.0 for key in TABLE_KEYS}


def test_hand_computed_table() -> None:
    # head size 20: PCKh@0.5 counts errors strictly below 10 px, PCKh@0.1 below 2 px
    gt = _people(1)
    errors = {9: 0.0, 12: 9.9, 13: 10.0, 11: 10.1, 14: 10.1, 10: 0.0, 15: 0.0, 2: 1.9, 3: 2.1,
              1: 5.0, 4: 15.0, 0: 0.0, 5: 30.0, 6: 100.0, 7: 100.0, 8: 0.0}  # fmt: skip
    pred = gt[:, :, :2].copy()
    for joint, error in errors.items():
        pred[0, joint, 0] += error
    table = mpii_pckh(pred, gt, np.array([20.0]))
    assert table == pytest.approx(
        {
            "Head": 1.0,
            "Shoulder": 0.5,  # 9.9 in, exactly 10.0 out (strict)
            "Elbow": 0.0,
            "Wrist": 1.0,
            "Hip": 1.0,
            "Knee": 0.5,
            "Ankle": 0.5,
            # 9 of the 14 joints other than pelvis and thorax (both wrong, not counted)
            "PCKh": 9 / 14,
            # within 2 px: head_top, both wrists, right hip (1.9), right ankle, upper_neck
            "PCKh@0.1": 6 / 14,
        }
    )
    assert mpii_pckh(pred, gt, np.array([20.0]), threshold=0.1)["PCKh"] == pytest.approx(6 / 14)


def test_mean_weights_joints_by_their_labelled_count() -> None:
    gt = _people(2)
    gt[1, :, 2] = 0
    gt[1, 5, 2] = 1  # the second person has only a left ankle, predicted 50 px off
    pred = gt[:, :, :2].copy()
    pred[1, 5, 0] += 50
    table = mpii_pckh(pred, gt, np.array([20.0, 20.0]))
    assert table["Ankle"] == pytest.approx((1.0 + 0.5) / 2)
    assert table["PCKh"] == pytest.approx(14 / 15)  # not the plain mean of joints, 13.5 / 14


def test_unlabelled_joints_and_unusable_head_sizes_are_ignored() -> None:
    gt = _people(4)
    pred = gt[:, :, :2].copy()
    gt[0, 4, 2] = 0  # unlabelled left knee, predicted far off: ignored
    pred[0, 4] += 500
    pred[1:] += 500  # persons 1..3: no usable head size, all predictions far off
    table = mpii_pckh(pred, gt, np.array([20.0, math.nan, 0.0, math.inf]))
    assert table == {key: 1.0 for key in TABLE_KEYS}


def test_a_part_never_labelled_is_nan_and_one_side_stands_for_its_part() -> None:
    gt = _people(1)
    gt[0, [0, 10, 15], 2] = 0  # no right ankle, no wrists
    table = mpii_pckh(gt[:, :, :2], gt, np.array([20.0]))
    assert math.isnan(table["Wrist"])
    assert table["Ankle"] == 1.0 and table["PCKh"] == 1.0
    all_nan = mpii_pckh(gt[:, :, :2], gt, np.array([math.nan]))
    assert all(math.isnan(value) for value in all_nan.values())


def test_pckh_rejects_bad_shapes() -> None:
    gt = _people(2)
    with pytest.raises(ValueError, match="pred"):
        mpii_pckh(gt[:, :15, :2], gt, np.ones(2))
    with pytest.raises(ValueError, match="head sizes"):
        mpii_pckh(gt[:, :, :2], gt, np.ones(3))
    with pytest.raises(ValueError, match="threshold"):
        mpii_pckh(gt[:, :, :2], gt, np.ones(2), threshold=-1)
