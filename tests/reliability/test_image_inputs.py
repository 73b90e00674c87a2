"""Hostile and unusual image files, through ``read_image`` and through its real consumers
(``posekit check-data`` and the bottom-up training data set).

tests/data/test_images.py covers the basics (8-bit gray and BGRA PNG, 16-bit BGR PNG, missing,
empty, text named .jpg, a folder, a truncated real JPEG, a PNG header bomb, EXIF). Here: other
channel layouts and bit depths, wrong extensions, synthetic truncations, bombs that try to hide
their size from the header check, files that are not regular files, and the whole data set of
these kinds through the CLI: one report line per bad file naming it, no traceback.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from posekit.bottomup.dataset import BottomUpDataset, TargetSpec
from posekit.bottomup.layouts import default_layout
from posekit.cli import main
from posekit.data.coco import load_coco_keypoints
from posekit.data.images import MAX_IMAGE_PIXELS, header_image_size, read_image
from posekit.engine.sampling import SampleKey
from posekit.errors import DataError
from posekit.schema import COCO17

RNG = np.random.default_rng(7)
NOISE = RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8)  # noise: JPEG keeps it long


def _encoded(suffix: str, image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(suffix, image)
    assert ok
    return encoded.tobytes()


def _png(
    width: int, height: int, depth: int, colour: int, rows: list[bytes], plte: bytes = b""
) -> bytes:
    """A PNG written by hand (layouts cv2.imencode cannot write: gray + alpha, palette)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    pixels = zlib.compress(b"".join(b"\x00" + row for row in rows))
    body = chunk(b"IHDR", header) + (chunk(b"PLTE", plte) if plte else b"")
    return b"\x89PNG\r\n\x1a\n" + body + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def _sof_offset(jpeg: bytes) -> int:
    return jpeg.index(b"\xff\xc0")


def _jpeg_claiming(
    height: int, width: int, before_sof: bytes = b"", after_soi: bytes = b""
) -> bytes:
    """A real small JPEG whose frame header claims ``height`` x ``width``; ``before_sof`` is
    inserted just before the frame header, ``after_soi`` just after the start of image."""
    data = bytearray(_encoded(".jpg", NOISE))
    sof = _sof_offset(bytes(data))
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    data = bytes(data[:sof]) + before_sof + bytes(data[sof:])
    return data[:2] + after_soi + data[2:]


def _bmp_claiming(width: int, height: int) -> bytes:
    data = bytearray(_encoded(".bmp", NOISE[:2, :2]))
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def _must_not_decode(*args: object, **kwargs: object) -> None:
    raise AssertionError("cv2.imdecode was called: the size should have been refused first")


def _assert_one_line_naming(message: str, path: Path) -> None:
    name = repr(str(path)) if "\x00" in str(path) else str(path)
    assert name in message
    assert "\n" not in message.replace(name, "")  # the CLI prints a line break in a name as a space


# -- readable, each as (H, W, 3) uint8 BGR ----------------------------------------------------

GRAY = np.arange(48 * 64, dtype=np.uint8).reshape(48, 64)


def png_named_jpg(folder: Path) -> tuple[Path, np.ndarray]:
    path = folder / "png_named.jpg"
    path.write_bytes(_encoded(".png", NOISE))
    return path, NOISE


def jpeg_named_png(folder: Path) -> tuple[Path, np.ndarray]:
    path = folder / "jpeg_named.png"
    data = _encoded(".jpg", NOISE)
    path.write_bytes(data)
    return path, cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def gray_jpeg(folder: Path) -> tuple[Path, np.ndarray]:
    path = folder / "gray.jpg"
    data = _encoded(".jpg", GRAY)
    path.write_bytes(data)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    return path, np.repeat(decoded[:, :, None], 3, axis=2)


def gray16_png(folder: Path) -> tuple[Path, np.ndarray]:
    path = folder / "gray16.png"
    path.write_bytes(_encoded(".png", GRAY.astype(np.uint16) * 257))
    return path, np.repeat(GRAY[:, :, None], 3, axis=2)


def bgra16_png(folder: Path) -> tuple[Path, np.ndarray]:
    path = folder / "bgra16.png"
    bgra = np.concatenate([NOISE, np.full((48, 64, 1), 9, np.uint8)], axis=2)
    path.write_bytes(_encoded(".png", bgra.astype(np.uint16) * 257))
    return path, NOISE


def gray_alpha_png(folder: Path) -> tuple[Path, np.ndarray]:
    path = folder / "gray_alpha.png"
    rows = [bytes(np.stack([GRAY[y], 255 - GRAY[y]], axis=1).ravel()) for y in range(48)]
    path.write_bytes(_png(64, 48, 8, 4, rows))
    return path, np.repeat(GRAY[:, :, None], 3, axis=2)


def palette_png(folder: Path) -> tuple[Path, np.ndarray]:
    path = folder / "palette.png"
    rgb = [(200, 10, 20), (0, 128, 255)]
    index = (np.arange(48 * 64).reshape(48, 64) % 2).astype(np.uint8)
    path.write_bytes(_png(64, 48, 8, 3, [bytes(row) for row in index], bytes(sum(rgb, ()))))
    return path, np.asarray([c[::-1] for c in rgb], np.uint8)[index]


READABLE: list[Callable[[Path], tuple[Path, np.ndarray]]] = [
    png_named_jpg, jpeg_named_png, gray_jpeg, gray16_png, bgra16_png, gray_alpha_png, palette_png,
]  # fmt: skip


@pytest.mark.parametrize("make", READABLE, ids=lambda make: make.__name__)
def test_readable_layouts_load_as_three_channel_uint8(
    tmp_path: Path, make: Callable[[Path], tuple[Path, np.ndarray]]
) -> None:
    path, expected = make(tmp_path)
    image = read_image(path)
    assert image.dtype == np.uint8 and image.shape == (48, 64, 3)
    assert image.flags.c_contiguous
    np.testing.assert_array_equal(image, expected)


# -- unreadable: a one-line DataError naming the file ------------------------------------------


def truncated_in_header(folder: Path) -> Path:
    data = _encoded(".jpg", NOISE)
    path = folder / "cut_header.jpg"
    path.write_bytes(data[: _sof_offset(data) - 4])
    return path


def truncated_in_scan(folder: Path) -> Path:
    data = _encoded(".jpg", NOISE)
    path = folder / "cut_scan.jpg"
    path.write_bytes(data[: len(data) * 2 // 3])
    return path


def truncated_before_end(folder: Path) -> Path:
    data = _encoded(".jpg", NOISE)
    path = folder / "cut_end.jpg"
    path.write_bytes(data[:-2])  # only the end-of-image marker missing
    return path


def text_named_png(folder: Path) -> Path:
    path = folder / "notes.png"
    path.write_text("not pixels\n" * 10)
    return path


def float_tiff(folder: Path) -> Path:
    path = folder / "float.tiff"
    path.write_bytes(_encoded(".tiff", np.ones((4, 4), np.float32)))
    return path


def bmp_past_opencv_limit(folder: Path) -> Path:
    path = folder / "huge_bmp.jpg"  # a BMP named .jpg: no PNG/JPEG header to check
    path.write_bytes(_bmp_claiming(40_000, 40_000))
    return path


def device_file(folder: Path) -> Path:
    path = folder / "null.jpg"
    path.symlink_to(os.devnull)
    return path


def nul_in_name(folder: Path) -> Path:
    return folder / "bad\x00name.jpg"


UNREADABLE: list[tuple[Callable[[Path], Path], str]] = [
    (truncated_in_header, "not a decodable image"),
    (truncated_in_scan, "not a decodable image"),
    (truncated_before_end, "not a decodable image"),
    (text_named_png, "not a decodable image"),
    (float_tiff, "pixel type float32 is not supported"),
    (bmp_past_opencv_limit, "possible decompression bomb"),  # was a raw cv2.error
    (device_file, "not a regular file"),
    (nul_in_name, "not a valid file name"),  # was a raw ValueError
]


@pytest.mark.parametrize(
    ("make", "reason"), UNREADABLE, ids=[make.__name__ for make, _ in UNREADABLE]
)
def test_unreadable_files_raise_one_line_naming_the_file(
    tmp_path: Path, make: Callable[[Path], Path], reason: str
) -> None:
    path = make(tmp_path)
    with pytest.raises(DataError, match=reason) as exc:
        read_image(path)
    _assert_one_line_naming(str(exc.value), path)


# -- decompression bombs: refused from the header, before any pixel is decoded -----------------

BOMBS: dict[str, Callable[[], bytes]] = {
    "png_100000x100000": lambda: _png(100_000, 100_000, 8, 2, []),
    "jpeg_65000x65000": lambda: _jpeg_claiming(65_000, 65_000),
    # libjpeg skips stray bytes before a marker, and the old header walk gave up on them
    "jpeg_junk_before_frame": lambda: _jpeg_claiming(30_000, 30_000, before_sof=b"\x00\x00"),
    "jpeg_stuffed_zero_before_frame": lambda: _jpeg_claiming(30_000, 30_000, b"\xff\x00"),
    # TEM has no length; the old walk read the next marker as one and jumped past the frame
    "jpeg_tem_marker": lambda: _jpeg_claiming(30_000, 30_000, after_soi=b"\xff\x01"),
}


@pytest.mark.parametrize("name", list(BOMBS))
def test_bombs_are_refused_without_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    path = tmp_path / f"{name}.jpg"
    path.write_bytes(BOMBS[name]())
    height, width = header_image_size(path.read_bytes()) or (0, 0)
    assert height * width > MAX_IMAGE_PIXELS
    monkeypatch.setattr(cv2, "imdecode", _must_not_decode)
    with pytest.raises(DataError, match="possible decompression bomb") as exc:
        read_image(path)
    _assert_one_line_naming(str(exc.value), path)


def test_junk_before_the_frame_is_what_libjpeg_decodes(tmp_path: Path) -> None:
    """Control for the bomb above: OpenCV does decode a JPEG with stray bytes before its frame
    header (so a hidden size would be allocated), and the header walk now sees its size."""
    data = _encoded(".jpg", NOISE)
    sof = _sof_offset(data)
    hidden = data[:sof] + b"\x00\x00" + data[sof:]
    assert cv2.imdecode(np.frombuffer(hidden, np.uint8), cv2.IMREAD_COLOR).shape == (48, 64, 3)
    assert header_image_size(hidden) == (48, 64)
    path = tmp_path / "junk.jpg"
    path.write_bytes(hidden)
    assert read_image(path).shape == (48, 64, 3)
    with pytest.raises(DataError, match="decompression bomb"):
        read_image(path, max_pixels=48 * 64 - 1)


def test_pixel_limit_is_inclusive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "exact.jpg"
    path.write_bytes(_encoded(".jpg", NOISE))
    assert read_image(path, max_pixels=48 * 64).shape == (48, 64, 3)
    monkeypatch.setattr(cv2, "imdecode", _must_not_decode)
    with pytest.raises(DataError, match="decompression bomb"):
        read_image(path, max_pixels=48 * 64 - 1)


# -- files that are not images on disk ---------------------------------------------------------


def test_pipe_named_jpg_is_refused_instead_of_blocking(tmp_path: Path) -> None:
    path = tmp_path / "pipe.jpg"
    os.mkfifo(path)
    outcome: list[BaseException] = []

    def attempt() -> None:
        try:
            read_image(path)
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout=10)
    if worker.is_alive():  # unblock the reader so the thread can end
        with open(path, "wb"):
            pass
        pytest.fail("read_image blocked on a named pipe")
    assert len(outcome) == 1 and isinstance(outcome[0], DataError)
    assert "not a regular file" in str(outcome[0])


def test_oversized_file_is_refused_unread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "sparse.jpg"
    with open(path, "wb") as handle:
        handle.truncate(2 << 30)  # 2 GiB, sparse: no disk space, but read_bytes would load it
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail(f"{self} was read"))
    with pytest.raises(DataError, match="too big for an image") as exc:
        read_image(path)
    _assert_one_line_naming(str(exc.value), path)


# -- the real consumers: check-data and the training data set ---------------------------------


@pytest.fixture(scope="module")
def mixed_dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, int]]:
    """Labels and an images folder holding one image of each kind; the ids of the bad ones."""
    folder = tmp_path_factory.mktemp("mixed")
    images = folder / "images"
    images.mkdir()
    entries: list[dict[str, object]] = []
    bad: dict[str, int] = {}
    for make in READABLE:
        path, _ = make(images)
        entries.append({"file_name": path.name, "width": 64, "height": 48})
    unreadable = [make(images) for make, _ in UNREADABLE if make is not nul_in_name]
    (images / "empty.jpg").write_bytes(b"")
    (images / "text.jpg").write_text("this is text, not pixels\n")
    (images / "folder.jpg").mkdir()
    (images / "line\nbreak.jpg").write_text("a name with a line break\n")
    for name, make_bomb in BOMBS.items():
        (images / f"{name}.jpg").write_bytes(make_bomb())
    names = [p.name for p in unreadable] + ["empty.jpg", "text.jpg", "folder.jpg"]
    names += ["line\nbreak.jpg"] + [f"{name}.jpg" for name in BOMBS]
    for name in names:
        bad[name] = len(entries) + 1
        entries.append({"file_name": name, "width": 64, "height": 48})
    for image_id, entry in enumerate(entries, start=1):
        entry["id"] = image_id
    labels = folder / "labels.json"
    categories = [{"id": 1, "name": "person", "keypoints": list(COCO17.keypoints)}]
    # one labelled person in each image: a file without any is an error of its own
    people = [
        {"id": entry["id"], "image_id": entry["id"], "category_id": 1, "iscrowd": 0,
         "bbox": [0, 0, 2, 2], "area": 4, "num_keypoints": 1, "keypoints": [1, 1, 2] + [0] * 48}
        for entry in entries
    ]  # fmt: skip
    labels.write_text(
        json.dumps({"images": entries, "annotations": people, "categories": categories})
    )
    return labels, images, bad


def test_check_data_reports_each_bad_image_on_one_line(
    mixed_dataset: tuple[Path, Path, dict[str, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    labels, images, bad = mixed_dataset
    code = main(["check-data", "--labels", str(labels), "--images", str(images)])
    out, err = capsys.readouterr()
    assert code == 1  # problems found (data/check.py: 0 clean, 1 problems, 2 unusable input)
    assert err == ""
    lines = out.splitlines()
    assert lines[0].endswith(f": {len(bad)} problems")
    assert len(lines) == 1 + len(bad)  # one line per bad file, none for the readable kinds
    by_id = {int(line.split("image_id=")[1].split(":")[0]): line for line in lines[1:]}
    assert set(by_id) == set(bad.values())
    for name, image_id in bad.items():
        line = by_id[image_id]
        assert line.startswith("unreadable_image "), line
        assert repr(name)[1:-1] in line  # the file, named (a line break shown as \n)
    assert "decompression bomb" in by_id[bad["jpeg_tem_marker.jpg"]]
    assert "not a regular file" in by_id[bad["null.jpg"]]
    assert "is a folder" in by_id[bad["folder.jpg"]]

    assert main(["check-data", "--labels", str(labels), "--images", str(images), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["problem_kinds"] == {"unreadable_image": len(bad)}


def test_check_data_process_exit_status_and_clean_stderr(
    mixed_dataset: tuple[Path, Path, dict[str, int]],
) -> None:
    labels, images, bad = mixed_dataset
    result = subprocess.run(
        [sys.executable, "-m", "posekit", "check-data", "--labels", str(labels),
         "--images", str(images)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert len(result.stdout.splitlines()) == 1 + len(bad)
    assert "Traceback" not in result.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "posekit", "check-data", "--labels", str(labels.parent / "no.json"),
         "--images", str(images)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1 and "labels file not found" in missing.stderr


def test_training_samples_of_each_kind(mixed_dataset: tuple[Path, Path, dict[str, int]]) -> None:
    labels, images, bad = mixed_dataset
    data = load_coco_keypoints(labels, images, COCO17)
    dataset = BottomUpDataset(data, default_layout(COCO17), TargetSpec(64, 8, 7.0, 1.0), None)
    for index, record in enumerate(data.images):
        key = SampleKey(index, (0, 0, index))
        if record.image_id not in bad.values():
            sample = dataset[key]
            assert sample["image"].shape == (3, 64, 64) and sample["image"].dtype == torch.float32
            continue
        with pytest.raises(DataError) as exc:
            dataset[key]
        _assert_one_line_naming(str(exc.value), images / record.file_name)
