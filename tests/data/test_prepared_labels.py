"""Lightweight OpenPose label preparation, the JSON output, and the restricted unpickler."""

from __future__ import annotations

import io
import json
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from posekit.data.prepared_labels import (
    RECORD_KEYS,
    load_prepared_labels,
    prepare_train_labels,
    prepared_output_path,
    run_prepare,
    save_prepared_labels,
)
from posekit.errors import DataError

VISIBILITY_MAP = np.array([2, 0, 1])  # the original: COCO v=0 -> 2, v=1 -> 0, v=2 -> 1


def _expected_selection(data: dict[str, Any]) -> list[tuple[int, int]]:
    """(image_id, annotation_id) chosen by the original's rules, computed independently."""
    order: list[int] = []
    persons: dict[int, list[dict]] = {}
    for ann in data["annotations"]:
        if ann["num_keypoints"] > 0 and not ann["iscrowd"]:
            order += [ann["image_id"]] if ann["image_id"] not in persons else []
            persons.setdefault(ann["image_id"], []).append(ann)
    chosen = []
    for image_id in order:
        centres = np.empty((0, 2))
        widths = np.empty(0)
        for ann in persons[image_id]:
            if ann["num_keypoints"] < 5 or ann["area"] < 1024:
                continue
            x, y, w, h = ann["bbox"]
            centre = np.array([x + w / 2, y + h / 2])
            if np.any(np.linalg.norm(centres - centre, axis=1) < 0.3 * widths):
                continue
            centres, widths = np.vstack([centres, centre]), np.append(widths, w)
            chosen.append((image_id, ann["id"]))
    return chosen


def test_real_coco_selection_and_fields(real_coco_dir: Path) -> None:
    labels = real_coco_dir / "test_coco.json"
    data = json.loads(labels.read_text())
    annotations = {a["id"]: a for a in data["annotations"]}
    images = {i["id"]: i for i in data["images"]}
    records = prepare_train_labels(labels)
    expected = _expected_selection(data)
    assert len(records) == len(expected) == 12
    for record, (image_id, ann_id) in zip(records, expected, strict=True):
        ann = annotations[ann_id]
        assert set(record) == RECORD_KEYS
        assert record["image_id"] == image_id and record["bbox"] == ann["bbox"]
        assert record["img_paths"] == images[image_id]["file_name"]
        assert (record["img_width"], record["img_height"]) == (
            images[image_id]["width"],
            images[image_id]["height"],
        )
        x, y, w, h = ann["bbox"]
        assert record["objpos"] == pytest.approx([x + w / 2, y + h / 2])
        assert record["scale_provided"] == pytest.approx(h / 368)
        assert record["segment_area"] == ann["area"]
        assert record["num_keypoints"] == ann["num_keypoints"]
        assert record["segmentations"] == []
        flat = np.array(ann["keypoints"]).reshape(17, 3)
        remapped = np.array(record["keypoints"])
        np.testing.assert_array_equal(remapped[:, :2], flat[:, :2])
        np.testing.assert_array_equal(remapped[:, 2], VISIBILITY_MAP[flat[:, 2].astype(int)])
        others = [
            a for a in data["annotations"]
            if a["image_id"] == image_id and a["id"] != ann_id and a["num_keypoints"] > 0
        ]  # fmt: skip
        assert [o["bbox"] for o in record["processed_other_annotations"]] == [
            o["bbox"] for o in others
        ]


def _person(ann_id: int, centre_x: float, width: float, **changes: Any) -> dict[str, Any]:
    keypoints = [centre_x, 50, 2, centre_x + 1, 51, 1, 0, 0, 0] + [centre_x, 60, 2] * 14
    ann = {
        "id": ann_id, "image_id": 9, "category_id": 1, "iscrowd": 0, "num_keypoints": 16,
        "area": 5000.0, "bbox": [centre_x - width / 2, 0.0, width, 100.0],
        "keypoints": keypoints, "segmentation": [[0, 0, 1, 0, 1, 1]],
    }  # fmt: skip
    ann.update(changes)
    return ann


def _write(path: Path, annotations: list[dict[str, Any]]) -> Path:
    image = {"id": 9, "file_name": "nine.jpg", "width": 640, "height": 480}
    path.write_text(json.dumps({"images": [image], "annotations": annotations}))
    return path


def test_close_centres_small_or_sparse_people_and_crowds(tmp_path: Path) -> None:
    rle = {"counts": [0, 4], "size": [2, 2]}
    crowd = {"id": 90, "image_id": 9, "iscrowd": 1, "num_keypoints": 0, "category_id": 1,
             "area": 10.0, "bbox": [0, 0, 1, 1], "segmentation": rle}  # fmt: skip
    annotations = [
        _person(1, centre_x=100, width=100),  # chosen
        _person(2, centre_x=120, width=10),  # 20 px from #1 < 0.3 * 100: skipped
        _person(3, centre_x=140, width=100),  # 40 px from #1, 20 px from none chosen: chosen
        _person(4, centre_x=300, width=100, num_keypoints=4),  # too few keypoints
        _person(5, centre_x=400, width=100, area=1023.0),  # too small
        _person(6, centre_x=500, width=100, num_keypoints=0),  # unlabelled: not a person
        crowd,
    ]
    labels = _write(tmp_path / "labels.json", annotations)
    records = prepare_train_labels(labels)
    assert [r["bbox"][0] + r["bbox"][2] / 2 for r in records] == [100, 140]
    first = records[0]
    assert first["segmentations"] == [crowd["segmentation"]]
    assert [o["num_keypoints"] for o in first["processed_other_annotations"]] == [16, 16, 4, 16]
    assert first["keypoints"][:3] == [[100, 50, 1], [101, 51, 0], [0, 0, 2]]
    assert first["processed_other_annotations"][0]["keypoints"][1] == [121, 51, 0]
    masked = prepare_train_labels(labels, mask_unlabelled_persons=True)
    assert masked[0]["segmentations"] == [annotations[5]["segmentation"], crowd["segmentation"]]


def test_missing_key_is_a_data_error(tmp_path: Path) -> None:
    broken = _person(1, 100, 100)
    del broken["num_keypoints"]
    with pytest.raises(DataError, match="labels.json: malformed .*num_keypoints"):
        prepare_train_labels(_write(tmp_path / "labels.json", [broken]))


def test_save_and_load_json_roundtrip(real_coco_dir: Path, tmp_path: Path) -> None:
    records = prepare_train_labels(real_coco_dir / "test_coco.json")
    path = save_prepared_labels(records, tmp_path / "prepared.json")
    assert load_prepared_labels(path) == records
    assert [p.name for p in tmp_path.iterdir()] == ["prepared.json"]  # no temporary left


def test_run_prepare_with_pkl_name_writes_json(real_coco_dir: Path, tmp_path: Path) -> None:
    out = io.StringIO()
    code = run_prepare(real_coco_dir / "test_coco.json", tmp_path / "train.pkl", out=out)
    assert code == 0
    assert not (tmp_path / "train.pkl").exists()
    assert len(load_prepared_labels(tmp_path / "train.json")) == 12
    assert "instead of the pickle" in out.getvalue()
    assert "12 training records" in out.getvalue()


@pytest.mark.parametrize(
    ("name", "expected"),
    [("a.json", "a.json"), ("a.pkl", "a.json"), ("a.PICKLE", "a.json"), ("a", "a.json"),
     ("a.v2", "a.v2.json")],
)  # fmt: skip
def test_prepared_output_path(name: str, expected: str) -> None:
    assert prepared_output_path(name) == Path(expected)


def test_legit_pickle_of_the_original_script_loads(real_coco_dir: Path, tmp_path: Path) -> None:
    records = prepare_train_labels(real_coco_dir / "test_coco.json")
    path = tmp_path / "prepared_train_annotation.pkl"
    path.write_bytes(pickle.dumps(records))
    assert load_prepared_labels(path) == records


class _WritesMarker:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.write_text, (self.marker, "payload ran"))


class _RunsShell:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("payload", [_WritesMarker, _RunsShell])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path, payload: type) -> None:
    marker = tmp_path / "marker"
    records = [{"img_paths": "x.jpg", "evil": payload(marker)}]
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(records))
    with pytest.raises(DataError, match=r"evil\.pkl: unsafe or corrupt pickle refused") as exc:
        load_prepared_labels(path)
    assert "\n" not in str(exc.value)
    assert not marker.exists()
    pickle.loads(path.read_bytes())  # control: the payload is real and does run when unpickled
    assert marker.exists()


def test_corrupt_pickle_and_bad_files(tmp_path: Path) -> None:
    truncated = tmp_path / "cut.pkl"
    truncated.write_bytes(pickle.dumps([{"a": 1}])[:-3])
    with pytest.raises(DataError, match="cut.pkl"):
        load_prepared_labels(truncated)
    not_records = tmp_path / "list.json"
    not_records.write_text('[{"img_paths": "x.jpg"}]')
    with pytest.raises(DataError, match=r"record 0 lacks \['bbox'"):
        load_prepared_labels(not_records)
    with pytest.raises(DataError, match="cannot read prepared labels"):
        load_prepared_labels(tmp_path / "absent.json")
    text = tmp_path / "labels.txt"
    text.write_text("[]")
    with pytest.raises(DataError, match="unknown prepared labels format"):
        load_prepared_labels(text)
