from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posekit.data.transforms import compose_affine, hflip_matrix, transform_points, warp_image
from posekit.topdown.augment import (
    TopDownAugmentParams,
    box_to_centre_scale,
    half_body_centre_scale,
    sample_box_transform,
    topdown_augment,
    topdown_eval_transform,
    topdown_matrix,
)

OUT = (128, 96)  # (h, w): aspect 0.75
ASPECT = OUT[1] / OUT[0]
RED, GREEN = (0, 0, 255), (0, 255, 0)  # BGR
UPPER, LOWER = np.arange(0, 5), np.arange(5, 10)


# --- box_to_centre_scale -------------------------------------------------------------------


def test_box_to_centre_scale_widens_a_tall_box_and_heightens_a_wide_one() -> None:
    centre, scale = box_to_centre_scale(np.array([10.0, 20.0, 30.0, 200.0]), 0.75, 1.0)
    np.testing.assert_allclose(centre, [24.5, 119.5])  # pixel-index centre
    np.testing.assert_allclose(scale, [150.0, 200.0])
    centre, scale = box_to_centre_scale(np.array([0.0, 0.0, 100.0, 50.0]), 0.75, 1.25)
    np.testing.assert_allclose(centre, [49.5, 24.5])
    np.testing.assert_allclose(scale, [125.0, 100.0 / 0.75 * 1.25])
    assert scale.dtype == np.float64


@settings(max_examples=60, deadline=None)
@given(
    st.floats(-100, 100),
    st.floats(-100, 100),
    st.floats(1, 500),
    st.floats(1, 500),
    st.floats(0.2, 5),
    st.floats(1, 2),
)
def test_box_to_centre_scale_properties(x, y, w, h, aspect, padding) -> None:
    centre, scale = box_to_centre_scale(np.array([x, y, w, h]), aspect, padding)
    np.testing.assert_allclose(centre, [x + w / 2 - 0.5, y + h / 2 - 0.5])
    assert scale[0] / scale[1] == pytest.approx(aspect)
    assert scale[0] >= w * padding * (1 - 1e-9) and scale[1] >= h * padding * (1 - 1e-9)
    # one side is unchanged (apart from the padding): the box is never shrunk nor overgrown
    assert min(scale[0] / (w * padding), scale[1] / (h * padding)) == pytest.approx(1.0)


@pytest.mark.parametrize(("aspect", "padding"), [(0.0, 1.25), (-1.0, 1.25), (0.75, 0.0)])
def test_box_to_centre_scale_rejects_bad_arguments(aspect: float, padding: float) -> None:
    with pytest.raises(ValueError):
        box_to_centre_scale(np.array([0.0, 0.0, 10.0, 10.0]), aspect, padding)


# --- half_body_centre_scale ----------------------------------------------------------------


def _body(num_upper: int, num_lower: int) -> np.ndarray:
    """10 keypoints: 0-4 upper body around y = 10, 5-9 lower body around y = 100."""
    keypoints = np.zeros((10, 3))
    keypoints[:5, :2] = np.stack([np.linspace(0, 40, 5), np.linspace(0, 20, 5)], axis=1)
    keypoints[5:, :2] = np.stack([np.linspace(0, 20, 5), np.linspace(80, 120, 5)], axis=1)
    keypoints[:num_upper, 2] = 2
    keypoints[5 : 5 + num_lower, 2] = 1
    return keypoints


def _pick(num_upper: int, num_lower: int, prefer_upper: bool) -> str | None:
    result = half_body_centre_scale(
        _body(num_upper, num_lower), UPPER, LOWER, 1.0, 1.0, prefer_upper, 2, 3
    )
    if result is None:
        return None
    return "upper" if result[0][1] < 50 else "lower"


@pytest.mark.parametrize(
    ("num_upper", "num_lower", "prefer_upper", "expected"),
    [
        (5, 5, True, "upper"),
        (5, 5, False, "lower"),
        (5, 2, False, "upper"),  # too few lower points: upper even when lower is preferred
        (1, 5, True, "lower"),  # too few upper points: lower even when upper is preferred
        (2, 3, True, "upper"),  # the minimums are inclusive
        (2, 3, False, "lower"),
        (1, 2, True, None),
        (1, 2, False, None),
        (0, 0, True, None),
    ],
)
def test_half_body_picks_upper_lower_or_none(num_upper, num_lower, prefer_upper, expected):
    assert _pick(num_upper, num_lower, prefer_upper) == expected


def test_half_body_box_is_the_mean_and_expanded_extent() -> None:
    keypoints = _body(5, 0)  # upper points span x 0..40, y 0..20
    centre, scale = half_body_centre_scale(keypoints, UPPER, LOWER, 0.5, 1.5, True)
    np.testing.assert_allclose(centre, [20.0, 10.0])
    np.testing.assert_allclose(scale, [40.0 * 1.5, 80.0 * 1.5])  # heightened to w/h = 0.5
    keypoints[:5, :2] = 7.0  # all upper points coincide: no usable box
    assert half_body_centre_scale(keypoints, UPPER, LOWER, 0.5, 1.5, True) is None


# --- topdown_matrix ------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    st.floats(-500, 500),
    st.floats(-500, 500),
    st.floats(5, 800),
    st.integers(8, 300),
    st.integers(8, 300),
    st.floats(-180, 180),
)
def test_topdown_matrix_maps_the_box_onto_the_crop(cx, cy, scale_w, out_h, out_w, rotation):
    scale = np.array([scale_w, scale_w * out_h / out_w])
    centre = np.array([cx, cy])
    matrix = topdown_matrix(centre, scale, rotation, (out_h, out_w))
    mid = [(out_w - 1) / 2, (out_h - 1) / 2]
    np.testing.assert_allclose(transform_points(centre, matrix), mid, atol=1e-6)
    unrotated = topdown_matrix(centre, scale, 0.0, (out_h, out_w))
    corners = np.array([centre - scale / 2, centre + scale / 2])  # box edges: the crop border
    expected = [[-0.5, -0.5], [out_w - 0.5, out_h - 0.5]]
    np.testing.assert_allclose(transform_points(corners, unrotated), expected, atol=1e-6)
    flipped = topdown_matrix(centre, scale, rotation, (out_h, out_w), flip=True)
    np.testing.assert_allclose(flipped, compose_affine(hflip_matrix(out_w), matrix), atol=1e-9)
    point = centre + np.array([scale_w / 4, 0.0])
    x, y = transform_points(point, matrix)
    np.testing.assert_allclose(transform_points(point, flipped), [out_w - 1 - x, y], atol=1e-6)


def test_topdown_matrix_rejects_a_zero_scale() -> None:
    with pytest.raises(ValueError):
        topdown_matrix(np.zeros(2), np.zeros(2), 0.0, OUT)


# --- sample_box_transform ------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(20))
def test_sample_box_transform_ranges_and_a_stable_stream(seed: int) -> None:
    centre, scale = np.array([50.0, 60.0]), np.array([30.0, 40.0])
    always = TopDownAugmentParams(shift_prob=1.0, rotate_prob=1.0)
    never = TopDownAugmentParams(shift_prob=0.0, rotate_prob=0.0, scale_min=1.0, scale_max=1.0)
    rng_a, rng_b = np.random.default_rng(seed), np.random.default_rng(seed)
    new_centre, new_scale, rotation = sample_box_transform(rng_a, centre, scale, always)
    assert np.all(np.abs(new_centre - centre) <= 0.16 * scale + 1e-9)
    assert 0.75 <= new_scale[0] / scale[0] <= 1.25
    assert new_scale[0] / scale[0] == pytest.approx(new_scale[1] / scale[1])
    assert abs(rotation) <= 40.0
    same_centre, same_scale, zero = sample_box_transform(rng_b, centre, scale, never)
    np.testing.assert_array_equal(same_centre, centre)
    np.testing.assert_array_equal(same_scale, scale)
    assert zero == 0.0
    assert rng_a.random() == rng_b.random()  # the same count of numbers was drawn
    np.testing.assert_array_equal(centre, [50.0, 60.0])  # inputs untouched


def test_sample_box_transform_does_shift_scale_and_rotate() -> None:
    rng = np.random.default_rng(0)
    params = TopDownAugmentParams(shift_prob=1.0, rotate_prob=1.0)
    draws = [sample_box_transform(rng, np.zeros(2), np.ones(2), params) for _ in range(20)]
    assert all(np.any(c != 0) and r != 0.0 for c, _, r in draws)
    assert len({float(s[0]) for _, s, _ in draws}) == 20


# --- topdown_augment -----------------------------------------------------------------------


def _scene() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A black image with a red dot at keypoint 0 ("left") and a green one at keypoint 1."""
    image = np.zeros((240, 200, 3), dtype=np.uint8)
    keypoints = np.array([[80.0, 100.0, 2.0], [125.0, 140.0, 2.0]])
    for (x, y, _), colour in zip(keypoints, (RED, GREEN), strict=True):
        cv2.circle(image, (round(x), round(y)), 6, colour, thickness=-1)
    centre, scale = box_to_centre_scale(np.array([60.0, 70.0, 90.0, 100.0]), ASPECT)
    return image, keypoints, centre, scale


def _augment(seed: int, params: TopDownAugmentParams | None = None, **kwargs):
    image, keypoints, centre, scale = _scene()
    kwargs = {
        "flip_index": np.array([1, 0]),
        "upper_ids": np.array([0]),
        "lower_ids": np.array([1]),
        **kwargs,
    }
    params = TopDownAugmentParams(shift_prob=1.0, rotate_prob=1.0) if params is None else params
    return topdown_augment(
        image,
        keypoints,
        centre,
        scale,
        OUT,
        rng=np.random.default_rng(seed),
        params=params,
        border_value=(0, 0, 0),
        **kwargs,
    )


def test_augmented_keypoints_land_on_their_dots_including_under_flip() -> None:
    flips = set()
    for seed in range(12):
        crop, keypoints, matrix = _augment(seed)
        assert crop.shape == (*OUT, 3) and crop.dtype == np.uint8
        assert keypoints.shape == (2, 3) and keypoints.dtype == np.float32
        assert matrix.shape == (2, 3)
        flipped = np.linalg.det(matrix[:, :2]) < 0
        flips.add(bool(flipped))
        # after a mirror the red ("left") dot is the right one: channel 1
        colours = (GREEN, RED) if flipped else (RED, GREEN)
        for (x, y, v), colour in zip(keypoints, colours, strict=True):
            assert v == 2  # the dots stay inside the crop for these seeds
            pixel = crop[round(y), round(x)].astype(int)
            channel = int(np.argmax(colour))
            assert pixel[channel] > 200 and pixel.sum() - pixel[channel] < 60
    assert flips == {True, False}


def test_augment_output_agrees_with_its_matrix() -> None:
    image, keypoints, _, _ = _scene()
    crop, out_keypoints, matrix = _augment(3, TopDownAugmentParams(flip_prob=0.0))
    np.testing.assert_array_equal(crop, warp_image(image, matrix, OUT, (0, 0, 0)))
    np.testing.assert_allclose(
        out_keypoints[:, :2], transform_points(keypoints[:, :2], matrix), rtol=1e-6
    )


@pytest.mark.parametrize("seed", range(6))
def test_augment_draws_in_the_documented_order(seed: int) -> None:
    """Half-body coins, then the box transform, then the flip coin."""
    _, _, centre, scale = _scene()
    params = TopDownAugmentParams(shift_prob=0.5, rotate_prob=0.5)
    _, _, matrix = _augment(seed, params)
    rng = np.random.default_rng(seed)
    rng.random(), rng.random()
    new_centre, new_scale, rotation = sample_box_transform(rng, centre, scale, params)
    flip = rng.random() < params.flip_prob
    expected = topdown_matrix(new_centre, new_scale, rotation, OUT, flip=flip)
    np.testing.assert_allclose(matrix, expected)


def test_keypoints_outside_the_crop_are_unlabelled() -> None:
    image, keypoints, centre, _ = _scene()
    params = TopDownAugmentParams(
        flip_prob=0.0, shift_prob=0.0, rotate_prob=0.0, scale_min=1.0, scale_max=1.0
    )
    tight = np.array([12.0, 16.0])  # a region far smaller than the dots' spread
    _, out, _ = topdown_augment(
        image,
        keypoints,
        centre,
        tight,
        OUT,
        np.array([1, 0]),
        np.array([0]),
        np.array([1]),
        np.random.default_rng(0),
        params,
    )
    np.testing.assert_array_equal(out[:, 2], [0.0, 0.0])


def test_half_body_recentres_on_the_chosen_part() -> None:
    image = np.zeros((240, 200, 3), dtype=np.uint8)
    keypoints = _body(5, 5)
    keypoints[:, :2] += 50.0
    centre, scale = box_to_centre_scale(np.array([40.0, 40.0, 60.0, 140.0]), ASPECT)
    params = TopDownAugmentParams(
        half_body_prob=1.0,
        half_body_min_keypoints=10,
        flip_prob=0.0,
        shift_prob=0.0,
        rotate_prob=0.0,
        scale_min=1.0,
        scale_max=1.0,
    )
    parts = set()
    for seed in range(8):
        _, _, matrix = topdown_augment(
            image,
            keypoints,
            centre,
            scale,
            OUT,
            np.arange(10),
            UPPER,
            LOWER,
            np.random.default_rng(seed),
            params,
        )
        options = {
            name: half_body_centre_scale(keypoints, UPPER, LOWER, ASPECT, 1.5, prefer)
            for name, prefer in (("upper", True), ("lower", False))
        }
        for name, (part_centre, part_scale) in options.items():
            if np.allclose(matrix, topdown_matrix(part_centre, part_scale, 0.0, OUT)):
                parts.add(name)
    assert parts == {"upper", "lower"}
    keypoints[0, 2] = 0  # 9 labelled < half_body_min_keypoints: the whole box is kept
    _, _, matrix = topdown_augment(
        image,
        keypoints,
        centre,
        scale,
        OUT,
        np.arange(10),
        UPPER,
        LOWER,
        np.random.default_rng(0),
        params,
    )
    np.testing.assert_allclose(matrix, topdown_matrix(centre, scale, 0.0, OUT))


def test_same_seed_same_output_and_different_seeds_differ() -> None:
    first, second, other = _augment(5), _augment(5), _augment(6)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[2], other[2])
    assert not np.array_equal(first[0], other[0])


def test_inputs_are_not_mutated() -> None:
    image, keypoints, centre, scale = _scene()
    arrays = [image, keypoints, centre, scale, np.array([1, 0]), np.array([0]), np.array([1])]
    copies = [a.copy() for a in arrays]
    for array in arrays:
        array.setflags(write=False)
    params = TopDownAugmentParams(
        half_body_prob=1.0,
        half_body_min_keypoints=0,
        half_body_min_upper=1,
        half_body_min_lower=1,
        flip_prob=1.0,
    )
    topdown_augment(*arrays[:4], OUT, *arrays[4:], np.random.default_rng(0), params)
    topdown_eval_transform(image, centre, scale, OUT)
    for array, copy in zip(arrays, copies, strict=True):
        np.testing.assert_array_equal(array, copy)


def test_augment_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="flip_index"):
        _augment(0, flip_index=np.array([0, 1, 2]))
    image, keypoints, centre, scale = _scene()
    with pytest.raises(ValueError, match="keypoints"):
        topdown_augment(
            image,
            keypoints[None],
            centre,
            scale,
            OUT,
            np.array([1, 0]),
            np.array([0]),
            np.array([1]),
            np.random.default_rng(0),
            TopDownAugmentParams(),
        )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"flip_prob": 1.5},
        {"half_body_prob": -0.1},
        {"shift_prob": 2.0},
        {"rotate_prob": -1.0},
        {"scale_min": 1.3, "scale_max": 1.2},
        {"scale_min": 0.0},
        {"scale_min": -0.5, "scale_max": 1.0},
        {"half_body_padding": 0.0},
        {"rotate_max": -1.0},
    ],
)
def test_params_validation(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        TopDownAugmentParams(**kwargs)


def test_params_defaults_are_valid_and_frozen() -> None:
    params = TopDownAugmentParams()
    with pytest.raises(AttributeError):
        params.flip_prob = 0.1  # type: ignore[misc]


# --- topdown_eval_transform ----------------------------------------------------------------


def test_eval_transform_is_deterministic_and_unrotated() -> None:
    image, keypoints, centre, scale = _scene()
    crop, matrix = topdown_eval_transform(image, centre, scale, OUT)
    again, matrix_again = topdown_eval_transform(image, centre, scale, OUT)
    np.testing.assert_array_equal(crop, again)
    np.testing.assert_array_equal(matrix, matrix_again)
    np.testing.assert_allclose(matrix, topdown_matrix(centre, scale, 0.0, OUT))
    np.testing.assert_array_equal(crop, warp_image(image, matrix, OUT))
    x, y = transform_points(keypoints[0, :2], matrix)
    assert crop[round(y), round(x), 2] > 200  # the red dot
