"""The synthetic data set: determinism, COCO validity, labels that match the rendering."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from posekit.data.synthetic import generate as synthetic
from posekit.data.synthetic.figures import KP, Figure, Placement, make_figure
from posekit.data.synthetic.generate import (
    SceneParams,
    SyntheticPaths,
    generate_synthetic,
    parse_size,
    render_scene,
    run_synth,
)
from posekit.data.synthetic.scene import render_figures
from posekit.data.synthetic.shapes import draw_shapes
from posekit.errors import ConfigError, UserError
from posekit.schema import COCO17, COCO17_KEYPOINTS, COCO17_SKELETON

SIZE = (256, 256)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> SyntheticPaths:
    params = SceneParams(crowd_prob=0.5)  # make sure the crowd path is exercised
    out = tmp_path_factory.mktemp("synthetic")
    return generate_synthetic(out, num_train=24, num_val=6, seed=3, params=params)


def _quiet_coco(path: Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def _evaluate(coco: COCO, results: list[dict], iou_type: str) -> float:
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation = COCOeval(coco, coco.loadRes(results), iou_type)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return float(evaluation.stats[0])


def _files(root: Path) -> dict[str, bytes]:
    paths = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in paths}


def _keypoints(annotation: dict) -> np.ndarray:
    return np.asarray(annotation["keypoints"], dtype=np.float64).reshape(-1, 3)


def test_same_seed_same_bytes_and_chunking_does_not_matter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generate_synthetic(tmp_path / "a", num_train=6, num_val=2, seed=7)
    monkeypatch.setattr(synthetic, "CHUNK_IMAGES", 3)  # three chunks over a pool of two
    generate_synthetic(tmp_path / "b", num_train=6, num_val=2, seed=7, workers=2)
    generate_synthetic(tmp_path / "c", num_train=6, num_val=2, seed=8)
    first, second, other = (_files(tmp_path / name) for name in "abc")
    assert len(first) == 6 + 2 + 2 + 1  # images, two JSONs, the stamp
    assert first == second
    assert first["train.json"] != other["train.json"]
    assert all(first[name] != other[name] for name in first if name.endswith(".jpg"))


def test_layout_ids_and_category(dataset: SyntheticPaths) -> None:
    train = json.loads(dataset.train_labels.read_text())
    val = json.loads(dataset.val_labels.read_text())
    assert [image["id"] for image in train["images"]] == list(range(1, 25))
    assert [image["id"] for image in val["images"]] == list(range(1_000_001, 1_000_007))
    assert train["images"][0]["file_name"] == "000000000001.jpg"
    for split, images_dir in ((train, dataset.train_images), (val, dataset.val_images)):
        for image in split["images"]:
            pixels = cv2.imread(str(images_dir / image["file_name"]))
            assert pixels.shape == (image["height"], image["width"], 3)
    category = train["categories"][0]
    assert category["name"] == "person" and category["id"] == 1
    assert category["keypoints"] == list(COCO17_KEYPOINTS)
    assert category["skeleton"] == [[a + 1, b + 1] for a, b in COCO17_SKELETON]
    assert category["skeleton"][0] == [16, 14]  # COCO's own first limb
    train_ids = {a["id"] for a in train["annotations"]}
    assert len(train_ids) == len(train["annotations"])
    assert train_ids.isdisjoint(a["id"] for a in val["annotations"])


def test_ground_truth_scores_ap_one_in_pycocotools(dataset: SyntheticPaths) -> None:
    coco = _quiet_coco(dataset.train_labels)
    annotations = coco.loadAnns(coco.getAnnIds())
    assert any(a["iscrowd"] for a in annotations), "expected at least one crowd region"
    people = [a for a in annotations if not a["iscrowd"]]
    assert len(people) >= 24
    # COCO quirk: people without labelled keypoints and crowd regions are ignored as ground
    # truth, so they must not appear as detections either.
    keypoint_results = [
        {"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
        for a in people
        if a["num_keypoints"] > 0
    ]
    box_results = [
        {"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 1.0}
        for a in people
    ]
    assert _evaluate(coco, keypoint_results, "keypoints") == pytest.approx(1.0)
    assert _evaluate(coco, box_results, "bbox") == pytest.approx(1.0)


def test_annotations_are_consistent(dataset: SyntheticPaths) -> None:
    coco = _quiet_coco(dataset.train_labels)
    for annotation in coco.loadAnns(coco.getAnnIds()):
        image = coco.imgs[annotation["image_id"]]
        keypoints = _keypoints(annotation)
        mask = coco.annToMask(annotation)
        x, y, w, h = annotation["bbox"]
        assert (keypoints[:, 2] == 0).sum() + annotation["num_keypoints"] == 17
        if annotation["iscrowd"]:
            assert mask.sum() == annotation["area"]
            assert annotation["num_keypoints"] == 0 and not keypoints.any()
            continue
        assert abs(mask.sum() / annotation["area"] - 1.0) < 0.15  # polygons vs pixels
        rows, cols = np.nonzero(mask)
        assert abs(cols.min() - x) <= 1 and abs(cols.max() + 1 - (x + w)) <= 1
        assert abs(rows.min() - y) <= 1 and abs(rows.max() + 1 - (y + h)) <= 1
        labelled = keypoints[:, 2] > 0
        assert (keypoints[~labelled, :2] == 0).all()
        assert _inside(keypoints[labelled, :2], (image["width"], image["height"])).all()
        visible = keypoints[keypoints[:, 2] == 2, :2]
        assert (visible[:, 0] >= x - 1).all() and (visible[:, 0] <= x + w + 1).all()
        assert (visible[:, 1] >= y - 1).all() and (visible[:, 1] <= y + h + 1).all()


def _inside(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    x, y = points.T
    return (x >= 0) & (x < size[0]) & (y >= 0) & (y < size[1])


def _silhouette(figure: Figure, size: tuple[int, int]) -> np.ndarray:
    labels = np.zeros((size[1], size[0]), dtype=np.uint8)
    draw_shapes(np.zeros((size[1], size[0], 3), dtype=np.uint8), figure.shapes, labels, 1)
    return labels.astype(bool)


def overlapping_pair(seed: int) -> tuple[Figure, Figure]:
    """Two front-facing people, the nearer one standing half across the farther one."""
    rng = np.random.default_rng(seed)
    behind = make_figure(rng, Placement(190.0, (110.0, 128.0)), pose_kind="stand")
    in_front = make_figure(rng, Placement(200.0, (150.0, 135.0)), pose_kind="wide")
    return behind, in_front


def _expected_visibility(figure: Figure, cover: np.ndarray, label_hidden_face: bool) -> np.ndarray:
    """What the rendering says: 2 visible, 1 under ``cover`` (or own head), 0 unlabelled."""
    inside = _inside(figure.keypoints, SIZE)
    cols, rows = np.clip(np.floor(figure.keypoints).astype(int), 0, SIZE[0] - 1).T
    visibility = np.where(cover[rows, cols] | figure.self_occluded, 1, 2)
    labelled = inside & (label_hidden_face | ~figure.self_occluded)
    return np.where(labelled, visibility, 0)


@pytest.mark.parametrize("label_hidden_face", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_covered_keypoints_are_v1(seed: int, label_hidden_face: bool) -> None:
    behind, in_front = overlapping_pair(seed)
    _, people = render_figures(SIZE, [behind, in_front], label_hidden_face=label_hidden_face)
    nothing = np.zeros((SIZE[1], SIZE[0]), dtype=bool)
    covered = _expected_visibility(behind, _silhouette(in_front, SIZE), label_hidden_face)
    assert (_keypoints(people[0])[:, 2] == covered).all()
    assert (covered == 1).sum() >= 2, "the test scene should hide some keypoints"
    front = _expected_visibility(in_front, nothing, label_hidden_face)
    assert (_keypoints(people[1])[:, 2] == front).all()
    assert people[0]["area"] < _silhouette(behind, SIZE).sum()  # visible part only


def test_faces_seen_from_behind_are_unlabelled_unless_asked() -> None:
    figure = make_figure(np.random.default_rng(4), Placement(200.0, (128.0, 128.0), facing=-1))
    face = [KP[name] for name in ("nose", "left_eye", "right_eye")]
    default = _keypoints(render_figures(SIZE, [figure])[1][0])
    assert (default[face] == 0).all()
    labelled = _keypoints(render_figures(SIZE, [figure], label_hidden_face=True)[1][0])
    assert (labelled[face, 2] == 1).all() and (labelled[face, :2] > 0).all()


def test_out_of_frame_keypoints_are_v0() -> None:
    rng = np.random.default_rng(5)
    figure = make_figure(rng, Placement(220.0, (8.0, 40.0)), pose_kind="stand")
    _, people = render_figures(SIZE, [figure])
    keypoints = _keypoints(people[0])
    outside = ~_inside(figure.keypoints, SIZE)
    assert outside.any() and (~outside).any()
    assert (keypoints[outside] == 0).all()
    assert (keypoints[~outside & ~figure.self_occluded, 2] > 0).all()


@pytest.mark.parametrize("seed", range(6))
def test_left_is_on_the_image_right_for_front_facing_people(seed: int) -> None:
    rng = np.random.default_rng(seed)
    front = make_figure(rng, Placement(200.0, (128.0, 128.0), 0.0, facing=1), pose_kind="stand")
    back = make_figure(rng, Placement(200.0, (128.0, 128.0), 0.0, facing=-1), pose_kind="stand")
    for joint in ("shoulder", "hip", "eye", "ear", "knee"):
        left, right = KP[f"left_{joint}"], KP[f"right_{joint}"]
        assert front.keypoints[left, 0] > front.keypoints[right, 0]
        assert back.keypoints[left, 0] < back.keypoints[right, 0]
    assert not front.self_occluded[KP["nose"]] and back.self_occluded[KP["nose"]]


@pytest.mark.parametrize("seed", range(4))
def test_horizontal_flip_with_flip_pairs_keeps_labels_on_their_body_parts(seed: int) -> None:
    rng = np.random.default_rng(seed)
    figure = make_figure(rng, Placement(200.0, (128.0, 128.0)), pose_kind="stand")
    image, people = render_figures(SIZE, [figure])
    keypoints = _keypoints(people[0])
    flipped_image = cv2.flip(image, 1)
    flipped = keypoints[COCO17.flip_index()].copy()
    flipped[:, 0] = SIZE[0] - flipped[:, 0]  # pixel centres at +0.5: x -> width - x
    assert flipped[KP["left_shoulder"], 0] > flipped[KP["right_shoulder"], 0]
    for original, mirrored in zip(keypoints, flipped[COCO17.flip_index()], strict=True):
        if original[2] == 2 and original[0] % 1 != 0:  # floor(w - x) = w - 1 - floor(x)
            col, row = np.floor(original[:2]).astype(int)
            mirrored_col, mirrored_row = np.floor(mirrored[:2]).astype(int)
            assert (image[row, col] == flipped_image[mirrored_row, mirrored_col]).all()


def test_render_scene_is_a_function_of_its_generator() -> None:
    params = SceneParams()
    first = render_scene(np.random.default_rng([1, 0, 5]), (128, 96), params)
    second = render_scene(np.random.default_rng([1, 0, 5]), (128, 96), params)
    assert first[0].shape == (96, 128, 3) and first[0].dtype == np.uint8
    assert (first[0] == second[0]).all() and first[1] == second[1]


def test_scene_params_are_validated() -> None:
    with pytest.raises(ConfigError, match="people"):
        SceneParams(people=(3, 1))
    with pytest.raises(ConfigError, match="crowd_prob"):
        SceneParams(crowd_prob=1.5)


@pytest.mark.parametrize("bad", ["256", "axb", "0x256", "256x", "-5x3", "", "256x256x3"])
def test_run_synth_rejects_a_bad_size(tmp_path: Path, bad: str) -> None:
    with pytest.raises(UserError) as caught:
        run_synth(str(tmp_path), images=2, size=bad)
    assert "\n" not in str(caught.value) and "--size" in str(caught.value)
    assert not any(tmp_path.iterdir())


def test_run_synth_writes_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert parse_size(" 64X48 ") == (64, 48)
    assert run_synth(str(tmp_path / "out"), images=3, size="64x48", seed=2, val=1) == 0
    report = capsys.readouterr().out
    assert "3 train + 1 val images" in report and "images/s" in report and "train.json" in report
    labels = json.loads((tmp_path / "out" / "train.json").read_text())
    assert {(image["width"], image["height"]) for image in labels["images"]} == {(64, 48)}
    pixels = cv2.imread(str(tmp_path / "out" / "val" / "000001000001.jpg"))
    assert pixels.shape == (48, 64, 3)
    with pytest.raises(UserError):
        run_synth(str(tmp_path / "none"), images=0)


def test_stamp_tells_whether_a_folder_is_current(tmp_path: Path) -> None:
    from posekit.data.synthetic.generate import synthetic_is_current

    assert not synthetic_is_current(tmp_path, 2, 1, (64, 64), 0)
    generate_synthetic(tmp_path, 2, 1, (64, 64), seed=0)
    assert synthetic_is_current(tmp_path, 2, 1, (64, 64), 0)
    assert not synthetic_is_current(tmp_path, 2, 1, (64, 64), 1)
    assert not synthetic_is_current(tmp_path, 3, 1, (64, 64), 0)
