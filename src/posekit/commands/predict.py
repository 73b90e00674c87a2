"""``posekit predict``: people in an image, a folder of images or a video, drawn and listed."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import cv2
import numpy as np
import orjson
import torch

from posekit.atomic import atomic_write_bytes
from posekit.commands.load import load_model
from posekit.commands.loaded_model import LoadedModel
from posekit.data.images import read_image
from posekit.drawing import draw_boxes, draw_people, write_jpeg
from posekit.errors import ConfigError, DataError
from posekit.people import people_to_json

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


def detector_model(loaded: LoadedModel) -> LoadedModel:
    """``loaded`` when it finds person boxes (a detector), else the one-line ``--detector``
    error."""
    if not loaded.task.gives_person_boxes:
        raise ConfigError(
            "--detector: these weights are not a detector's; give a detector checkpoint "
            "(model.name rtdetr), or pass the pose model with --weights alone"
        )
    return loaded


@dataclass
class DetectThenPose:
    """Two-step prediction: the detector's person boxes (score ≥ ``box_threshold``), then the
    top-down pose model in each box (rescored, OKS-NMS); boxes and people drawn alike."""

    detector: LoadedModel
    pose: LoadedModel
    box_threshold: float = 0.3

    @property
    def listing(self) -> tuple[str, str]:
        """What ``predict`` lists, and in which file: the pose model's people."""
        return self.pose.task.listing

    def __post_init__(self) -> None:
        detector_model(self.detector)
        if not self.pose.task.takes_person_boxes:
            raise ConfigError(
                "--pose: a top-down pose model is needed after a detector (bottom-up models "
                "find people themselves; run them with --weights alone)"
            )

    def predict_drawn(self, image: np.ndarray) -> tuple[np.ndarray, list[dict]]:
        with torch.no_grad():
            boxes = self.detector.task.person_boxes(self.detector.model, image, self.box_threshold)
            people = self.pose.task.predict_people(self.pose.model, image, boxes)
        drawn = draw_people(image, people.keypoints, self.pose.task.schema)
        if people.boxes is not None:
            labels = [f"{score:.2f}" for score in people.scores]
            drawn = draw_boxes(drawn, people.boxes, labels)
        return drawn, people_to_json(people)


@dataclass
class OneModel:
    """A model of any family alone: what it finds (people, or a detector's boxes scoring at
    least ``box_threshold``), drawn and listed."""

    loaded: LoadedModel
    box_threshold: float = 0.3

    @property
    def listing(self) -> tuple[str, str]:
        """What ``predict`` lists (people or detections), and in which file."""
        return self.loaded.task.listing

    def predict_drawn(self, image: np.ndarray) -> tuple[np.ndarray, list[dict]]:
        return self.loaded.task.predict_listed(self.loaded.model, image, self.box_threshold)


Predictor = OneModel | DetectThenPose


def build_predictor(
    weights: str | None,
    detector: str | None,
    pose: str | None,
    overrides: list[str] | None,
    box_threshold: float = 0.3,
) -> Predictor:
    """``--weights W`` alone (any family), or ``--detector D --pose P`` (W may stand for P)."""
    if pose is not None and weights is not None:
        raise ConfigError("give the pose model once: --pose or --weights, not both")
    pose = pose or weights
    if detector is None and pose is None:
        raise ConfigError("give --weights (or --detector D --pose P)")
    if pose is None:  # the detector alone
        return OneModel(detector_model(load_model(detector, overrides=overrides)), box_threshold)
    if detector is None:  # one model of any family
        return OneModel(load_model(pose, overrides=overrides), box_threshold)
    return DetectThenPose(
        load_model(detector, overrides=overrides), load_model(pose, overrides=overrides),
        box_threshold,
    )  # fmt: skip


def run_predict(
    source: str,
    weights: str | None,
    out_dir: str = "predictions",
    overrides: list[str] | None = None,
    out: TextIO | None = None,
    detector: str | None = None,
    pose: str | None = None,
    box_threshold: float = 0.3,
    as_json: bool = False,
) -> dict[str, Any]:
    """Write drawn images (or a drawn video) and ``people.json`` (``detections.json`` for a
    detector alone) into ``out_dir``. Unreadable images are skipped, then named; a timing
    line ends the run. ``as_json``: stdout holds only the listing as one JSON object."""
    out = sys.stdout if out is None else out  # looked up now: sys.stdout may be replaced
    say = sys.stderr if as_json else out
    predictor = build_predictor(weights, detector, pose, overrides, box_threshold)
    what, listing = predictor.listing
    if isinstance(predictor, OneModel) and predictor.loaded.task.takes_person_boxes:
        print(
            "no --detector: each whole image is taken as one person (for several people give "
            "--detector D --pose P)",
            file=say,
        )
    target = Path(out_dir)
    target.mkdir(parents=True, exist_ok=True)
    found: dict[str, Any] = {}
    skipped: list[tuple[str, str]] = []
    source_path = Path(source)
    started, frames = time.perf_counter(), 0
    if source_path.suffix.lower() in VIDEO_SUFFIXES:
        found[source_path.name] = _predict_video(predictor, source_path, target)
        frames = len(found[source_path.name])
    else:
        sources = list_sources(source_path)
        for path, drawing in zip(sources, drawing_paths(sources, target), strict=True):
            try:
                image = read_image(path)
            except DataError as exc:
                skipped.append((path.name, unreadable_reason(str(exc))))
                continue
            drawn, entries = predictor.predict_drawn(image)
            write_jpeg(drawing, drawn)
            found[path.name] = entries
            frames += 1
            print(f"{path.name}: {len(entries)} {what}", file=say)
    atomic_write_bytes(target / listing, orjson.dumps(found, option=orjson.OPT_INDENT_2))
    seconds = time.perf_counter() - started
    if skipped:
        named = ", ".join(f"{name} ({reason})" for name, reason in skipped[:10])
        more = f" and {len(skipped) - 10} more" if len(skipped) > 10 else ""
        print(f"skipped {len(skipped)} unreadable file(s): {named}{more}", file=say)
    print(f"wrote {target / listing}", file=say)
    per_image = f"; {1000 * seconds / frames:.0f} ms each" if frames else ""
    print(f"{frames} image(s) in {seconds:.1f} s{per_image} (reading, model, drawing)", file=say)
    if as_json:
        print(orjson.dumps(found).decode(), file=out)
    return found


def unreadable_reason(message: str) -> str:
    """The reason in a ``read_image`` error, without the file name and the fix."""
    reason = message.split(": ", 1)[-1]
    return reason.split("; ", 1)[0]


def _predict_video(predictor: Predictor, path: Path, target: Path) -> list[list[dict]]:
    frames_people: list[list[dict]] = []
    writer = None
    output = target / f"{path.stem}_pose.mp4"
    try:
        for frame, fps in video_frames(path):
            drawn, people = predictor.predict_drawn(frame)
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
