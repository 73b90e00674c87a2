"""Other people's data sets through the commands a user types: ``posekit train`` and ``val`` on
the real public samples (files without ``area``, many categories, another keypoint set),
Ultralytics data sets made by ``posekit convert``, MPII's JSON scored by PCKh, and
``posekit eval`` on results files (ground truth as predictions scores 1.0)."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import real_sample as real

TINY_BOTTOMUP = (
    "model.params={num_refinement_stages: 1, num_channels: 16, width_mult: 0.25, head_width: 32}"
)
TINY_TOPDOWN = (
    "model.params={backbone: mobilenet_v2, width_mult: 0.25, input_size: [96, 64], "
    "deconv_channels: [32, 32, 32]}"
)


def posekit(*args: str, cwd: Path, code: int = 0) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "posekit", *args],
        capture_output=True, text=True, cwd=cwd, timeout=600,
    )  # fmt: skip
    assert result.returncode == code, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def last_row(work: Path) -> dict[str, str]:
    return list(csv.DictReader((work / "results.csv").open()))[-1]


def train(work: Path, family: str, labels: Path, images: Path | None, *words: str) -> None:
    model = (
        ["model.name=topdown", TINY_TOPDOWN] if family == "topdown"
        else [TINY_BOTTOMUP, "data.input_size=128", "bottomup.inference.input_height=128"]
    )  # fmt: skip
    data = [f"data.train.labels={labels}", f"data.val.labels={labels}"]
    if images is not None:
        data += [f"data.train.images={images}", f"data.val.images={images}"]
    posekit(
        "train", "--max-iter", "2", "--batch-size", "2", "--num-workers", "0",
        "--work-dir", str(work), *model, *data, *words,
        cwd=work.parent,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("family", "name", "labels", "images", "schema"),
    [
        ("bottomup", "crowdpose", "crowdpose/test_crowdpose.json", "crowdpose", "crowdpose"),
        ("topdown", "aic", "aic/test_aic.json", "aic", "aic"),
        ("bottomup", "ap10k", "ap10k/test_ap10k.json", "ap10k", "ap10k"),
        ("topdown", "posetrack18", "posetrack18/annotations/test_posetrack18_val.json",
         "posetrack18", "posetrack18"),
    ],
)  # fmt: skip
def test_train_and_val_on_public_sets(
    tmp_path: Path, family: str, name: str, labels: str, images: str, schema: str
) -> None:
    """Files without 'area' (CrowdPose, AIC, PoseTrack), 54 categories (AP-10K), ignore
    regions and nested frame folders (PoseTrack): train, validate, checkpoint, then val."""
    work = tmp_path / name
    train(work, family, real(labels), real(images), f"data.schema={schema}")
    row = last_row(work)
    assert math.isfinite(float(row["AP"])) and 0 <= float(row["AP"]) <= 1
    assert (work / "checkpoints" / "best.pth").is_file()
    result = posekit("val", "--weights", str(work / "checkpoints" / "best.pth"), "--json",
                     cwd=tmp_path)  # fmt: skip
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["AP"] == pytest.approx(float(row["AP"]), abs=1e-6)


def test_wrong_schema_stops_with_one_line_naming_the_right_one(tmp_path: Path) -> None:
    labels = real("posetrack18/annotations/test_posetrack18_val.json")
    result = posekit(
        "train", f"data.train.labels={labels}", f"data.train.images={labels.parent.parent}",
        "--work-dir", str(tmp_path / "run"), cwd=tmp_path, code=2,
    )  # fmt: skip
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "'head_bottom' in the file" in result.stderr
    assert "data.schema=posetrack18" in result.stderr


def test_mpii_json_trains_and_reports_pckh(tmp_path: Path) -> None:
    labels, images = real("mpii/test_mpii.json"), real("mpii")
    work = tmp_path / "mpii"
    train(work, "topdown", labels, images, "data.schema=mpii")
    row = last_row(work)
    assert "PCKh" in row and 0 <= float(row["PCKh"]) <= 1
    result = posekit("val", "--weights", str(work / "checkpoints" / "best.pth"), cwd=tmp_path)
    assert "PCKh@0.5" in result.stdout


def test_yolo_data_set_from_convert_trains_without_images_or_schema(tmp_path: Path) -> None:
    coco = real("coco")
    yolo = tmp_path / "yolo"
    for split in ("train", "val"):
        posekit("convert", "--to", "yolo", "--labels", str(coco / "test_coco.json"),
                "--images", str(coco), "--out", str(yolo), "--split", split,
                cwd=tmp_path)  # fmt: skip
    work = tmp_path / "run"
    train(work, "bottomup", yolo / "data.yaml", None)
    assert math.isfinite(float(last_row(work)["AP"]))


def gt_results(labels: Path, fields: tuple[str, ...] = ("keypoints",)) -> list[dict]:
    data = json.loads(labels.read_text())
    results = []
    for ann in data["annotations"]:
        points = [v for name in fields for v in ann[name]]
        if not ann.get("iscrowd") and any(v > 0 for v in points[2::3]):
            results.append({"image_id": ann["image_id"], "category_id": ann["category_id"],
                            "keypoints": points, "score": 1.0})  # fmt: skip
    return results


@pytest.mark.parametrize(
    ("labels", "extra"),
    [
        ("crowdpose/test_crowdpose.json", []),  # the schema found from the file's names
        ("ap10k/test_ap10k.json", []),
        ("posetrack18/annotations/test_posetrack18_val.json", []),
        ("coco/test_coco.json", ["--schema", "coco17"]),
    ],
)
def test_eval_scores_ground_truth_as_one(tmp_path: Path, labels: str, extra: list[str]) -> None:
    path = real(labels)
    results = tmp_path / "results.json"
    results.write_text(json.dumps(gt_results(path)))
    out = posekit("eval", "--labels", str(path), "--results", str(results), "--json", *extra,
                  cwd=tmp_path)  # fmt: skip
    assert json.loads(out.stdout.strip().splitlines()[-1])["AP"] == 1.0


def test_eval_ground_truth_on_a_converted_yolo_set_scores_as_the_original(tmp_path: Path) -> None:
    coco = real("coco")
    posekit("convert", "--to", "yolo", "--labels", str(coco / "test_coco.json"),
            "--images", str(coco), "--out", str(tmp_path / "y"), "--split", "val",
            cwd=tmp_path)  # fmt: skip
    (tmp_path / "r.json").write_text(json.dumps(gt_results(coco / "test_coco.json")))
    for labels in (coco / "test_coco.json", tmp_path / "y" / "data.yaml"):
        out = posekit("eval", "--labels", str(labels), "--results", str(tmp_path / "r.json"),
                      "--json", cwd=tmp_path)  # fmt: skip
        metrics = json.loads(out.stdout.strip().splitlines()[-1])
        assert metrics["AP"] == 1.0 and metrics["AR"] == 1.0, labels


def test_eval_mpii_pckh_of_ground_truth_is_one(tmp_path: Path) -> None:
    from posekit.data.mpii import mpii_to_coco

    labels, images = real("mpii/test_mpii.json"), real("mpii")
    coco = mpii_to_coco(json.loads(labels.read_text()), str(labels), images)
    results = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"],
                "score": 1.0} for a in coco["annotations"]]  # fmt: skip
    (tmp_path / "r.json").write_text(json.dumps(results))
    out = posekit("eval", "--labels", str(labels), "--images", str(images), "--results",
                  str(tmp_path / "r.json"), "--json", cwd=tmp_path)  # fmt: skip
    metrics = json.loads(out.stdout.strip().splitlines()[-1])
    assert metrics["PCKh"] == 1.0 and metrics["Head"] == 1.0


@pytest.mark.parametrize(
    ("results", "message"),
    [
        ('{"a": 1}', "expected a JSON list"),
        ('[{"image_id": 5, "keypoints": [], "score": 1}]', "result 0: image_id 5"),
        ('[{"image_id": 785, "keypoints": [1, 2, 3], "score": 1}]', "result 0: 3 keypoint"),
    ],
)
def test_eval_bad_results_are_one_line(tmp_path: Path, results: str, message: str) -> None:
    path = tmp_path / "r.json"
    path.write_text(results)
    out = posekit("eval", "--labels", str(real("coco/test_coco.json")), "--results", str(path),
                  cwd=tmp_path, code=2)  # fmt: skip
    assert out.stderr.count("\n") == 1 and message in out.stderr and str(path) in out.stderr
