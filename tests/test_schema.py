from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from posekit.errors import SchemaError
from posekit.schema import (
    COCO17,
    builtin_schema_for_names,
    builtin_schema_names,
    first_name_difference,
    load_schema,
    make_schema,
    normalise_keypoint_name,
    schema_from_dict,
)

from .conftest import real_sample


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


# --- built-in data-set schemas -------------------------------------------------------------

BUILTIN_COUNTS = {
    "coco17": 17,
    "crowdpose": 14,
    "aic": 14,
    "mpii": 16,
    "ochuman": 17,
    "posetrack18": 17,
    "coco_wholebody": 133,
    "halpe": 136,
    "halpe26": 26,
    "ap10k": 17,
    "macaque": 17,
    "humanart21": 21,
    "body14": 14,
}


def _mirror(name: str) -> str:
    if name.startswith("left_"):
        return "right_" + name[len("left_") :]
    if name.startswith("right_"):
        return "left_" + name[len("right_") :]
    return name


def test_builtin_schema_names_lists_every_shipped_yaml() -> None:
    assert builtin_schema_names()[0] == "coco17"
    assert sorted(builtin_schema_names()) == sorted(BUILTIN_COUNTS)


@pytest.mark.parametrize(("name", "count"), sorted(BUILTIN_COUNTS.items()))
def test_builtin_schema_loads_by_name_and_is_consistent(name: str, count: int) -> None:
    schema = load_schema(name)
    assert schema.name == name
    assert schema.num_keypoints == count
    assert schema.num_limbs > 0
    if name == "mpii":
        assert schema.sigmas is None  # scored by PCKh
    else:
        assert schema.sigmas_array().shape == (count,)
    assert all(k == normalise_keypoint_name(k) for k in schema.keypoints)
    flip = schema.flip_index()
    assert np.array_equal(flip[flip], np.arange(count))
    paired = set()
    for a, b in schema.flip_pairs:
        first, second = schema.keypoints[a], schema.keypoints[b]
        if first.startswith("face_"):  # whole-body face points mirror to face points
            assert second.startswith("face_")
        else:
            assert _mirror(first) == second != first
        paired.update((first, second))
    # every left_/right_ keypoint whose mirror exists is in a pair
    for keypoint in schema.keypoints:
        if _mirror(keypoint) != keypoint and _mirror(keypoint) in schema.keypoints:
            assert keypoint in paired
    assert schema_from_dict(schema.to_dict()) == schema


def test_coco_like_schemas_share_coco17_names_and_sigmas() -> None:
    for name in ("ochuman", "macaque"):
        schema = load_schema(name)
        assert schema.keypoints == COCO17.keypoints
        assert schema.sigmas == COCO17.sigmas
        assert set(schema.skeleton) == set(COCO17.skeleton)
        assert schema.flip_pairs == COCO17.flip_pairs


def test_whole_body_schemas_layout() -> None:
    wholebody = load_schema("coco_wholebody")
    assert wholebody.keypoints[:17] == COCO17.keypoints
    assert wholebody.sigmas is not None and wholebody.sigmas[:17] == COCO17.sigmas
    assert wholebody.keypoints[17:23] == (
        "left_big_toe", "left_small_toe", "left_heel",
        "right_big_toe", "right_small_toe", "right_heel",
    )  # fmt: skip
    assert wholebody.keypoints[23:91] == tuple(f"face_{i}" for i in range(68))
    assert wholebody.keypoints[91] == "left_hand_root"
    assert wholebody.keypoints[112] == "right_hand_root"
    assert wholebody.flip_index()[23] == 39  # jaw line: face_0 <-> face_16
    assert wholebody.keypoints_fields == (
        "keypoints", "foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts",
    )  # fmt: skip
    halpe, halpe26 = load_schema("halpe"), load_schema("halpe26")
    assert halpe.keypoints[:26] == halpe26.keypoints
    assert halpe26.keypoints[17:20] == ("head", "neck", "hip")
    assert halpe.keypoints[26:94] == tuple(f"face_{i}" for i in range(68))
    assert halpe.keypoints[94:] == wholebody.keypoints[91:]
    assert halpe.keypoints_fields is None


def test_only_wholebody_and_humanart21_have_keypoints_fields() -> None:
    fields = {
        "coco_wholebody": (
            "keypoints",
            "foot_kpts",
            "face_kpts",
            "lefthand_kpts",
            "righthand_kpts",
        ),
        "humanart21": ("keypoints_21",),
    }
    for name in [*BUILTIN_COUNTS, "humanart21"]:
        schema = load_schema(name)
        assert schema.keypoints_fields == fields.get(name)
        assert ("keypoints_fields" in schema.to_dict()) == (name in fields)


def test_keypoints_fields_round_trip_and_old_dicts_still_load() -> None:
    schema = make_schema("two", ["a", "b"], [[0, 1]], keypoints_fields=["keypoints", "extra"])
    assert schema.keypoints_fields == ("keypoints", "extra")
    data = schema.to_dict()
    assert data["keypoints_fields"] == ["keypoints", "extra"]
    assert schema_from_dict(data) == schema
    old = COCO17.to_dict()
    assert "keypoints_fields" not in old  # the form checkpoints have always stored
    assert schema_from_dict(old).keypoints_fields is None


@pytest.mark.parametrize(
    "fields", [[], "keypoints", ["keypoints", ""], ["keypoints", 3], ["a", "a"]]
)
def test_invalid_keypoints_fields_are_rejected(tmp_path: Path, fields: object) -> None:
    data = {**_fourteen(), "keypoints_fields": fields}
    with pytest.raises(SchemaError, match="keypoints_fields") as info:
        load_schema(_write(tmp_path, data))
    assert "\n" not in str(info.value)


def test_normalise_keypoint_name() -> None:
    assert normalise_keypoint_name(" Right Shoulder ") == "right_shoulder"
    assert normalise_keypoint_name("Head top") == "head_top"
    assert normalise_keypoint_name("face-0") == "face_0"
    assert normalise_keypoint_name("left_eye") == "left_eye"


def test_builtin_schema_for_names() -> None:
    assert builtin_schema_for_names(list(COCO17.keypoints)) == "coco17"  # not ochuman/macaque
    assert builtin_schema_for_names([k.upper() for k in COCO17.keypoints]) == "coco17"
    assert builtin_schema_for_names(list(load_schema("halpe").keypoints)) == "halpe"
    hyphenated = [k.replace("face_", "face-") for k in load_schema("coco_wholebody").keypoints]
    assert builtin_schema_for_names(hyphenated) == "coco_wholebody"
    assert builtin_schema_for_names(list(reversed(COCO17.keypoints))) is None  # order counts
    assert builtin_schema_for_names(["a", "b"]) is None
    assert builtin_schema_for_names([]) is None


def test_first_name_difference() -> None:
    posetrack = load_schema("posetrack18")
    assert first_name_difference([k.title() for k in COCO17.keypoints], COCO17) is None
    assert first_name_difference(list(posetrack.keypoints), COCO17) == (
        "keypoint 1 is 'head_bottom' in the file, 'left_eye' in schema 'coco17'"
    )
    assert first_name_difference(list(load_schema("crowdpose").keypoints), COCO17) == (
        "the file names 14 keypoints, schema 'coco17' 17"
    )


REAL_FILES = [
    ("crowdpose/test_crowdpose.json", "crowdpose"),
    ("aic/test_aic.json", "aic"),
    ("ap10k/test_ap10k.json", "ap10k"),
    ("macaque/test_macaque.json", "coco17"),  # COCO's names: coco17 is preferred
    ("posetrack18/annotations/test_posetrack18_val.json", "posetrack18"),
    ("coco/test_coco.json", "coco17"),
    ("coco/test_coco_wholebody.json", "coco17"),  # categories name the 17 body points only
    ("humanart/annotations/test_humanart.json", "humanart21"),
]


@pytest.mark.parametrize(("relative", "expected"), REAL_FILES)
def test_real_annotation_files_match_their_schema(relative: str, expected: str) -> None:
    path = real_sample(relative)
    categories = json.loads(path.read_text(encoding="utf-8"))["categories"]
    assert categories
    for category in categories:
        names = category["keypoints"]
        assert builtin_schema_for_names(names) == expected, category.get("name")
        assert first_name_difference(names, load_schema(expected)) is None
    if relative.startswith("macaque"):
        assert first_name_difference(categories[0]["keypoints"], load_schema("macaque")) is None


def test_real_coco_wholebody_fields_make_133_keypoints() -> None:
    path = real_sample("coco/test_coco_wholebody.json")
    schema = load_schema("coco_wholebody")
    assert schema.keypoints_fields is not None
    for annotation in json.loads(path.read_text(encoding="utf-8"))["annotations"]:
        values = sum(len(annotation[name]) for name in schema.keypoints_fields)
        assert values == 3 * schema.num_keypoints


def test_real_mpii_file_has_sixteen_joints() -> None:
    path = real_sample("mpii/test_mpii.json")
    schema = load_schema("mpii")
    for entry in json.loads(path.read_text(encoding="utf-8")):
        assert len(entry["joints"]) == len(entry["joints_vis"]) == schema.num_keypoints
