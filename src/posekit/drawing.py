"""Drawing people on images (predictions and ground truth)."""

from __future__ import annotations

import colorsys
from pathlib import Path

import cv2
import numpy as np

from posekit.atomic import atomic_write_bytes
from posekit.schema import KeypointSchema


def person_colour(index: int) -> tuple[int, int, int]:
    """A distinct BGR colour per person (golden-ratio hues)."""
    red, green, blue = colorsys.hsv_to_rgb((index * 0.618034) % 1.0, 0.85, 1.0)
    return int(blue * 255), int(green * 255), int(red * 255)


def draw_people(
    image: np.ndarray,  # (H, W, 3) uint8 BGR
    keypoints: np.ndarray,  # (P, K, 3) x, y, score/visibility; <= threshold = missing
    schema: KeypointSchema,
    threshold: float = 0.0,
) -> np.ndarray:
    """A copy of ``image`` with each person's limbs and keypoints drawn in its own colour."""
    canvas = image.copy()
    thickness = max(1, round(min(image.shape[:2]) / 200))
    for index, person in enumerate(np.asarray(keypoints)):
        colour = person_colour(index)
        present = person[:, 2] > threshold
        for a, b in schema.skeleton:
            if present[a] and present[b]:
                start = (round(float(person[a, 0])), round(float(person[a, 1])))
                end = (round(float(person[b, 0])), round(float(person[b, 1])))
                cv2.line(canvas, start, end, colour, thickness, cv2.LINE_AA)
        for x, y, _ in person[present]:
            cv2.circle(canvas, (round(float(x)), round(float(y))), thickness + 2, colour, -1)
    return canvas


def draw_boxes(
    image: np.ndarray,  # (H, W, 3) uint8 BGR
    boxes: np.ndarray,  # (N, 4) x, y, w, h in pixels
    labels: list[str] | None = None,  # drawn above each box
) -> np.ndarray:
    """A copy of ``image`` with each box drawn in its own colour (the same colours as
    :func:`draw_people`, so a person and its box match)."""
    canvas = image.copy()
    thickness = max(1, round(min(image.shape[:2]) / 250))
    for index, (x, y, width, height) in enumerate(np.asarray(boxes, dtype=np.float64)):
        colour = person_colour(index)
        top_left = (round(x), round(y))
        cv2.rectangle(canvas, top_left, (round(x + width), round(y + height)), colour, thickness)
        if labels is not None and index < len(labels):
            origin = (round(x) + 2, max(10, round(y) - 3))
            cv2.putText(canvas, labels[index], origin, cv2.FONT_HERSHEY_SIMPLEX, 0.35, colour, 1)
    return canvas


def side_by_side(
    truth: np.ndarray,
    predicted: np.ndarray,
    titles: tuple[str, str] = ("ground truth", "prediction"),
) -> np.ndarray:
    """The two drawings of one image next to each other (a grey gap between), each titled."""
    height = max(truth.shape[0], predicted.shape[0])
    gap = np.full((height, max(4, height // 50), 3), 128, np.uint8)
    panels = []
    for image, title in zip((truth, predicted), titles, strict=True):
        panel = np.zeros((height, image.shape[1], 3), np.uint8)
        panel[: image.shape[0]] = image
        scale = max(0.35, height / 600)
        origin = (4, max(12, round(16 * scale)))
        cv2.putText(panel, title, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3,
                    cv2.LINE_AA)  # fmt: skip
        cv2.putText(panel, title, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                    cv2.LINE_AA)  # fmt: skip
        panels.append(panel)
    return np.concatenate([panels[0], gap, panels[1]], axis=1)


def write_jpeg(path: Path, image: np.ndarray) -> None:
    """Encode ``image`` (BGR) as JPEG and write it atomically."""
    ok, encoded = cv2.imencode(".jpg", image)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {path.name} as JPEG")
    atomic_write_bytes(path, encoded.tobytes())
