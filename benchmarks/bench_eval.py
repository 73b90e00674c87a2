"""COCO keypoint evaluation speed: posekit (faster-coco-eval backend) against pycocotools.

A generated set of 5,000 images and 12,000 people (ground truth written to a temporary
JSON file) and perturbed detections (~90 % of the people with noise, plus false
positives). Both sides start from the JSON path and the results list; seconds are the
median of ``--repeats`` runs. The stats must agree (faster-coco-eval differs from
pycocotools by at most a few ulps; see posekit.evaluation). Prints one JSON line:
{"name": "eval_coco", "value" (s), "unit", "baseline", "ratio", "identical", ...}.

    .venv/bin/python benchmarks/bench_eval.py [--images 5000 --people 12000 --repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from posekit.evaluation import KEYPOINT_STATS, evaluate_keypoints
from posekit.schema import COCO17

IMAGE_WH = (640, 480)
TOLERANCE = 1e-12


def make_ground_truth(images: int, people: int, rng: np.random.Generator) -> dict:
    """Every image has at least one person; boxes of 20-300 px width; 17 keypoints."""
    owner = np.sort(np.concatenate([np.arange(images), rng.integers(0, images, people - images)]))
    annotations = []
    for ann_id, image_id in enumerate(owner.tolist(), start=1):
        width = rng.uniform(20, 300)
        height = min(width * rng.uniform(1.5, 2.5), IMAGE_WH[1] - 1)
        x0 = rng.uniform(0, IMAGE_WH[0] - width)
        y0 = rng.uniform(0, IMAGE_WH[1] - height)
        points = np.zeros((17, 3))
        points[:, 0] = rng.uniform(x0, x0 + width, 17)
        points[:, 1] = rng.uniform(y0, y0 + height, 17)
        points[:, 2] = rng.choice([0, 1, 2], size=17, p=[0.2, 0.1, 0.7])
        points[points[:, 2] == 0, :2] = 0
        annotations.append({
            "id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0,
            "bbox": [x0, y0, width, height], "area": 0.6 * width * height,
            "keypoints": np.round(points, 2).ravel().tolist(),
            "num_keypoints": int(np.count_nonzero(points[:, 2])),
        })  # fmt: skip
    return {
        "images": [{"id": i, "width": IMAGE_WH[0], "height": IMAGE_WH[1]} for i in range(images)],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person", "keypoints": list(COCO17.keypoints)}],
    }


def make_detections(gt: dict, rng: np.random.Generator) -> list[dict]:
    results = []
    for ann in gt["annotations"]:
        if rng.random() < 0.1:
            continue
        points = np.array(ann["keypoints"]).reshape(17, 3)
        spread = rng.uniform(1, 0.1 * np.sqrt(ann["area"]) + 1)
        points[:, :2] += rng.normal(0, spread, (17, 2))
        points[:, 2] = rng.random(17)
        results.append(_result(ann["image_id"], points, rng.random()))
    for image in gt["images"]:
        if rng.random() < 0.3:
            points = rng.uniform(0, [*IMAGE_WH, 1], (17, 3))
            results.append(_result(image["id"], points, 0.5 * rng.random()))
    return results


def _result(image_id: int, points: np.ndarray, score: float) -> dict:
    return {"image_id": image_id, "category_id": 1, "keypoints": points.ravel().tolist(),
            "score": float(score)}  # fmt: skip


def pycocotools_stats(gt_path: Path, results: list[dict]) -> np.ndarray:
    """The documented pycocotools flow, from the annotation file."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(gt_path))
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(copy.copy(results)), "keypoints")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return np.asarray(evaluator.stats)


def median_seconds(function, repeats: int) -> tuple[float, object]:
    times, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = function()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--people", type=int, default=12000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    gt = make_ground_truth(args.images, args.people, rng)
    results = make_detections(gt, rng)
    sigmas = COCO17.sigmas_array()
    with tempfile.TemporaryDirectory() as folder:
        gt_path = Path(folder) / "gt.json"
        gt_path.write_bytes(orjson.dumps(gt))
        value, ours = median_seconds(
            lambda: evaluate_keypoints(gt_path, results, sigmas, backend="fast"), args.repeats
        )
        baseline, reference = median_seconds(
            lambda: pycocotools_stats(gt_path, results), args.repeats
        )
    difference = float(np.abs(np.array([ours[k] for k in KEYPOINT_STATS]) - reference).max())
    assert difference <= TOLERANCE, (ours, reference)
    print(json.dumps({
        "name": "eval_coco", "value": round(value, 3), "unit": "s",
        "baseline": round(baseline, 3), "ratio": round(baseline / value, 2),
        "identical": difference <= TOLERANCE, "max_abs_diff": difference,
        "AP": ours["AP"], "images": args.images, "people": args.people,
        "detections": len(results),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
