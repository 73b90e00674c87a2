from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from posekit.data.prepared_labels import prepare_train_labels, save_prepared_labels
from posekit.data.training_labels import is_prepared_labels, load_training_labels
from posekit.errors import DataError
from posekit.schema import COCO17


def test_coco_json_loads_as_coco(real_coco_dir: Path) -> None:
    path = real_coco_dir / "test_coco.json"
    assert not is_prepared_labels(path)
    data = load_training_labels(path, real_coco_dir, COCO17)
    assert len(data) == 4


@pytest.mark.parametrize("suffix", [".json", ".pkl"])
def test_prepared_labels_round_trip_to_coco_visibility(
    real_coco_dir: Path, tmp_path: Path, suffix: str
) -> None:
    labels = real_coco_dir / "test_coco.json"
    records = prepare_train_labels(labels)
    path = tmp_path / f"prepared{suffix}"
    if suffix == ".json":
        save_prepared_labels(records, path)
    else:  # as the original script writes it
        path.write_bytes(pickle.dumps(records))
    assert is_prepared_labels(path)
    data = load_training_labels(path, real_coco_dir, COCO17)
    assert len(data) == len(records) > 0
    coco = json.loads(labels.read_text())
    by_box = {tuple(a["bbox"]): a for a in coco["annotations"]}
    for record, image in zip(records, data.images, strict=True):
        original = np.asarray(by_box[tuple(record["bbox"])]["keypoints"], np.float32).reshape(-1, 3)
        labelled = original[:, 2] > 0
        np.testing.assert_array_equal(image.keypoints[0, :, 2], original[:, 2])
        np.testing.assert_allclose(image.keypoints[0, labelled, :2], original[labelled, :2])
        assert image.num_persons == 1 + len(record["processed_other_annotations"])
        assert (real_coco_dir / image.file_name).is_file()


def test_wrong_keypoint_count_names_the_record(tmp_path: Path) -> None:
    record = {
        "img_paths": "a.jpg", "img_width": 10, "img_height": 10, "image_id": 1,
        "bbox": [0, 0, 5, 5], "segment_area": 25.0, "keypoints": [[1, 1, 1]] * 5,
        "processed_other_annotations": [], "segmentations": [], "num_keypoints": 5,
        "objpos": [2.5, 2.5], "scale_provided": 0.1,
    }  # fmt: skip
    path = tmp_path / "p.json"
    path.write_text(json.dumps([record]))
    with pytest.raises(DataError, match="record 0.*5 keypoints"):
        load_training_labels(path, tmp_path, COCO17)


def test_missing_labels_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_training_labels(tmp_path / "nope.json", tmp_path, COCO17)
