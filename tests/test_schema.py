from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from posekit.errors import SchemaError
from posekit.schema import COCO17, load_schema, make_schema, schema_from_dict


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "schema.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _fourteen() -> dict:
    names = [f"kp{i}" for i in range(14)]
    return {
        "name": "custom14",
        "keypoints": names,
        "skeleton": [[i, i + 1] for i in range(13)],
        "flip_pairs": [[0, 1], [2, 3]],
        "sigmas": [0.05] * 14,
    }


def test_coco17_is_complete_and_consistent() -> None:
    assert COCO17.num_keypoints == 17
    assert COCO17.num_limbs == 19
    assert COCO17.keypoints[5] == "left_shoulder"
    flip = COCO17.flip_index()
    assert np.array_equal(flip[flip], np.arange(17))  # flipping twice is the identity
    for a, b in COCO17.flip_pairs:
        assert COCO17.keypoints[a].replace("left", "right") == COCO17.keypoints[b]
    assert COCO17.sigmas_array()[0] == pytest.approx(0.026)
    assert COCO17.joint_weights_array().shape == (17,)


def test_load_builtin_by_name() -> None:
    assert load_schema("coco17") is COCO17


def test_custom_yaml_with_any_keypoint_count(tmp_path: Path) -> None:
    schema = load_schema(_write(tmp_path, _fourteen()))
    assert schema.num_keypoints == 14
    assert schema.flip_index()[:4].tolist() == [1, 0, 3, 2]
    assert schema.joint_weights == (1.0,) * 14


def test_schema_round_trips_through_dict() -> None:
    assert schema_from_dict(COCO17.to_dict()) == COCO17


def test_schema_without_sigmas_reports_clearly(tmp_path: Path) -> None:
    data = _fourteen()
    del data["sigmas"]
    schema = load_schema(_write(tmp_path, data))
    assert not schema.has_sigmas
    with pytest.raises(SchemaError, match="no 'sigmas'"):
        schema.sigmas_array()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"skeleton": [[0, 14]]}, "out of range"),
        ({"flip_pairs": [[0, 1], [1, 2]]}, "more than one pair"),
        ({"flip_pairs": [[3, 3]]}, "itself"),
        ({"sigmas": [0.05] * 13}, "has 13 entries"),
        ({"sigmas": [0.05] * 13 + [-1.0]}, "> 0"),
        ({"joint_weights": [1.0] * 15}, "joint_weights has 15"),
        ({"keypoints": ["a", "a"]}, "duplicate"),
        ({"skeleton": [[0, "x"]]}, "integer"),
        ({"skelton": []}, "did you mean 'skeleton'"),
    ],
)
def test_invalid_schemas_are_rejected(tmp_path: Path, change: dict, message: str) -> None:
    data = {**_fourteen(), **change}
    if "keypoints" in change:
        data.update(skeleton=[[0, 1]], flip_pairs=[], sigmas=None)
    path = _write(tmp_path, data)
    with pytest.raises(SchemaError, match=message) as info:
        load_schema(path)
    assert "\n" not in str(info.value)


def test_unknown_schema_name_suggests_builtin() -> None:
    with pytest.raises(SchemaError, match="did you mean 'coco17'"):
        load_schema("coco18")


def test_malformed_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("keypoints: [a, b\n")
    with pytest.raises(SchemaError, match="bad.yaml"):
        load_schema(path)


def test_make_schema_defaults() -> None:
    schema = make_schema("two", ["a", "b"], [[0, 1]])
    assert schema.flip_pairs == ()
    assert schema.sigmas is None


def test_body_halves_split_coco17_at_the_hips() -> None:
    upper, lower = COCO17.body_halves()
    assert upper.tolist() == list(range(11))
    assert lower.tolist() == list(range(11, 17))


def test_body_halves_of_a_custom_set_follow_the_names() -> None:
    schema = make_schema("feet", ["head", "left_heel", "Right_Toe", "left_wrist"], [[0, 3]])
    upper, lower = schema.body_halves()
    assert upper.tolist() == [0, 3]
    assert lower.tolist() == [1, 2]
