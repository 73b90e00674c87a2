"""Every public keypoint set of the real samples through the top-down task path (loader,
crops, network, flip test, decoding, results with the file's category ids, the one ground
truth, the set's own metric): a network that outputs the encoded ground truth scores 1.0."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from posekit.config import PosekitConfig
from posekit.topdown.task import TopDownTask

from ..conftest import real_samples_dir
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
    root = real_samples_dir()
    if not (root / labels).is_file():
        pytest.skip(f"real sample {labels} not found under {root}")
    cfg = make(
        f"data.schema={schema}",
        f"data.train.labels={root / labels}", f"data.train.images={root / images}",
        f"data.val.labels={root / labels}", f"data.val.images={root / images}",
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
