"""Every public keypoint set of the real samples through the top-down task path (loader,
crops, network, flip test, decoding, results with the file's category ids, the one ground
truth, the set's own metric): a network that outputs the encoded ground truth scores 1.0."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from posekit.config import PosekitConfig
from posekit.topdown.task import TopDownTask

from ..conftest import real_sample
from .test_task import GroundTruthNet

# name: (labels, images root, schema, metric)
PUBLIC_SETS = {
    "crowdpose": ("crowdpose/test_crowdpose.json", "crowdpose", "crowdpose", "AP"),
    "aic": ("aic/test_aic.json", "aic", "aic", "AP"),
    "ap10k": ("ap10k/test_ap10k.json", "ap10k", "ap10k", "AP"),
    "macaque": ("macaque/test_macaque.json", "macaque", "macaque", "AP"),
    "posetrack18": (
        "posetrack18/annotations/test_posetrack18_val.json", "posetrack18", "posetrack18", "AP"
    ),
    "humanart21": ("humanart/annotations/test_humanart.json", "humanart", "humanart21", "AP"),
    "coco_wholebody": ("coco/test_coco_wholebody.json", "coco", "coco_wholebody", "AP"),
    "ochuman": ("coco/test_coco.json", "coco", "ochuman", "AP"),  # OCHuman: COCO's 17
    "mpii": ("mpii/test_mpii.json", "mpii", "mpii", "PCKh"),
}  # fmt: skip


def public_task(
    make: Callable[..., PosekitConfig], name: str, *words: str, **params: object
) -> TopDownTask:
    labels, images, schema, _ = PUBLIC_SETS[name]
    labels_path, images_path = real_sample(labels), real_sample(images)
    cfg = make(
        f"data.schema={schema}",
        f"data.train.labels={labels_path}", f"data.train.images={images_path}",
        f"data.val.labels={labels_path}", f"data.val.images={images_path}",
        *words, input_size=[256, 192], **params,
    )  # fmt: skip
    return TopDownTask(cfg, torch.device("cpu"))


@pytest.mark.parametrize("name", sorted(PUBLIC_SETS))
def test_ground_truth_outputs_score_one_on_each_public_set(
    topdown_config: Callable[..., PosekitConfig], name: str
) -> None:
    # CrowdPose and AIC label a few joints outside their person's box, beyond the usual 1.25
    # padding of the crop, where no network output can reach: a wider crop holds them all
    task = public_task(topdown_config, name, "topdown.flip_test=true", "topdown.bbox_padding=2")
    metric = PUBLIC_SETS[name][3]
    assert task.metric_name == metric and task.val_data is not None
    oracle = GroundTruthNet(task, task.val_data, flip=True)
    metrics = task.evaluate_on(oracle, task.val_data, None)
    assert metrics[metric] == pytest.approx(1.0, abs=1e-9), metrics
    assert not oracle.outputs


def test_many_category_results_carry_each_box_category(
    topdown_config: Callable[..., PosekitConfig], tmp_path: Path
) -> None:
    import json

    task = public_task(topdown_config, "ap10k", "topdown.flip_test=false")
    assert task.val_data is not None
    oracle = GroundTruthNet(task, task.val_data, flip=False)
    results = tmp_path / "results.json"
    task.evaluate_on(oracle, task.val_data, results)
    expected = sorted(int(c) for r in task.val_data.images for c in r.category_ids)
    assert sorted(e["category_id"] for e in json.loads(results.read_text())) == expected
    assert len(set(expected)) == 2  # AP-10K's sample: an antelope (1) and another species


def _quirky_copy(coco: Path, tmp_path: Path, quirk: str) -> Path:
    raw = json.loads((coco / "test_coco.json").read_text())
    for ann in raw["annotations"]:
        if quirk == "null_area":
            ann["area"] = None
        elif quirk == "no_area":
            del ann["area"]
        elif quirk == "no_num_keypoints":
            del ann["num_keypoints"]
        elif quirk == "category_7":
            ann["category_id"] = 7
    if quirk == "category_7":
        raw["categories"][0]["id"] = 7
    labels = tmp_path / f"{quirk}.json"
    labels.write_text(json.dumps(raw))
    return labels


@pytest.mark.parametrize("quirk", ["null_area", "no_area", "no_num_keypoints", "category_7"])
def test_quirky_coco_files_score_one_through_the_task(
    topdown_config: Callable[..., PosekitConfig],
    real_coco_dir: Path,
    tmp_path: Path,
    quirk: str,
) -> None:
    """Each of these used to end in a traceback, AP 0.0 or AP -1 on perfect predictions."""
    labels = _quirky_copy(real_coco_dir, tmp_path, quirk)
    cfg = topdown_config(
        f"data.val.labels={labels}", f"data.val.images={real_coco_dir}",
        "topdown.flip_test=false", input_size=[256, 192],
    )  # fmt: skip
    task = TopDownTask(cfg, torch.device("cpu"))
    assert task.val_data is not None
    oracle = GroundTruthNet(task, task.val_data, flip=False)
    results = tmp_path / "results.json"
    assert task.evaluate_on(oracle, task.val_data, results)["AP"] == pytest.approx(1.0)
    expected_category = 7 if quirk == "category_7" else 1
    assert {e["category_id"] for e in json.loads(results.read_text())} == {expected_category}


def test_remapped_validation_through_the_task_equals_pycocotools_on_the_mapped_file(
    topdown_config: Callable[..., PosekitConfig], real_coco_dir: Path, tmp_path: Path
) -> None:
    """The body14 finetune's validation: COCO-17 labels mapped onto 14 keypoints by name."""
    import numpy as np

    from posekit.data.sources import mapping_by_names
    from posekit.evaluation import evaluate_keypoints
    from posekit.schema import COCO17, load_schema

    labels = real_coco_dir / "test_coco.json"
    cfg = topdown_config(
        "data.schema=body14", f"data.val.labels={labels}", f"data.val.images={real_coco_dir}",
        "data.val.schema=coco17", "data.train.schema=coco17", "topdown.flip_test=false",
        input_size=[256, 192],
    )  # fmt: skip
    task = TopDownTask(cfg, torch.device("cpu"))
    assert task.val_data is not None and task.val_data.remapped
    oracle = GroundTruthNet(task, task.val_data, flip=False)
    for outputs in oracle.outputs[::2]:  # every other image's people 2 heatmap cells off
        assert outputs.heatmaps is not None
        outputs.heatmaps = torch.roll(outputs.heatmaps, 2, dims=3)
    results = tmp_path / "results.json"
    metrics = task.evaluate_on(oracle, task.val_data, results)
    body14, mapping = load_schema("body14"), mapping_by_names(COCO17, load_schema("body14"))
    mapped = json.loads(labels.read_text())  # the file the mapping produces, written here
    for ann in mapped["annotations"]:
        points = np.asarray(ann["keypoints"], np.float64).reshape(-1, 3)
        moved = np.zeros((14, 3))
        moved[mapping[:, 1]] = points[mapping[:, 0]]
        ann["keypoints"], ann["num_keypoints"] = (
            moved.reshape(-1).tolist(),
            int((moved[:, 2] > 0).sum()),
        )
    reference = evaluate_keypoints(
        mapped, json.loads(results.read_text()), body14.sigmas_array(), backend="pycocotools"
    )
    assert 0 < reference["AP"] < 1
    assert metrics == pytest.approx(reference, abs=1e-12)
