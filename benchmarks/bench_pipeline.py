"""Detector + top-down pose on the synthetic validation images, as ``posekit predict
--detector D --pose P`` runs them: are the right people found and posed?

For each image, the people found (box score ≥ the threshold) are matched one-to-one to the
labelled people by box IoU (≥ 0.5); reported are recall and precision of the people, the
mean IoU of matched boxes, the mean OKS of their keypoints (COCO sigmas), the keypoint AP of
the whole pipeline on these images, and seconds per image. Drawn images go to ``--out``.

    .venv/bin/python benchmarks/bench_pipeline.py --detector DET.pth --pose POSE.pth \
        [--images 50] [--out predictions/pipeline]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from posekit.commands.loaded_model import load_model
from posekit.commands.predict import DetectThenPose
from posekit.commands.train import ensure_synthetic_data
from posekit.config import load_config
from posekit.data.coco import load_coco_keypoints
from posekit.data.images import read_image
from posekit.detector.augment import box_iou_np
from posekit.drawing import write_jpeg
from posekit.evaluation import evaluate_keypoints, keypoint_results
from posekit.schema import load_schema


def xyxy(boxes: np.ndarray) -> np.ndarray:  # (N, 4) x, y, w, h -> x0, y0, x1, y1
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)


def oks(found: np.ndarray, truth: np.ndarray, area: float, sigmas: np.ndarray) -> float:
    labelled = truth[:, 2] > 0
    if not labelled.any():
        return float("nan")
    squared = ((found[:, :2] - truth[:, :2]) ** 2).sum(1)
    similarity = np.exp(-squared / (2 * area * (2 * sigmas) ** 2 + np.spacing(1)))
    return float(similarity[labelled].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", required=True)
    parser.add_argument("--pose", required=True)
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--box-threshold", type=float, default=0.3)
    parser.add_argument("--out", default=None, help="write the drawn images here")
    args = parser.parse_args()
    cfg = ensure_synthetic_data(load_config(None, []), say=lambda _: None)
    schema = load_schema("coco17")
    data = load_coco_keypoints(cfg.data.val.labels, cfg.data.val.images, schema)
    pipeline = DetectThenPose(load_model(args.detector), load_model(args.pose), args.box_threshold)
    sigmas = schema.sigmas_array()
    truths = found_count = matched = 0
    ious, similarities, results, seconds = [], [], [], []
    for record in data.images[: args.images]:
        image = read_image(data.image_path(record))
        started = time.perf_counter()
        drawn, people = pipeline.predict_drawn(image)
        seconds.append(time.perf_counter() - started)
        if args.out:
            write_jpeg(Path(args.out) / f"{record.image_id}.jpg", drawn)
        boxes = np.array([p["bbox"] for p in people]).reshape(-1, 4)
        keypoints = np.array([p["keypoints"] for p in people]).reshape(-1, schema.num_keypoints, 3)
        results.extend(
            keypoint_results(record.image_id, keypoints, np.array([p["score"] for p in people]))
        )
        truths += record.num_persons
        found_count += len(people)
        if not len(people) or not record.num_persons:
            continue
        iou = box_iou_np(xyxy(boxes), xyxy(record.boxes))
        rows, cols = linear_sum_assignment(-iou)
        for r, c in zip(rows, cols, strict=True):
            if iou[r, c] >= 0.5:
                matched += 1
                ious.append(iou[r, c])
                similarities.append(oks(keypoints[r], record.keypoints[c], record.areas[c], sigmas))
    evaluated = {r.image_id for r in data.images[: args.images]}
    ground_truth = json.loads(Path(cfg.data.val.labels).read_text())
    ground_truth["images"] = [i for i in ground_truth["images"] if i["id"] in evaluated]
    ground_truth["annotations"] = [
        a for a in ground_truth["annotations"] if a["image_id"] in evaluated
    ]
    metrics = evaluate_keypoints(ground_truth, results, sigmas)
    print(
        json.dumps(
            {
                "benchmark": "detector_then_pose",
                "images": len(seconds),
                "people_labelled": truths,
                "people_found": found_count,
                "recall_iou50": round(matched / max(truths, 1), 4),
                "precision_iou50": round(matched / max(found_count, 1), 4),
                "mean_box_iou": round(float(np.mean(ious)), 4) if ious else None,
                "mean_oks": round(float(np.nanmean(similarities)), 4) if similarities else None,
                "keypoint_AP": round(metrics["AP"], 4),
                "seconds_per_image_median": round(float(np.median(seconds)), 4),
            }
        )
    )


if __name__ == "__main__":
    main()
