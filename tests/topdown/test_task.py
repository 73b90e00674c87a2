"""Top-down prediction and evaluation on the real COCO sample, with a model that outputs the
encoded ground truth (so every step after the network is checked: crops, flip merge,
decoding, the way back to image pixels, rescoring, OKS-NMS, COCO AP)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from posekit.config import PosekitConfig
from posekit.data.coco import CocoKeypoints
from posekit.data.transforms import compose_affine, hflip_matrix, warp_keypoints
from posekit.topdown.codecs.heatmap import encode_heatmaps
from posekit.topdown.codecs.simcc import encode_simcc
from posekit.topdown.inference import crop_people
from posekit.topdown.model import TopDownOutputs
from posekit.topdown.task import TopDownTask

CPU = torch.device("cpu")


class GroundTruthNet(nn.Module):
    """Returns, call by call, the encoded ground truth of the crops the task will ask for
    (plain, then mirrored when the flip test is on)."""

    def __init__(self, task: TopDownTask, data: CocoKeypoints, flip: bool) -> None:
        super().__init__()
        self.outputs: list[TopDownOutputs] = []
        spec, flip_index = task.spec, task.schema.flip_index()
        mirror = hflip_matrix(spec.input_hw[1])
        for record in data.images:
            _, matrices = crop_people(
                np.zeros((record.height, record.width, 3), np.uint8), record.boxes, spec
            )
            plain = [warp_keypoints(k[None], m, spec.input_hw)[0]
                     for k, m in zip(record.keypoints, matrices, strict=True)]  # fmt: skip
            self.outputs.append(self.encode(plain, spec))
            if flip:
                mirrored = [
                    warp_keypoints(k[None], compose_affine(mirror, m), spec.input_hw)[0][flip_index]
                    for k, m in zip(record.keypoints, matrices, strict=True)
                ]
                self.outputs.append(self.encode(mirrored, spec))

    @staticmethod
    def encode(people: list[np.ndarray], spec) -> TopDownOutputs:  # type: ignore[no-untyped-def]
        if spec.head == "simcc":
            coded = [encode_simcc(k, spec.input_hw, spec.simcc_split_ratio, spec.simcc_sigma)
                     for k in people]  # fmt: skip
            return TopDownOutputs(
                simcc_x=torch.from_numpy(np.stack([c[0] for c in coded])),
                simcc_y=torch.from_numpy(np.stack([c[1] for c in coded])),
            )
        maps = [encode_heatmaps(k, spec.input_hw, spec.heatmap_hw, spec.heatmap_sigma)[0]
                for k in people]  # fmt: skip
        return TopDownOutputs(heatmaps=torch.from_numpy(np.stack(maps)))

    def forward(self, crops: torch.Tensor) -> TopDownOutputs:
        outputs = self.outputs.pop(0)
        tensor = outputs.heatmaps if outputs.heatmaps is not None else outputs.simcc_x
        assert tensor is not None and tensor.shape[0] == crops.shape[0]
        return outputs


def coco_task(make: Callable[..., PosekitConfig], coco: Path, *words: str, **params: object):
    cfg = make(
        f"data.val.labels={coco / 'test_coco.json'}", f"data.val.images={coco}", *words,
        input_size=[256, 192], **params,
    )  # fmt: skip
    return TopDownTask(cfg, CPU)


@pytest.mark.parametrize(("head", "flip"), [("heatmap", True), ("heatmap", False), ("simcc", True)])
def test_perfect_outputs_give_ap_one_with_ground_truth_boxes(
    topdown_config: Callable[..., PosekitConfig],
    real_coco_dir: Path,
    head: str,
    flip: bool,
    tmp_path: Path,
) -> None:
    task = coco_task(topdown_config, real_coco_dir, f"topdown.flip_test={flip}", head=head)
    assert task.val_data is not None
    oracle = GroundTruthNet(task, task.val_data, flip)
    results = tmp_path / "keypoints.json"
    metrics = task.evaluate_on(oracle, task.val_data, results)
    assert metrics["AP"] == pytest.approx(1.0)
    assert not oracle.outputs, "every prepared output was asked for"
    entries = json.loads(results.read_text())
    assert len(entries) == sum(r.num_persons for r in task.val_data.images)


def test_shifted_keypoints_lower_the_ap(
    topdown_config: Callable[..., PosekitConfig], real_coco_dir: Path
) -> None:
    task = coco_task(topdown_config, real_coco_dir, "topdown.flip_test=false")
    assert task.val_data is not None
    oracle = GroundTruthNet(task, task.val_data, flip=False)
    for outputs in oracle.outputs:  # 4 heatmap cells = 16 crop pixels to the right
        assert outputs.heatmaps is not None
        outputs.heatmaps = torch.roll(outputs.heatmaps, 4, dims=3)
    assert task.evaluate_on(oracle, task.val_data, None)["AP"] < 0.9


def test_evaluation_with_a_detections_file(
    topdown_config: Callable[..., PosekitConfig], real_coco_dir: Path
) -> None:
    """The detector's boxes replace the ground truth's; a model that sees nothing scores 0."""
    detections = real_coco_dir / "test_coco_det_AP_H_56.json"
    task = coco_task(
        topdown_config, real_coco_dir, f"data.val.detections={detections}",
        "topdown.box_score_threshold=0.3",
    )  # fmt: skip
    assert task.val_data is not None
    calls: list[int] = []

    class Flat(nn.Module):
        def forward(self, crops: torch.Tensor) -> TopDownOutputs:
            calls.append(crops.shape[0])
            return TopDownOutputs(heatmaps=torch.zeros(crops.shape[0], 17, 64, 48))

    metrics = task.evaluate_on(Flat(), task.val_data, None, str(detections))
    kept = sum(e["score"] >= 0.3 for e in json.loads(detections.read_text()))
    assert sum(calls) == 2 * kept  # every detection above the threshold, plain and mirrored
    assert metrics["AP"] == pytest.approx(0.0)


def test_predict_uses_the_whole_image_as_one_person(
    topdown_config: Callable[..., PosekitConfig],
) -> None:
    task = TopDownTask(topdown_config(), CPU)
    task.model.eval()
    image = np.full((90, 60, 3), 128, np.uint8)
    drawn, people = task.predict_drawn(task.model, image)
    assert drawn.shape == image.shape
    assert people.keypoints.shape == (1, 17, 3)
    # inside the padded crop: the 60x90 box widened to 3:4 (67.5) then padded 1.25x
    x, y = people.keypoints[0, :, 0], people.keypoints[0, :, 1]
    half_width, half_height = 67.5 * 1.25 / 2, 90 * 1.25 / 2
    assert (np.abs(x - 29.5) <= half_width).all() and (np.abs(y - 44.5) <= half_height).all()


def test_a_schema_without_sigmas_is_scored_by_pck(
    topdown_config: Callable[..., PosekitConfig], real_coco_dir: Path, tmp_path: Path
) -> None:
    import yaml

    from posekit.schema import COCO17

    plain = {k: v for k, v in COCO17.to_dict().items() if k not in ("sigmas", "name")}
    schema = tmp_path / "no_sigmas.yaml"
    schema.write_text(yaml.safe_dump(plain))
    task = coco_task(topdown_config, real_coco_dir, f"data.schema={schema}")
    assert task.metric_name == "PCK" and task.val_data is not None
    oracle = GroundTruthNet(task, task.val_data, flip=True)
    assert task.evaluate_on(oracle, task.val_data, None) == {"PCK": pytest.approx(1.0)}
