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


def write_jpeg(path: Path, image: np.ndarray) -> None:
    """Encode ``image`` (BGR) as JPEG and write it atomically."""
    ok, encoded = cv2.imencode(".jpg", image)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {path.name} as JPEG")
    atomic_write_bytes(path, encoded.tobytes())
