from __future__ import annotations

import numpy as np

from posekit.bottomup.task import pck_of
from posekit.data.coco import CocoKeypoints, PersonImage
from posekit.people import People
from posekit.schema import make_schema

SCHEMA = make_schema("three", ["a", "b", "c"], [[0, 1], [1, 2]])  # no sigmas: PCK


def _record(keypoints: np.ndarray) -> PersonImage:
    count = len(keypoints)
    return PersonImage(
        image_id=7, file_name="x.jpg", width=100, height=100,
        keypoints=keypoints.astype(np.float32),
        boxes=np.tile(np.array([[0, 0, 50, 50]], np.float32), (count, 1)),
        areas=np.full(count, 2500, np.float32), annotation_ids=np.arange(count),
        ignore_segmentations=(), ignore_boxes=np.zeros((0, 4), np.float32),
    )  # fmt: skip


def test_pck_matches_each_person_to_its_closest_prediction() -> None:
    truth = np.array(
        [[[10, 10, 2], [20, 20, 2], [30, 30, 0]], [[60, 60, 2], [70, 70, 2], [0, 0, 0]]]
    )
    data = CocoKeypoints([_record(truth)], SCHEMA, labels_path=None, images_root=None)  # type: ignore[arg-type]
    predicted = np.array(
        [[[61, 60, 1], [95, 95, 1], [0, 0, 0]], [[10, 12, 1], [20, 20, 1], [99, 99, 1]]], np.float32
    )
    people = People(predicted, np.ones(2, np.float32))
    # threshold 0.2 x 50 px = 10 px: 3 of the 4 labelled keypoints are within it
    assert pck_of(data, {7: people}) == {"PCK": 0.75}
    assert pck_of(data, {7: People(np.zeros((0, 3, 3), np.float32), np.zeros(0))}) == {"PCK": 0.0}
