"""Reading images from disk as (H, W, 3) uint8 BGR arrays.

Decoding goes through ``cv2.imdecode`` of the file's bytes (works for any path, including
non-ASCII ones), honours the EXIF orientation like ``cv2.imread`` does, turns grayscale into
three channels, drops alpha and scales 16-bit images to 8 bits. PNG and JPEG sizes are read
from the header first, so a decompression bomb is refused before any pixel is decoded; other
formats are checked after decoding. Only regular files are read (a pipe or a device named
``x.jpg`` would block or never end), and files too big for ``max_pixels`` are refused unread.
"""

from __future__ import annotations

import stat
import struct
from pathlib import Path

import cv2
import numpy as np

from posekit.errors import DataError

MAX_IMAGE_PIXELS = 100_000_000
"""Images with more pixels than this are refused as likely decompression bombs."""

_DECODE_FLAGS = cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (C0..CF except DHT C4, JPG C8 and DAC CC) carry the size.
_JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def read_image(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decode ``path`` into an (H, W, 3) uint8 BGR array; DataError if it cannot be used."""
    path = Path(path)
    data = _read_bytes(path, max_pixels)
    header_size = header_image_size(data)
    if header_size is not None:
        _check_pixel_count(path, header_size[0] * header_size[1], max_pixels)
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), _DECODE_FLAGS)
    except cv2.error as exc:  # e.g. a header past OpenCV's own size limits
        if "validateInputImageSize" in str(exc):
            raise DataError(
                f"{path}: image size exceeds OpenCV's limits (possible decompression bomb); "
                "replace the file (or remove it, or its entry in the labels)"
            ) from None
        image = None
    if image is None or image.size == 0:
        raise DataError(
            f"{path}: not a decodable image (corrupt, truncated or an unsupported format); "
            "replace the file (or remove it, or its entry in the labels)"
        )
    _check_pixel_count(path, image.shape[0] * image.shape[1], max_pixels)
    return to_bgr8(image, path)


def header_image_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a PNG or JPEG header, or None for other or unparsable data."""
    if data.startswith(_PNG_SIGNATURE) and len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return height, width
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    return None


def to_bgr8(image: np.ndarray, path: str | Path = "image") -> np.ndarray:
    """Convert a decoded gray / BGR / BGRA image of 8 or 16 bits to (H, W, 3) uint8 BGR."""
    if image.dtype == np.uint16:
        image = ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise DataError(
            f"{path}: pixel type {image.dtype} is not supported; convert it to 8-bit PNG or JPEG"
        )
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    channels = image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if channels == 3:
        return np.ascontiguousarray(image)
    raise DataError(f"{path}: {channels} colour channels are not supported; save it as RGB")


def _read_bytes(path: Path, max_pixels: int) -> bytes:
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise DataError(f"{path}: is a folder, not an image; fix the file_name")
        if not stat.S_ISREG(info.st_mode):
            raise DataError(
                f"{path}: not a regular file (a pipe, device or socket); fix the file_name"
            )
        if info.st_size > 8 * max_pixels + (16 << 20):  # 16-bit RGBA, uncompressed, + metadata
            raise DataError(
                f"{path}: {info.st_size} bytes is too big for an image of at most {max_pixels} "
                "pixels; replace or remove it"
            )
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(
            f"{path}: image not found; check --images (the images folder) and the file_name "
            "in the labels"
        ) from None
    except ValueError:  # e.g. a NUL character in the name
        raise DataError(f"{str(path)!r}: not a valid file name; fix the file_name") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise DataError(f"{path}: cannot read image ({reason}); check its permissions") from None
    if not data:
        raise DataError(f"{path}: image file is empty (0 bytes); replace or remove it")
    return data


def _check_pixel_count(path: Path, pixels: int, max_pixels: int) -> None:
    if pixels > max_pixels:
        raise DataError(
            f"{path}: {pixels} pixels exceeds the limit of {max_pixels} (possible decompression "
            "bomb); downscale the image or raise max_pixels if it is genuine"
        )


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Walk the JPEG segments up to the first start-of-frame marker, as libjpeg does."""
    position = 2
    while position + 9 <= len(data):
        if data[position] != 0xFF:  # stray bytes before a marker: libjpeg skips them too
            position = data.find(b"\xff", position)
            if position < 0:
                return None
            continue
        marker = data[position + 1]
        if marker in (0x00, 0xFF):  # a stuffed zero or a fill byte
            position += 1
            continue
        if marker in _JPEG_SOF_MARKERS:
            height, width = struct.unpack(">HH", data[position + 5 : position + 9])
            return height, width
        if marker in (0xD9, 0xDA):  # end of image or scan data before any frame header
            return None
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            position += 2
            continue
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        position += 2 + length
    return None
