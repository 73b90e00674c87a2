"""COCO evaluation: identical to pycocotools on the real sample; PCK; results files."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import orjson
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from posekit.evaluation import (
    BBOX_STATS,
    KEYPOINT_STATS,
    box_norm,
    evaluate_bboxes,
    evaluate_keypoints,
    format_table,
    keypoint_results,
    pck,
    save_results,
)
from posekit.schema import COCO17

SEEDS = (0, 1, 2, 3, 4)


@pytest.fixture(scope="module")
def coco_gt(real_coco_dir) -> dict:
    return orjson.loads((real_coco_dir / "test_coco.json").read_bytes())


def reference_stats(gt: dict, results: list[dict], iou_type: str, sigmas=None) -> np.ndarray:
    """pycocotools' COCOeval, run the documented way, on private copies."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(results)), iou_type)
        if sigmas is not None:
            evaluator.params.kpt_oks_sigmas = np.asarray(sigmas)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return np.asarray(evaluator.stats)


def perturbed_keypoints(gt: dict, seed: int, num_keypoints: int = 17) -> list[dict]:
    """GT + noise, random scores, ~20 % dropped, plus false positives in every image."""
    rng = np.random.default_rng(seed)
    results = []
    for ann in gt["annotations"]:
        if rng.random() < 0.2:
            continue
        points = np.array(ann["keypoints"], dtype=np.float64).reshape(-1, 3)[:num_keypoints]
        points[:, :2] += rng.normal(0, rng.uniform(1, 15), size=(len(points), 2))
        points[:, 2] = rng.random(len(points))
        results.append(_entry(ann["image_id"], points, rng.random()))
    for image in gt["images"]:
        for _ in range(rng.integers(1, 4)):
            points = rng.uniform(0, [image["width"], image["height"], 1], (num_keypoints, 3))
            results.append(_entry(image["id"], points, rng.random() * 0.5))
    return results


def _entry(image_id: int, points: np.ndarray, score: float) -> dict:
    return {"image_id": image_id, "category_id": 1, "keypoints": points.ravel().tolist(),
            "score": float(score)}  # fmt: skip


def perturbed_boxes(gt: dict, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    results = []
    for ann in gt["annotations"]:
        if rng.random() < 0.2:
            continue
        x, y, w, h = ann["bbox"]
        box = [x + rng.normal(0, 0.05 * w), y + rng.normal(0, 0.05 * h), w * rng.uniform(0.8, 1.2),
               h * rng.uniform(0.8, 1.2)]  # fmt: skip
        results.append({"image_id": ann["image_id"], "category_id": 1, "bbox": box,
                        "score": float(rng.random())})  # fmt: skip
    for image in gt["images"]:
        x, y = rng.uniform(0, image["width"] / 2), rng.uniform(0, image["height"] / 2)
        results.append({"image_id": image["id"], "category_id": 1,
                        "bbox": [x, y, 60.0, 120.0], "score": 0.3})  # fmt: skip
    return results


# faster-coco-eval's C++ accumulate computes a precision of tp / (tp + fp) where
# pycocotools divides by (tp + fp + eps): e.g. 1.0 against 0.9999999999999998.
FAST_TOLERANCE = 1e-12


def assert_identical(stats: dict, reference: np.ndarray, names: tuple[str, ...], backend: str):
    assert list(stats) == list(names)
    values = np.array(list(stats.values()))
    if backend == "pycocotools":
        assert np.array_equal(values, reference), (stats, reference)
    else:
        np.testing.assert_allclose(values, reference, rtol=0, atol=FAST_TOLERANCE)


@pytest.mark.parametrize("backend", ["fast", "pycocotools"])
@pytest.mark.parametrize("seed", SEEDS)
def test_keypoint_stats_identical_to_pycocotools(coco_gt, seed, backend):
    results = perturbed_keypoints(coco_gt, seed)
    stats = evaluate_keypoints(coco_gt, results, COCO17.sigmas_array(), backend=backend)
    reference = reference_stats(coco_gt, results, "keypoints")
    assert_identical(stats, reference, KEYPOINT_STATS, backend)
    assert 0 < stats["AP"] < 1


@pytest.mark.parametrize("backend", ["fast", "pycocotools"])
@pytest.mark.parametrize("seed", SEEDS[:3])
def test_bbox_stats_identical_to_pycocotools(coco_gt, seed, backend):
    results = perturbed_boxes(coco_gt, seed)
    stats = evaluate_bboxes(coco_gt, results, backend=backend)
    assert_identical(stats, reference_stats(coco_gt, results, "bbox"), BBOX_STATS, backend)
    assert 0 < stats["AP"] < 1


def test_custom_sigmas_identical_to_pycocotools(coco_gt):
    sigmas = np.full(17, 0.05)
    results = perturbed_keypoints(coco_gt, seed=7)
    stats = evaluate_keypoints(coco_gt, results, sigmas)
    reference = reference_stats(coco_gt, results, "keypoints", sigmas)
    assert_identical(stats, reference, KEYPOINT_STATS, "fast")
    assert stats["AP"] != evaluate_keypoints(coco_gt, results, COCO17.sigmas_array())["AP"]


def test_other_keypoint_count_identical_to_pycocotools(coco_gt):
    """A 5-keypoint data set (the face points of the sample) with its own sigmas."""
    gt = copy.deepcopy(coco_gt)
    for ann in gt["annotations"]:
        ann["keypoints"] = ann["keypoints"][:15]
        ann["num_keypoints"] = sum(v > 0 for v in ann["keypoints"][2::3])
    sigmas = np.array([0.026, 0.025, 0.025, 0.035, 0.035])
    results = perturbed_keypoints(gt, seed=3, num_keypoints=5)
    for backend in ("fast", "pycocotools"):
        stats = evaluate_keypoints(gt, results, sigmas, backend=backend)
        reference = reference_stats(gt, results, "keypoints", sigmas)
        assert_identical(stats, reference, KEYPOINT_STATS, backend)


@pytest.mark.parametrize("backend", ["fast", "pycocotools"])
def test_ground_truth_against_itself_is_perfect(coco_gt, backend):
    # People without labelled keypoints are ignored by OKS: they are no detections.
    labelled = [a for a in coco_gt["annotations"] if a["num_keypoints"] > 0]
    keypoints = [
        {"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
        for a in labelled
    ]
    boxes = [
        {"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 1.0}
        for a in coco_gt["annotations"]
    ]
    stats = evaluate_keypoints(coco_gt, keypoints, COCO17.sigmas_array(), backend)
    assert stats["AP"] == pytest.approx(1.0, abs=FAST_TOLERANCE)
    assert stats["AR"] == 1.0
    assert evaluate_bboxes(coco_gt, boxes, backend)["AP"] == pytest.approx(1.0, abs=1e-12)


def test_empty_results_give_zeros(coco_gt):
    assert evaluate_keypoints(coco_gt, [], COCO17.sigmas_array()) == dict.fromkeys(
        KEYPOINT_STATS, 0.0
    )
    assert evaluate_bboxes(coco_gt, [], backend="pycocotools") == dict.fromkeys(BBOX_STATS, 0.0)


def test_path_input_and_no_mutation(coco_gt, real_coco_dir):
    gt_before = copy.deepcopy(coco_gt)
    results = perturbed_keypoints(coco_gt, seed=0)
    results_before = copy.deepcopy(results)
    from_dict = evaluate_keypoints(coco_gt, results, COCO17.sigmas_array())
    from_path = evaluate_keypoints(real_coco_dir / "test_coco.json", results, COCO17.sigmas_array())
    assert from_dict == from_path
    assert coco_gt == gt_before and results == results_before


def test_bad_arguments_are_rejected(coco_gt):
    results = perturbed_keypoints(coco_gt, seed=0)
    with pytest.raises(ValueError, match="keypoint values"):
        evaluate_keypoints(coco_gt, results, np.full(18, 0.05))
    with pytest.raises(ValueError, match="backend"):
        evaluate_keypoints(coco_gt, results, COCO17.sigmas_array(), backend="xtcocotools")


def test_evaluation_is_quiet(coco_gt, capsys):
    evaluate_keypoints(coco_gt, perturbed_keypoints(coco_gt, 0), COCO17.sigmas_array(), "fast")
    evaluate_bboxes(coco_gt, perturbed_boxes(coco_gt, 0), backend="pycocotools")
    assert capsys.readouterr().out == ""


def test_format_table():
    stats = dict(zip(KEYPOINT_STATS, np.linspace(0.1, 1.0, 10), strict=True))
    table = format_table(stats)
    lines = table.splitlines()
    assert len(lines) == 4
    assert lines[0].split() == ["AP", "AP50", "AP75", "APm", "APl"]
    assert lines[3].split()[-1] == "1.000"


def test_pck():
    gt = np.zeros((2, 3, 3))
    gt[..., 2] = 1
    gt[1, 2, 2] = 0  # unlabelled: not counted
    pred = np.zeros((2, 3, 2))
    pred[0, 0] = (19, 0)  # within 0.2 × 100
    pred[0, 1] = (21, 0)  # outside
    pred[1, 2] = (500, 500)  # unlabelled
    norm = box_norm(np.array([[0, 0, 100, 50], [0, 0, 10, 100]]))
    np.testing.assert_array_equal(norm, [100, 100])
    assert pck(pred, gt, norm) == pytest.approx(4 / 5)
    assert np.isnan(pck(pred, np.zeros((2, 3, 3)), norm))


def test_keypoint_results_and_atomic_save(tmp_path, coco_gt):
    keypoints = np.random.default_rng(0).uniform(0, 300, size=(2, 17, 3)).astype(np.float32)
    results = keypoint_results(785, keypoints, np.array([0.9, 0.4]))
    assert len(results) == 2 and results[0]["image_id"] == 785
    assert results[0]["category_id"] == 1 and results[1]["score"] == pytest.approx(0.4)
    np.testing.assert_allclose(results[0]["keypoints"], keypoints[0].ravel(), rtol=1e-6)

    path = tmp_path / "out" / "results.json"
    save_results(results, path)
    assert orjson.loads(path.read_bytes()) == results
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]
    stats = evaluate_keypoints(coco_gt, orjson.loads(path.read_bytes()), COCO17.sigmas_array())
    assert set(stats) == set(KEYPOINT_STATS)


def crowded_detections(gt: dict, seed: int) -> list[dict]:
    """25 detections per image (above maxDets=20) with tied scores: order and cut matter."""
    rng = np.random.default_rng(seed)
    by_image: dict[int, list] = {}
    for ann in gt["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    results = []
    for image_id, anns in by_image.items():
        for index in range(25):
            points = np.array(anns[index % len(anns)]["keypoints"], dtype=np.float64)
            points = points.reshape(-1, 3) + rng.normal(0, 6, (17, 3))
            results.append(_entry(image_id, points, rng.choice([0.2, 0.5, 0.9])))
    return results


def test_vectorised_oks_matrices_are_bit_identical_to_pycocotools(coco_gt):
    from faster_coco_eval import COCO as FastCOCO

    from posekit.evaluation import _keypoint_detections, _vectorised_oks_evaluator

    results = crowded_detections(coco_gt, seed=1) + perturbed_keypoints(coco_gt, seed=1)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt_ref = COCO()
        coco_gt_ref.dataset = copy.deepcopy(coco_gt)
        coco_gt_ref.createIndex()
        reference = COCOeval(coco_gt_ref, coco_gt_ref.loadRes(copy.deepcopy(results)), "keypoints")
        reference.evaluate()
    fast_gt = FastCOCO(copy.deepcopy(coco_gt))
    detections = _keypoint_detections(fast_gt, copy.deepcopy(results))
    ours = _vectorised_oks_evaluator()(
        fast_gt, detections, "keypoints", print_function=lambda *a: None
    )
    ours.evaluate()

    assert set(ours.ious) == set(reference.ious)
    for key, expected in reference.ious.items():
        got = np.asarray(ours.ious[key])
        assert got.shape == np.shape(expected)
        assert np.array_equal(got, expected), key


def test_crowded_tied_detections_identical_to_pycocotools(coco_gt):
    results = crowded_detections(coco_gt, seed=2)
    stats = evaluate_keypoints(coco_gt, results, COCO17.sigmas_array())
    reference = reference_stats(coco_gt, results, "keypoints")
    assert_identical(stats, reference, KEYPOINT_STATS, "fast")


def test_unknown_image_ids_are_reported(coco_gt):
    results = perturbed_keypoints(coco_gt, seed=0)
    results[0] = {**results[0], "image_id": 123456789}
    with pytest.raises(ValueError, match="123456789"):
        evaluate_keypoints(coco_gt, results, COCO17.sigmas_array())
