"""Label sources: keypoint mapping between schemas, combined sets, ground truth for evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from posekit.config import config_from_mapping
from posekit.data.sources import (
    check_mapping,
    load_source,
    load_train_sets,
    mapping_by_names,
    remap_keypoints,
    sample_table,
)
from posekit.errors import ConfigError
from posekit.schema import COCO17, load_schema


def test_mapping_by_names_pairs_equal_names() -> None:
    body14 = load_schema("body14")
    mapping = mapping_by_names(COCO17, body14)
    assert mapping.shape == (14, 2)
    for source, target in mapping:
        assert COCO17.keypoints[source] == body14.keypoints[target]


def test_remap_keypoints_moves_points_and_zeroes_the_unmapped() -> None:
    keypoints = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
    mapping = np.array([[2, 0], [0, 3]])
    mapped = remap_keypoints(keypoints, mapping, 4)
    assert mapped.shape == (2, 4, 3)
    np.testing.assert_array_equal(mapped[:, 0], keypoints[:, 2])
    np.testing.assert_array_equal(mapped[:, 3], keypoints[:, 0])
    assert not mapped[:, 1:3].any()


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([[0, 5]], "out of range"),
        ([[-1, 0]], "out of range"),
        ([[0, 1], [2, 1]], "mapped twice"),
        ([], "no keypoint maps"),
    ],
)
def test_bad_mappings_name_the_key(pairs: list, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        check_mapping(pairs, 3, 4, "data.train_sets[1].keypoint_mapping")
    assert "data.train_sets[1].keypoint_mapping" in str(caught.value)


def test_sample_table_takes_ratio_times_each_size_deterministically() -> None:
    table = sample_table([10, 4], [0.5, 2.0], seed=3)
    sets, items = table[:, 0], table[:, 1]
    assert (sets == 0).sum() == 5 and (sets == 1).sum() == 8
    assert len(set(items[sets == 0])) == 5  # a subset without repeats
    assert np.bincount(items[sets == 1], minlength=4).tolist() == [2, 2, 2, 2]
    np.testing.assert_array_equal(table, sample_table([10, 4], [0.5, 2.0], seed=3))
    assert not np.array_equal(table, sample_table([10, 4], [0.5, 2.0], seed=4))
    plain = sample_table([3, 2], [1.0, 1.0], seed=0)
    assert plain.tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1]]


def test_train_and_train_sets_together_are_refused() -> None:
    cfg = config_from_mapping(
        {"data": {"train": {"labels": "a.json", "images": "a"},
                  "train_sets": [{"labels": "b.json", "images": "b"}]}}
    )  # fmt: skip
    with pytest.raises(ConfigError, match="data.train and data.train_sets"):
        load_train_sets(cfg, COCO17)


def test_humanart_21_keypoints_map_onto_coco17_by_name(real_humanart_dir: Path) -> None:
    cfg = config_from_mapping({})
    source = config_from_mapping(
        {"data": {"val": {
            "labels": str(real_humanart_dir / "annotations" / "test_humanart.json"),
            "images": str(real_humanart_dir), "schema": "humanart21",
            "keypoints_field": "keypoints_21"}}}
    ).data.val  # fmt: skip
    data = load_source(source, cfg, COCO17, "data.val")
    plain = load_source(source.model_copy(update={"keypoint_schema": None,
                        "keypoints_field": None}), cfg, COCO17, "data.val")  # fmt: skip
    assert data.remapped and data.schema == COCO17
    for mapped, record in zip(data.images, plain.images, strict=True):
        assert mapped.keypoints.shape[1] == 17
        # the first 17 of keypoints_21 are COCO's, as in the plain `keypoints` field
        np.testing.assert_allclose(mapped.keypoints, record.keypoints, atol=1e-3)
