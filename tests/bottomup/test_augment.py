from __future__ import annotations

import cv2
import numpy as np
import pytest

from posekit.bottomup.augment import (
    BottomUpAugmentParams,
    bottomup_augment,
    bottomup_eval_transform,
    invert_affine,
    sample_bottomup_matrix,
)
from posekit.data.transforms import flip_keypoint_order, warp_keypoints, warp_mask
from posekit.schema import COCO17

INPUT = (368, 368)
FLIP = COCO17.flip_index()
NO_COLOUR = {"brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "hue": 0.0}


def _person(shoulder: tuple[float, float] = (330.0, 200.0)) -> np.ndarray:
    """One COCO-17 person about 200 px tall; the left shoulder (5) at ``shoulder``."""
    keypoints = np.zeros((1, 17, 3), dtype=np.float32)
    keypoints[0, 0] = (300.0, 150.0, 2)  # nose
    keypoints[0, 5] = (*shoulder, 2)  # left shoulder
    keypoints[0, 15] = (320.0, 350.0, 1)  # left ankle
    return keypoints


def _dot_image(x: float, y: float, shape=(480, 640)) -> np.ndarray:
    image = np.zeros((*shape, 3), dtype=np.uint8)
    cv2.circle(image, (round(x), round(y)), 5, (255, 255, 255), thickness=-1)
    return image


def _centroid(image: np.ndarray) -> np.ndarray:
    weight = image[..., 0].astype(np.float64)
    ys, xs = np.mgrid[: image.shape[0], : image.shape[1]]
    return np.array([(xs * weight).sum(), (ys * weight).sum()]) / weight.sum()


@pytest.mark.parametrize("seed", range(8))
def test_augmented_image_and_keypoints_agree(seed: int) -> None:
    keypoints = _person()
    image = _dot_image(*keypoints[0, 5, :2])
    params = BottomUpAugmentParams(border_value=(0, 0, 0), **NO_COLOUR)
    matrix, flipped = sample_bottomup_matrix(
        image.shape[:2], keypoints, INPUT, np.random.default_rng(seed), params
    )
    out_image, out_kp, out_mask = bottomup_augment(
        image, keypoints, None, INPUT, FLIP, np.random.default_rng(seed), params
    )
    assert out_image.shape == (*INPUT, 3) and out_image.dtype == np.uint8
    assert out_kp.shape == (1, 17, 3) and out_kp.dtype == np.float32
    assert out_mask.shape == INPUT and not out_mask.any()
    expected = warp_keypoints(keypoints, matrix, INPUT)
    if flipped:
        expected = flip_keypoint_order(expected, FLIP)
    np.testing.assert_array_equal(out_kp, expected)
    shoulder = out_kp[0, 6 if flipped else 5]  # a mirrored left shoulder is a right one
    assert out_kp[0, 5 if flipped else 6, 2] == 0
    assert shoulder[2] == 2  # inside the crop for these seeds (both flip outcomes occur)
    np.testing.assert_allclose(_centroid(out_image), shoulder[:2], atol=1.0)


def test_keypoints_outside_the_crop_are_unlabelled() -> None:
    params = BottomUpAugmentParams(scale_min=1.0, scale_max=1.0, max_rotate=0.0)
    keypoints = np.concatenate([_person(), _person()])
    keypoints[1, :, :2] = (5.0, 5.0)  # a second person in the far corner
    keypoints[1, 1:, 2] = 0
    boxes = np.array([[250.0, 120.0, 120.0, 250.0], [0.0, 0.0, 10.0, 10.0]])
    for seed in range(10):
        rng = np.random.default_rng(seed)
        _, out_kp, _ = bottomup_augment(
            _dot_image(0, 0), keypoints, None, INPUT, FLIP, rng, params, boxes
        )
        if out_kp[0, :, 2].any():  # the first person was picked: the corner is cut off
            assert not out_kp[1, :, 2].any()
            return
    raise AssertionError("the first person was never picked")


def test_both_flip_outcomes_happen() -> None:
    params = BottomUpAugmentParams()
    flips = [
        sample_bottomup_matrix((480, 640), _person(), INPUT, np.random.default_rng(s), params)[1]
        for s in range(40)
    ]
    assert any(flips) and not all(flips)


def test_flip_always_mirrors_and_swaps_channels() -> None:
    params = BottomUpAugmentParams(
        scale_min=1.0, scale_max=1.0, max_rotate=0.0, center_perturb_max=0.0, flip_prob=1.0
    )
    keypoints = _person()
    keypoints[0, 6] = (280.0, 200.0, 2)  # right shoulder, left of the left one on screen
    _, out_kp, _ = bottomup_augment(
        _dot_image(0, 0), keypoints, None, INPUT, FLIP, np.random.default_rng(0), params
    )
    # a person facing the camera still faces it in the mirror: the right shoulder stays on
    # the screen's left, and it is the point that was the left shoulder (the crop centre is
    # the middle of the labelled keypoints' extent, x = 305)
    assert out_kp[0, 6, 0] < out_kp[0, 5, 0]
    assert out_kp[0, 6, 0] == pytest.approx(367 - (183.5 + (330 - 305.0) * 0.6 * 368 / 200))
    assert out_kp[0, 5, 2] == 2 and out_kp[0, 6, 2] == 2


def test_person_scale_follows_target_dist_and_boxes() -> None:
    params = BottomUpAugmentParams(scale_min=1.0, scale_max=1.0, max_rotate=0.0)
    rng = np.random.default_rng(0)
    matrix, _ = sample_bottomup_matrix((480, 640), _person(), INPUT, rng, params)
    assert np.sqrt(abs(np.linalg.det(matrix[:, :2]))) == pytest.approx(0.6 * 368 / 200)
    boxes = np.array([[250.0, 120.0, 120.0, 250.0]])
    matrix, _ = sample_bottomup_matrix((480, 640), _person(), INPUT, rng, params, boxes)
    assert np.sqrt(abs(np.linalg.det(matrix[:, :2]))) == pytest.approx(0.6 * 368 / 250)
    tiny = np.zeros((1, 17, 3), dtype=np.float32)
    tiny[0, :2] = [(300.0, 150.0, 2), (303.0, 148.0, 2)]
    matrix, _ = sample_bottomup_matrix((480, 640), tiny, INPUT, rng, params)
    assert np.sqrt(abs(np.linalg.det(matrix[:, :2]))) == pytest.approx(params.max_zoom)


def test_no_labelled_person_fits_the_image_at_the_centre() -> None:
    params = BottomUpAugmentParams(
        scale_min=1.0, scale_max=1.0, max_rotate=0.0, center_perturb_max=0.0, **NO_COLOUR
    )
    image = np.full((480, 640, 3), 200, dtype=np.uint8)
    unlabelled = _person()
    unlabelled[..., 2] = 0
    for keypoints in (np.zeros((0, 17, 3)), unlabelled):
        out, out_kp, _ = bottomup_augment(
            image, keypoints, None, INPUT, FLIP, np.random.default_rng(0), params
        )
        assert out_kp.shape == keypoints.shape and not out_kp[..., 2].any()
        rows = np.flatnonzero((out == 200).all(axis=(1, 2)))
        assert out[rows[0] - 2 :, :].mean() < 200  # grey padding above and below
        assert len(rows) == pytest.approx(480 * 368 / 640, abs=2)


def test_ignore_mask_moves_with_the_image_and_inputs_stay_untouched() -> None:
    keypoints = _person()
    image = _dot_image(330, 200)
    mask = np.zeros((480, 640), dtype=np.uint8)
    mask[180:260, 300:420] = 1
    for array in (keypoints, image, mask):
        array.flags.writeable = False
    copies = [keypoints.copy(), image.copy(), mask.copy()]
    params = BottomUpAugmentParams()
    matrix, _ = sample_bottomup_matrix(
        (480, 640), keypoints, INPUT, np.random.default_rng(5), params
    )
    first = bottomup_augment(image, keypoints, mask, INPUT, FLIP, np.random.default_rng(5), params)
    again = bottomup_augment(image, keypoints, mask, INPUT, FLIP, np.random.default_rng(5), params)
    np.testing.assert_array_equal(first[2], warp_mask(mask, matrix, INPUT))
    assert first[2].any()
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    for array, copy in zip((keypoints, image, mask), copies, strict=True):
        np.testing.assert_array_equal(array, copy)


def test_params_are_validated() -> None:
    with pytest.raises(ValueError, match="scale_min"):
        BottomUpAugmentParams(scale_min=1.2, scale_max=1.1)
    with pytest.raises(ValueError, match="flip_prob"):
        BottomUpAugmentParams(flip_prob=1.5)


@pytest.mark.parametrize("shape", [(480, 640), (640, 480), (100, 90)])
def test_eval_transform_letterboxes_and_inverts(shape: tuple[int, int]) -> None:
    keypoints = np.array([[[shape[1] * 0.3, shape[0] * 0.6, 2], [5.0, 7.0, 1]]], np.float32)
    image = _dot_image(*keypoints[0, 0, :2], shape=shape)
    out, mapped, matrix = bottomup_eval_transform(image, INPUT, keypoints)
    assert out.shape == (*INPUT, 3) and out.dtype == np.uint8
    scale = min(368 / shape[0], 368 / shape[1])
    np.testing.assert_allclose(np.diag(matrix[:, :2]), scale, rtol=0.01)  # aspect kept
    content_h, content_w = round(shape[0] * scale), round(shape[1] * scale)
    assert (out[content_h:] == 128).all() and (out[:, content_w:] == 128).all()
    np.testing.assert_allclose(_centroid(np.where(out == 128, 0, out)), mapped[0, 0, :2], atol=1)
    back = warp_keypoints(mapped, invert_affine(matrix), (10_000, 10_000))
    np.testing.assert_allclose(back, keypoints, atol=1e-3)
    assert bottomup_eval_transform(image, INPUT)[1] is None


def test_whole_image_mode_fits_the_image_and_ignores_people() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    keypoints = np.array([[[20.0, 20.0, 2.0], [30.0, 40.0, 2.0]]], np.float32)
    params = BottomUpAugmentParams(
        scale_min=1.0, scale_max=1.0, max_rotate=0.0, center_perturb_max=0.0, flip_prob=0.0,
        whole_image=True,
    )  # fmt: skip
    matrix, flipped = sample_bottomup_matrix(
        image.shape[:2], keypoints, (64, 64), np.random.default_rng(0), params
    )
    corners = np.array([[0.0, 0.0], [199.0, 99.0]]) @ matrix[:, :2].T + matrix[:, 2]
    assert not flipped
    assert corners[:, 0].min() >= -0.5 and corners[:, 0].max() <= 63.5
    assert abs((corners[1, 0] - corners[0, 0]) - 63.68) < 0.5  # width fits the crop
