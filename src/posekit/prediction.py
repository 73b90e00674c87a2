"""``posekit predict``: people in an image, a folder of images or a video, drawn and listed."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import cv2
import numpy as np
import orjson

from posekit.atomic import atomic_write_bytes
from posekit.bottomup.inference import people_to_json
from posekit.data.images import read_image
from posekit.drawing import write_jpeg
from posekit.errors import DataError
from posekit.inference_model import LoadedModel, load_model

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm"}


def list_sources(source: Path) -> list[Path]:
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{source}: no images ({sorted(IMAGE_SUFFIXES)}) in this folder")
        return files
    if not source.exists():
        raise DataError(f"{source} not found; give an image, a folder of images or a video")
    return [source]


def drawing_paths(sources: list[Path], target: Path) -> list[Path]:
    """``target/<stem>.jpg`` per source image; refused when one would replace a source image
    (``--out`` is the source folder) or another one's drawing (``a.jpg`` and ``a.png``)."""
    originals = {path.resolve() for path in sources}
    drawn_from: dict[Path, Path] = {}
    for path in sources:
        drawing = target / f"{path.stem}.jpg"
        if drawing.resolve() in originals:
            raise DataError(
                f"{drawing}: drawing {path.name} would replace a source image; give another --out"
            )
        if drawing in drawn_from:
            raise DataError(
                f"{drawn_from[drawing]} and {path}: both would be drawn to {drawing}; rename one"
            )
        drawn_from[drawing] = path
    return list(drawn_from)


def video_frames(path: Path) -> Iterator[tuple[np.ndarray, float]]:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise DataError(f"{path}: OpenCV cannot open this video; convert it to mp4 (H.264)")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield frame, fps
    finally:
        capture.release()


def _predict_one(loaded: LoadedModel, image: np.ndarray) -> tuple[np.ndarray, list[dict]]:
    drawn, people = loaded.task.predict_drawn(loaded.model, image)
    return drawn, people_to_json(people)


def run_predict(
    source: str,
    weights: str,
    out_dir: str = "predictions",
    overrides: list[str] | None = None,
    out: TextIO | None = None,
) -> dict[str, Any]:
    """Write drawn images (or a drawn video) and ``people.json`` into ``out_dir``."""
    out = sys.stdout if out is None else out  # looked up now: sys.stdout may be replaced
    loaded = load_model(weights, overrides=overrides)
    target = Path(out_dir)
    target.mkdir(parents=True, exist_ok=True)
    found: dict[str, Any] = {}
    source_path = Path(source)
    if source_path.suffix.lower() in VIDEO_SUFFIXES:
        found[source_path.name] = _predict_video(loaded, source_path, target)
    else:
        sources = list_sources(source_path)
        for path, drawing in zip(sources, drawing_paths(sources, target), strict=True):
            drawn, people = _predict_one(loaded, read_image(path))
            write_jpeg(drawing, drawn)
            found[path.name] = people
            print(f"{path.name}: {len(people)} people", file=out)
    atomic_write_bytes(target / "people.json", orjson.dumps(found, option=orjson.OPT_INDENT_2))
    print(f"wrote {target / 'people.json'}", file=out)
    return found


def _predict_video(loaded: LoadedModel, path: Path, target: Path) -> list[list[dict]]:
    frames_people: list[list[dict]] = []
    writer = None
    output = target / f"{path.stem}_pose.mp4"
    try:
        for frame, fps in video_frames(path):
            drawn, people = _predict_one(loaded, frame)
            if writer is None:
                height, width = drawn.shape[:2]
                fourcc = cv2.VideoWriter.fourcc(*"mp4v")
                writer = cv2.VideoWriter(str(output), fourcc, fps, (width, height))
            writer.write(drawn)
            frames_people.append(people)
    finally:
        if writer is not None:
            writer.release()
    return frames_people
