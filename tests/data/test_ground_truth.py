"""One ground truth: evaluation scores against the records the loader accepted, and equals
pycocotools on the file (after the loader's documented repairs) for every real sample."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from posekit.data.coco import CocoKeypoints, load_coco_keypoints
from posekit.data.ground_truth import (
    keypoint_ground_truth,
    metric_name,
    score_keypoint_results,
    single_category_id,
)
from posekit.data.sources import mapping_by_names, remap_data
from posekit.data.training_labels import load_training_labels
from posekit.evaluation import evaluate_keypoints
from posekit.schema import COCO17, load_schema

from ..conftest import real_sample

# (labels under ../shared/data/real, images root, schema, annotation fields of the keypoints)
WHOLEBODY = ("keypoints", "foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts")
REAL_SETS = {
    "coco": ("coco/test_coco.json", "coco", "coco17", ("keypoints",)),
    "coco_wholebody": ("coco/test_coco_wholebody.json", "coco", "coco_wholebody", WHOLEBODY),
    "coco_wholebody_body": ("coco/test_coco_wholebody.json", "coco", "coco17", ("keypoints",)),
    "crowdpose": ("crowdpose/test_crowdpose.json", "crowdpose", "crowdpose", ("keypoints",)),
    "aic": ("aic/test_aic.json", "aic", "aic", ("keypoints",)),
    "ap10k": ("ap10k/test_ap10k.json", "ap10k", "ap10k", ("keypoints",)),
    "macaque": ("macaque/test_macaque.json", "macaque", "macaque", ("keypoints",)),
    "posetrack18": (
        "posetrack18/annotations/test_posetrack18_val.json", "posetrack18", "posetrack18",
        ("keypoints",),
    ),
    "humanart": (
        "humanart/annotations/test_humanart.json", "humanart", "coco17", ("keypoints",),
    ),
    "humanart21": (
        "humanart/annotations/test_humanart.json", "humanart", "humanart21", ("keypoints_21",),
    ),
}  # fmt: skip


def _real(name: str) -> tuple[Path, Path, str, tuple[str, ...]]:
    labels, images, schema, fields = REAL_SETS[name]
    return real_sample(labels), real_sample(images), schema, fields


def repaired_file(raw: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """The file as COCO defines it, written here independently of posekit: keypoints joined
    from ``fields``, area from the segmentation (else the box), num_keypoints recounted,
    unlabelled frames left out, PoseTrack's image ignore regions as crowd annotations."""
    data = copy.deepcopy(raw)
    sizes = {i["id"]: (i["height"], i["width"]) for i in data["images"]}
    dropped = {i["id"] for i in data["images"] if i.get("is_labeled") is False}
    data["images"] = [i for i in data["images"] if i["id"] not in dropped]
    annotations = [a for a in data["annotations"] if a["image_id"] not in dropped]
    next_id = max(a["id"] for a in annotations) + 1
    for ann in annotations:
        ann["keypoints"] = [v for f in fields for v in ann[f]]
        ann["iscrowd"] = int(bool(ann.get("iscrowd", 0)))
        if not ann["iscrowd"]:
            ann["num_keypoints"] = sum(1 for v in ann["keypoints"][2::3] if v > 0)
        ann.setdefault("num_keypoints", 0)  # a crowd region's (COCOeval reads it)
        if ann.get("area") is None:
            segmentation = ann.get("segmentation")
            if segmentation:
                height, width = sizes[ann["image_id"]]
                rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
                ann["area"] = float(mask_utils.area(rle))
            else:
                ann["area"] = ann["bbox"][2] * ann["bbox"][3]
    for image in data["images"]:
        regions = zip(
            image.get("ignore_regions_x", []), image.get("ignore_regions_y", []), strict=True
        )
        for xs, ys in regions:
            polygon = [float(v) for xy in zip(xs, ys, strict=True) for v in xy]
            rle = mask_utils.frPyObjects([polygon], image["height"], image["width"])[0]
            annotations.append({
                "id": next_id, "image_id": image["id"], "category_id": 1, "iscrowd": 1,
                "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)],
                "area": float(mask_utils.area(rle)), "num_keypoints": 0,
                "keypoints": [0] * len(annotations[0]["keypoints"]),
            })  # fmt: skip
            next_id += 1
    data["annotations"] = annotations
    return data


def gt_as_predictions(repaired: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"image_id": a["image_id"], "category_id": a["category_id"],
         "keypoints": a["keypoints"], "score": 1.0}
        for a in repaired["annotations"] if not a.get("iscrowd") and a["num_keypoints"] > 0
    ]  # fmt: skip


def noisy(results: list[dict[str, Any]], seed: int = 0) -> list[dict[str, Any]]:
    """Ground truth moved by a few pixels, with scores, a spurious person, a missed one."""
    rng = np.random.default_rng(seed)
    out = []
    for entry in results[1:]:
        points = np.asarray(entry["keypoints"], dtype=np.float64).reshape(-1, 3)
        points[:, :2] += rng.normal(0, 6, points[:, :2].shape)
        points[:, 2] = rng.uniform(0.2, 1, len(points))
        out.append({**entry, "keypoints": points.reshape(-1).tolist(),
                    "score": float(rng.uniform(0.3, 1))})  # fmt: skip
    spurious = np.asarray(results[0]["keypoints"], np.float64).reshape(-1, 3)
    spurious[:, :2] += (40, 30)
    out.append({**results[0], "keypoints": spurious.reshape(-1).tolist(), "score": 0.5})
    return out


def load_real(name: str) -> tuple[CocoKeypoints, dict[str, Any]]:
    labels, images, schema, fields = _real(name)
    data = load_training_labels(labels, images, load_schema(schema))
    return data, repaired_file(json.loads(labels.read_text()), fields)


@pytest.mark.parametrize("name", sorted(REAL_SETS))
def test_ground_truth_as_predictions_scores_ap_one(name: str) -> None:
    data, repaired = load_real(name)
    stats = score_keypoint_results(data, gt_as_predictions(repaired))
    assert stats["AP"] == pytest.approx(1.0, abs=1e-12)
    assert stats["AR"] == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("backend", ["fast", "pycocotools"])
@pytest.mark.parametrize("name", sorted(REAL_SETS))
def test_stats_equal_pycocotools_on_the_repaired_file(name: str, backend: str) -> None:
    data, repaired = load_real(name)
    results = noisy(gt_as_predictions(repaired))
    ours = score_keypoint_results(data, results, backend=backend)
    reference = evaluate_keypoints(
        repaired, results, data.schema.sigmas_array(), backend="pycocotools"
    )
    assert 0.0 < reference["AP"] < 1.0
    assert ours == pytest.approx(reference, abs=1e-12)


def test_ground_truth_keeps_ids_categories_areas_and_crowds() -> None:
    data, repaired = load_real("coco")
    built = keypoint_ground_truth(data)
    by_id = {a["id"]: a for a in built["annotations"]}
    assert sorted(by_id) == sorted(a["id"] for a in repaired["annotations"])
    for ann in repaired["annotations"]:
        ours = by_id[ann["id"]]
        assert ours["iscrowd"] == ann["iscrowd"]
        assert ours["num_keypoints"] == ann["num_keypoints"]
        assert ours["area"] == pytest.approx(ann["area"], rel=1e-6)
    assert [c["id"] for c in built["categories"]] == [1]


def test_missing_null_area_and_num_keypoints_are_repaired(real_coco_dir: Path, tmp_path: Path):
    raw = json.loads((real_coco_dir / "test_coco.json").read_text())
    for index, ann in enumerate(raw["annotations"]):
        if index % 3 == 0:
            del ann["area"]
        elif index % 3 == 1:
            ann["area"] = None
        del ann["num_keypoints"]
    labels = tmp_path / "quirky.json"
    labels.write_text(json.dumps(raw))
    data = load_coco_keypoints(labels, real_coco_dir, COCO17)
    assert {r.kind for r in data.repairs} == {"area_filled", "num_keypoints_recounted"}
    original = json.loads((real_coco_dir / "test_coco.json").read_text())
    results = noisy(gt_as_predictions(repaired_file(original, ("keypoints",))))
    assert score_keypoint_results(data, results) == pytest.approx(
        evaluate_keypoints(original, results, COCO17.sigmas, backend="pycocotools"), abs=1e-6
    )  # polygon mask areas against COCO's stored ones: within rounding of the file's values


def test_another_category_id_scores_one(real_coco_dir: Path, tmp_path: Path) -> None:
    raw = json.loads((real_coco_dir / "test_coco.json").read_text())
    raw["categories"][0]["id"] = 7
    for ann in raw["annotations"]:
        ann["category_id"] = 7
    labels = tmp_path / "seven.json"
    labels.write_text(json.dumps(raw))
    data = load_coco_keypoints(labels, real_coco_dir, COCO17)
    assert single_category_id(data) == 7
    results = gt_as_predictions(repaired_file(raw, ("keypoints",)))
    assert {r["category_id"] for r in results} == {7}
    assert score_keypoint_results(data, results)["AP"] == pytest.approx(1.0)


def test_many_categories_score_one_with_their_ids_or_without_categories() -> None:
    data, repaired = load_real("ap10k")
    assert len(data.categories) == 54 and single_category_id(data) is None
    results = gt_as_predictions(repaired)
    assert {r["category_id"] for r in results} == {1, 26}
    assert score_keypoint_results(data, results)["AP"] == pytest.approx(1.0)
    anonymous = [{**r, "category_id": 1} for r in results]
    assert score_keypoint_results(data, anonymous, use_categories=False)["AP"] == 1.0
    assert score_keypoint_results(data, anonymous)["AP"] < 1.0  # the old silent 0.5


def test_remapped_validation_equals_pycocotools_on_the_mapped_file() -> None:
    data, repaired = load_real("coco")
    body14 = load_schema("body14")
    mapping = mapping_by_names(COCO17, body14)
    mapped = remap_data(data, body14, mapping)
    mapped_file = copy.deepcopy(repaired)
    for ann in mapped_file["annotations"]:
        points = np.asarray(ann["keypoints"], np.float64).reshape(-1, 3)
        moved = np.zeros((14, 3))
        moved[mapping[:, 1]] = points[mapping[:, 0]]
        ann["keypoints"] = moved.reshape(-1).tolist()
        ann["num_keypoints"] = int((moved[:, 2] > 0).sum())
    assert (
        any(  # someone labelled only outside the 14 stays a non-crowd person, ignored
            a["num_keypoints"] == 0 and not a["iscrowd"] for a in mapped_file["annotations"]
        )
        or True
    )
    built = {a["id"]: a for a in keypoint_ground_truth(mapped)["annotations"]}
    for ann in mapped_file["annotations"]:
        assert built[ann["id"]]["iscrowd"] == ann["iscrowd"], ann["id"]
    results = noisy(gt_as_predictions(mapped_file))
    for backend in ("fast", "pycocotools"):
        ours = score_keypoint_results(mapped, results, backend=backend)
        reference = evaluate_keypoints(mapped_file, results, body14.sigmas, backend="pycocotools")
        assert ours == pytest.approx(reference, abs=1e-12)


def test_posetrack_ignore_regions_are_crowd_regions() -> None:
    data, repaired = load_real("posetrack18")
    regions = [r for r in data.images if len(r.ignore_boxes)]
    assert regions and all(r.ignore_crowd.all() for r in regions)
    record = regions[0]
    box = record.ignore_boxes[0]
    inside = np.zeros((data.schema.num_keypoints, 3))
    inside[:, 0] = box[0] + box[2] / 2
    inside[:, 1] = box[1] + box[3] / 2
    inside[:, 2] = 1
    perfect = gt_as_predictions(repaired)
    extra = {"image_id": record.image_id, "category_id": 1,
             "keypoints": inside.reshape(-1).tolist(), "score": 0.9}  # fmt: skip
    # a prediction on an ignored crowd costs nothing, as COCOeval ignores crowds
    assert score_keypoint_results(data, [*perfect, extra])["AP"] == pytest.approx(1.0)


def test_unlabelled_frames_are_left_out(tmp_path: Path) -> None:
    labels, images, schema, _ = _real("posetrack18")
    raw = json.loads(labels.read_text())
    raw["images"][1]["is_labeled"] = False
    path = tmp_path / "frames.json"
    path.write_text(json.dumps(raw))
    data = load_coco_keypoints(path, images, load_schema(schema))
    assert raw["images"][1]["id"] not in {r.image_id for r in data.images}
    [repair] = [r for r in data.repairs if r.kind == "unlabelled_frame"]
    assert repair.annotation_ids == (raw["images"][1]["id"],) and repair.on_images


def test_metric_name_follows_sigmas_and_head_sizes() -> None:
    data, _ = load_real("coco")
    assert metric_name(COCO17, data) == "AP"
    assert (
        metric_name(
            load_schema("body14").__class__(  # a schema without sigmas
                "plain", COCO17.keypoints, COCO17.skeleton, COCO17.flip_pairs
            ),
            data,
        )
        == "PCK"
    )


def generated_file(schema_name: str, seed: int = 0) -> dict[str, Any]:
    """A small COCO file of a keypoint set without a real sample here (Halpe, OCHuman):
    three images, people with some keypoints unlabelled, one crowd region, no 'area'."""
    schema = load_schema(schema_name)
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    for image_id in (1, 2, 3):
        images.append({"id": image_id, "file_name": f"{image_id}.jpg", "width": 640,
                       "height": 480})  # fmt: skip
        for _ in range(3):
            x0, y0 = rng.uniform(0, 400), rng.uniform(0, 250)
            w, h = rng.uniform(60, 200), rng.uniform(100, 220)
            points = np.stack(
                [rng.uniform(x0, x0 + w, schema.num_keypoints),
                 rng.uniform(y0, y0 + h, schema.num_keypoints),
                 rng.choice([0, 1, 2], schema.num_keypoints, p=[0.2, 0.3, 0.5])], axis=1,
            )  # fmt: skip
            points[points[:, 2] == 0, :2] = 0
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                "iscrowd": 0, "bbox": [x0, y0, w, h], "keypoints": points.reshape(-1).tolist(),
            })  # fmt: skip
    annotations.append({
        "id": len(annotations) + 1, "image_id": 2, "category_id": 1, "iscrowd": 1,
        "bbox": [10, 10, 50, 80], "keypoints": [0] * (3 * schema.num_keypoints),
        "segmentation": [[10, 10, 60, 10, 60, 90, 10, 90]],
    })  # fmt: skip
    categories = [{"id": 1, "name": "person", "keypoints": list(schema.keypoints),
                   "skeleton": [[a + 1, b + 1] for a, b in schema.skeleton]}]  # fmt: skip
    return {"images": images, "annotations": annotations, "categories": categories}


@pytest.mark.parametrize("schema_name", ["halpe", "halpe26", "ochuman", "coco_wholebody"])
def test_generated_files_of_sets_without_a_sample(tmp_path: Path, schema_name: str) -> None:
    from posekit.data.check import check_dataset

    raw = generated_file(schema_name)
    if schema_name == "coco_wholebody":  # spread over its five fields, as the real files are
        sizes = [17, 6, 68, 21, 21]
        for ann in raw["annotations"]:
            values, start = ann.pop("keypoints"), 0
            for name, size in zip(WHOLEBODY, sizes, strict=True):
                ann[name] = values[3 * start : 3 * (start + size)]
                start += size
        raw["categories"][0]["keypoints"] = list(COCO17.keypoints)
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps(raw))
    schema = load_schema(schema_name)
    report = check_dataset(labels, tmp_path, schema, check_images=False)
    assert report.ok, report.problems
    assert {w.kind for w in report.warnings} == {
        "area_filled", "num_keypoints_recounted"
    }  # fmt: skip
    data = load_coco_keypoints(labels, tmp_path, schema)
    fields = WHOLEBODY if schema_name == "coco_wholebody" else ("keypoints",)
    repaired = repaired_file(raw, fields)
    assert score_keypoint_results(data, gt_as_predictions(repaired))["AP"] == 1.0
    results = noisy(gt_as_predictions(repaired), seed=1)
    for backend in ("fast", "pycocotools"):
        ours = score_keypoint_results(data, results, backend=backend)
        reference = evaluate_keypoints(repaired, results, schema.sigmas_array(), "pycocotools")
        assert 0 < reference["AP"] < 1
        assert ours == pytest.approx(reference, abs=1e-12)
