"""``posekit predict --detector D --pose P``: the detector's person boxes go through the
whole path (post-processing, image pixels, crops, decoding) to the right people. Checked on
the real COCO sample with a detector that outputs the labelled people's boxes and a pose
network that outputs the encoded ground truth of the crops it is given."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from posekit.commands.loaded_model import LoadedModel
from posekit.commands.predict import DetectThenPose
from posekit.config import PosekitConfig, load_config
from posekit.data.coco import CocoKeypoints
from posekit.data.images import read_image
from posekit.detector.model import DetectorOutputs
from posekit.detector.task import DetectorTask

from .test_task import GroundTruthNet, coco_task

CPU = torch.device("cpu")


class BoxesOf(nn.Module):
    """A detector that finds each image's labelled people, in record order, plus a few
    low-scoring stray boxes the threshold must drop."""

    def __init__(self, data: CocoKeypoints, queries: int = 20) -> None:
        super().__init__()
        self.records = list(data.images)
        self.queries = queries

    def forward(self, images: torch.Tensor) -> DetectorOutputs:
        logits = torch.full((len(images), self.queries, 1), -3.0)  # score 0.05: dropped
        boxes = torch.full((len(images), self.queries, 4), 0.3)
        for row in range(len(images)):
            record = self.records.pop(0)
            size = np.array([record.width, record.height] * 2, np.float32)
            x, y, w, h = (record.boxes / size).T
            count = len(x)
            boxes[row, :count] = torch.from_numpy(np.stack([x + w / 2, y + h / 2, w, h], 1))
            logits[row, :count, 0] = torch.linspace(6.0, 5.0, count)  # keeps the order
        return DetectorOutputs([(logits, boxes)], (logits, boxes))


def test_detected_people_get_their_own_keypoints_and_boxes(
    topdown_config: Callable[..., PosekitConfig], real_coco_dir: Path
) -> None:
    pose_task = coco_task(topdown_config, real_coco_dir, "topdown.flip_test=false")
    data = pose_task.val_data
    assert data is not None
    detector_cfg = load_config(None, ["model.name=rtdetr", "model.params={size: tiny}"])
    detector_task = DetectorTask(detector_cfg, CPU)
    detector = LoadedModel(detector_cfg, detector_task, BoxesOf(data), CPU)
    pose = LoadedModel(pose_task.cfg, pose_task, GroundTruthNet(pose_task, data, False), CPU)
    pipeline = DetectThenPose(detector, pose, box_threshold=0.3)
    for record in data.images:
        image = read_image(data.image_path(record))
        drawn, people = pipeline.predict_drawn(image)
        assert len(people) == record.num_persons
        assert not np.array_equal(drawn, image)
        for found in people:
            # each person is the labelled person of its box, keypoints included
            match = int(np.argmin(np.abs(record.boxes - found["bbox"]).sum(1)))
            np.testing.assert_allclose(found["bbox"], record.boxes[match], atol=0.02)
            keypoints = np.asarray(found["keypoints"])
            labelled = record.keypoints[match, :, 2] > 0
            error = np.abs(keypoints[labelled, :2] - record.keypoints[match, labelled, :2])
            assert error.max() < 1.0, (record.image_id, match, error.max())
    assert not pose.model.outputs, "every person's crop was asked for"
    json.dumps(people)  # what people.json holds is plain JSON
