"""Person detections files for top-down evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from posekit.errors import DataError
from posekit.topdown.detections import load_detections


def test_real_detections_file_groups_boxes_by_image(real_coco_dir: Path) -> None:
    path = real_coco_dir / "test_coco_det_AP_H_56.json"
    entries = json.loads(path.read_text())
    found = load_detections(path)
    assert sum(len(scores) for _, scores in found.values()) == len(entries)
    strong = load_detections(path, score_threshold=0.5)
    assert sum(len(s) for _, s in strong.values()) == sum(e["score"] >= 0.5 for e in entries)
    boxes, scores = found[entries[0]["image_id"]]
    assert boxes.shape[1] == 4 and (scores >= 0).all()


def test_other_categories_and_empty_boxes_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "dets.json"
    path.write_text(json.dumps([
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 20], "score": 0.9},
        {"image_id": 1, "category_id": 3, "bbox": [0, 0, 10, 20], "score": 0.9},
        {"image_id": 2, "category_id": 1, "bbox": [0, 0, 0, 20], "score": 0.9},
    ]))  # fmt: skip
    found = load_detections(path)
    assert list(found) == [1] and found[1][0].tolist() == [[0, 0, 10, 20]]


@pytest.mark.parametrize(
    ("text", "message"),
    [("{not json", "not valid JSON"), ('{"a": 1}', "expected a JSON list"),
     ('[{"image_id": 1}]', "detection 0 lacks")],
)  # fmt: skip
def test_bad_files_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "dets.json"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        load_detections(path)


def test_missing_file_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data.val.detections"):
        load_detections(tmp_path / "absent.json")
