from __future__ import annotations

import cv2
import numpy as np
import pytest

from posekit.bottomup.layouts import OPENPOSE18
from posekit.data.transforms import (
    affine_matrix,
    color_jitter,
    compose_affine,
    flip_keypoint_order,
    hflip_image,
    hflip_keypoints,
    hflip_matrix,
    invert_affine,
    normalize_image,
    transform_points,
    warp_image,
    warp_keypoints,
    warp_mask,
)
from posekit.schema import COCO17


def _image(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _keypoints(num_people: int, num_types: int, size: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, size, (num_people, num_types, 2))
    v = rng.integers(0, 3, (num_people, num_types, 1))
    return np.concatenate([xy, v], axis=-1).astype(np.float32)


def test_affine_matrix_puts_the_centre_at_the_crop_centre() -> None:
    matrix = affine_matrix((100.0, 50.0), 2.0, 30.0, (368, 256), shift=(5.0, -3.0))
    np.testing.assert_allclose(transform_points([100.0, 50.0], matrix), [127.5 + 5, 183.5 - 3])
    assert np.sqrt(np.linalg.det(matrix[:, :2])) == pytest.approx(2.0)
    # without the move, it is cv2's rotation matrix (counter-clockwise on screen)
    same = affine_matrix((31.5, 23.5), 1.5, 25.0, (48, 64))
    np.testing.assert_allclose(same, cv2.getRotationMatrix2D((31.5, 23.5), 25.0, 1.5))
    up = transform_points([41.5, 23.5], affine_matrix((31.5, 23.5), 1.0, 90.0, (48, 64)))
    np.testing.assert_allclose(up, [31.5, 13.5], atol=1e-9)


def test_flip_in_the_matrix_mirrors_the_output() -> None:
    plain = affine_matrix((40.0, 30.0), 0.8, 10.0, (48, 64))
    flipped = affine_matrix((40.0, 30.0), 0.8, 10.0, (48, 64), flip=True)
    points = np.random.default_rng(0).uniform(0, 60, (10, 2))
    a, b = transform_points(points, plain), transform_points(points, flipped)
    np.testing.assert_allclose(b[:, 0], 63 - a[:, 0])
    np.testing.assert_allclose(b[:, 1], a[:, 1])


def test_compose_and_invert() -> None:
    first = affine_matrix((10.0, 20.0), 1.3, -15.0, (50, 70))
    second = affine_matrix((5.0, 8.0), 0.7, 40.0, (30, 30), flip=True)
    points = np.random.default_rng(1).uniform(-50, 100, (7, 3, 2))
    both = compose_affine(second, first)
    expected = transform_points(transform_points(points, first), second)
    np.testing.assert_allclose(transform_points(points, both), expected)
    back = transform_points(transform_points(points, both), invert_affine(both))
    np.testing.assert_allclose(back, points, atol=1e-9)


@pytest.mark.parametrize("schema", [COCO17, OPENPOSE18], ids=lambda s: s.name)
def test_flip_twice_is_the_identity(schema) -> None:
    image = _image()
    height, width = image.shape[:2]
    keypoints = _keypoints(3, schema.num_keypoints, 47.0)  # inside the 64x48 image
    keypoints.flags.writeable = False
    image.flags.writeable = False
    flip = schema.flip_index()
    matrix = affine_matrix(((width - 1) / 2, (height - 1) / 2), 1.0, 0.0, (height, width), True)
    np.testing.assert_allclose(matrix, hflip_matrix(width))
    once = warp_image(image, matrix, (height, width))
    np.testing.assert_array_equal(once, hflip_image(image))
    np.testing.assert_array_equal(warp_image(once, matrix, (height, width)), image)
    np.testing.assert_array_equal(hflip_image(hflip_image(image)), image)
    kp_once = flip_keypoint_order(warp_keypoints(keypoints, matrix, (height, width)), flip)
    np.testing.assert_allclose(kp_once, hflip_keypoints(keypoints, width, flip))
    kp_twice = flip_keypoint_order(warp_keypoints(kp_once, matrix, (height, width)), flip)
    np.testing.assert_allclose(kp_twice, keypoints, atol=1e-5)
    np.testing.assert_allclose(hflip_keypoints(kp_once, width, flip), keypoints, atol=1e-5)


def test_flipped_left_shoulder_is_the_old_right_shoulder() -> None:
    keypoints = np.zeros((1, 17, 3), dtype=np.float32)
    keypoints[0, 5] = (10.0, 20.0, 2)  # left_shoulder
    keypoints[0, 6] = (30.0, 20.0, 1)  # right_shoulder
    flipped = hflip_keypoints(keypoints, 64, COCO17.flip_index())
    np.testing.assert_allclose(flipped[0, 5], (63 - 30.0, 20.0, 1))
    np.testing.assert_allclose(flipped[0, 6], (63 - 10.0, 20.0, 2))
    with pytest.raises(ValueError, match="flip_index"):
        flip_keypoint_order(keypoints, np.arange(18))


def test_warp_then_invert_returns_the_keypoints_and_outside_points_lose_v() -> None:
    keypoints = _keypoints(4, 17, 640.0, seed=3)
    keypoints.flags.writeable = False
    matrix = affine_matrix((320.0, 240.0), 0.9, 33.0, (368, 368), flip=True)
    warped = warp_keypoints(keypoints, matrix, (368, 368))
    assert warped.dtype == np.float32 and warped.shape == keypoints.shape
    back = warp_keypoints(warped, invert_affine(matrix), (10_000, 10_000))
    np.testing.assert_allclose(back[..., :2], keypoints[..., :2], atol=1e-3)
    xy = warped[..., :2]
    inside = ((xy >= -0.5) & (xy < 367.5)).all(axis=-1)
    assert (~inside).any() and inside.any()
    np.testing.assert_array_equal(warped[..., 2], np.where(inside, keypoints[..., 2], 0))


def test_warp_mask_is_nearest_and_pads_with_use() -> None:
    mask = np.zeros((40, 60), dtype=np.uint8)
    mask[10:20, 30:50] = 1
    matrix = affine_matrix((29.5, 19.5), 2.0, 0.0, (120, 160))  # 2x zoom, with padding
    warped = warp_mask(mask, matrix, (120, 160))
    assert warped.dtype == np.uint8 and set(np.unique(warped)) == {0, 1}
    ys, xs = np.nonzero(warped)
    assert abs(xs.mean() - transform_points([39.5, 14.5], matrix)[0]) < 1
    assert abs(ys.mean() - transform_points([39.5, 14.5], matrix)[1]) < 1
    assert len(xs) == pytest.approx(4 * mask.sum(), rel=0.1)
    # the source covers x in [19.5, 139.5), y in [19.5, 99.5) of the output; the rest is 0
    everywhere = warp_mask(np.ones((40, 60), bool), matrix, (120, 160))
    assert everywhere[20:99, 20:139].all() and everywhere.sum() == 80 * 120


def test_color_jitter() -> None:
    image = _image(32, 32)
    image.flags.writeable = False
    np.testing.assert_array_equal(color_jitter(image), image)
    darker = color_jitter(image, brightness=0.5)
    np.testing.assert_allclose(darker, np.rint(image * 0.5), atol=1)
    flat = color_jitter(image, contrast=0.0)
    assert np.ptp(flat) <= 1
    grey = color_jitter(image, saturation=0.0).astype(int)
    assert np.abs(grey - grey[..., :1]).max() <= 1
    red = np.zeros((4, 4, 3), dtype=np.uint8)
    red[..., 2] = 200
    assert color_jitter(red, hue=1 / 3)[0, 0].argmax() == 1  # red -> green (BGR)
    greys = np.repeat(np.arange(0, 256, 16, dtype=np.uint8)[None, :, None], 3, axis=2)
    np.testing.assert_allclose(color_jitter(greys, saturation=1.7, hue=0.3), greys, atol=1)
    out = color_jitter(image, 1.2, 0.8, 1.3, -0.05)
    assert out.shape == image.shape and out.dtype == np.uint8


def test_normalize_image() -> None:
    image = np.full((5, 7, 3), 128, dtype=np.uint8)
    image[0, 0] = (0, 255, 64)
    out = normalize_image(image)
    assert out.shape == (3, 5, 7) and out.dtype == np.float32 and out.flags.c_contiguous
    assert out[:, 1:, 1:].max() == 0
    np.testing.assert_allclose(out[:, 0, 0], [-0.5, 127 / 256, -0.25])
