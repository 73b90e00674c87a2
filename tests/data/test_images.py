"""read_image: decoding, channel/depth conversion, and one-line DataErrors for bad files."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from posekit.data.images import MAX_IMAGE_PIXELS, header_image_size, read_image
from posekit.errors import DataError


def _write(path: Path, image: np.ndarray) -> Path:
    ok, encoded = cv2.imencode(path.suffix, image)
    assert ok
    path.write_bytes(encoded.tobytes())
    return path


def _assert_one_line_naming(exc: pytest.ExceptionInfo, path: Path) -> None:
    message = str(exc.value)
    assert str(path) in message
    assert "\n" not in message


def test_real_jpeg_matches_imread(real_coco_dir: Path) -> None:
    path = real_coco_dir / "000000000785.jpg"
    image = read_image(path)
    assert image.dtype == np.uint8 and image.shape == (425, 640, 3)
    np.testing.assert_array_equal(image, cv2.imread(str(path), cv2.IMREAD_COLOR))
    assert header_image_size(path.read_bytes()) == (425, 640)


def test_grayscale_becomes_three_equal_channels(tmp_path: Path) -> None:
    gray = np.arange(20 * 30, dtype=np.uint8).reshape(20, 30)
    image = read_image(_write(tmp_path / "gray.png", gray))
    assert image.shape == (20, 30, 3)
    for channel in range(3):
        np.testing.assert_array_equal(image[:, :, channel], gray)


def test_alpha_is_dropped_and_colour_kept(tmp_path: Path) -> None:
    bgra = np.zeros((8, 9, 4), dtype=np.uint8)
    bgra[..., 0], bgra[..., 1], bgra[..., 2], bgra[..., 3] = 10, 20, 30, 7
    image = read_image(_write(tmp_path / "alpha.png", bgra))
    assert image.shape == (8, 9, 3)
    np.testing.assert_array_equal(image[0, 0], [10, 20, 30])


def test_sixteen_bit_is_scaled_to_eight(tmp_path: Path) -> None:
    deep = np.zeros((4, 5, 3), dtype=np.uint16)
    deep[0, 0] = 65535
    deep[1, 1] = 257 * 100
    image = read_image(_write(tmp_path / "deep.png", deep))
    assert image.dtype == np.uint8
    assert image[0, 0].tolist() == [255, 255, 255]
    assert image[1, 1].tolist() == [100, 100, 100]
    assert image[2, 2].tolist() == [0, 0, 0]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.jpg"
    with pytest.raises(DataError, match="not found") as exc:
        read_image(path)
    _assert_one_line_naming(exc, path)


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(DataError, match="empty") as exc:
        read_image(path)
    _assert_one_line_naming(exc, path)


def test_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("this is text, not pixels\n")
    with pytest.raises(DataError, match="not a decodable image") as exc:
        read_image(path)
    _assert_one_line_naming(exc, path)


def test_folder_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="folder"):
        read_image(tmp_path)


def test_truncated_jpeg(tmp_path: Path, real_coco_dir: Path) -> None:
    data = (real_coco_dir / "000000040083.jpg").read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="corrupt, truncated") as exc:
        read_image(path)
    _assert_one_line_naming(exc, path)


def _png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    )


def test_decompression_bomb_refused_from_png_header(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(20_000, 20_000))
    assert header_image_size(path.read_bytes()) == (20_000, 20_000)
    with pytest.raises(DataError, match="decompression bomb") as exc:
        read_image(path)
    _assert_one_line_naming(exc, path)
    assert MAX_IMAGE_PIXELS < 20_000 * 20_000


def test_pixel_limit_applies_after_decode_for_other_formats(tmp_path: Path) -> None:
    path = _write(tmp_path / "small.bmp", np.zeros((10, 10, 3), dtype=np.uint8))
    assert header_image_size(path.read_bytes()) is None
    assert read_image(path).shape == (10, 10, 3)
    with pytest.raises(DataError, match="decompression bomb"):
        read_image(path, max_pixels=99)


def test_jpeg_header_size_of_encoded_image() -> None:
    ok, encoded = cv2.imencode(".jpg", np.zeros((37, 51, 3), dtype=np.uint8))
    assert ok
    assert header_image_size(encoded.tobytes()) == (37, 51)


def test_exif_orientation_is_applied_like_imread(tmp_path: Path) -> None:
    image = np.zeros((20, 40, 3), dtype=np.uint8)
    image[:, :5] = 255
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    orientation = struct.pack(">HHIHH", 0x0112, 3, 1, 6, 0)  # tag, SHORT, count 1, "rotate 90"
    tiff = b"MM\x00\x2a" + struct.pack(">IH", 8, 1) + orientation + struct.pack(">I", 0)
    app1 = b"Exif\x00\x00" + tiff
    data = encoded.tobytes()
    path = tmp_path / "rotated.jpg"
    path.write_bytes(data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:])
    decoded = read_image(path)
    assert decoded.shape == (40, 20, 3)
    np.testing.assert_array_equal(decoded, cv2.imread(str(path), cv2.IMREAD_COLOR))
