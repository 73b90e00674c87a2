"""People found in one image: what every pose family's inference gives (keypoints in the data
set's order and image pixels, scores, and where known the person boxes and categories), and
its JSON form (``people.json``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class People:
    """People found in one image, in the data set's keypoint order and image pixels."""

    keypoints: np.ndarray  # (P, K, 3) x, y, score; score 0 where missing
    scores: np.ndarray  # (P,)
    boxes: np.ndarray | None = None  # (P, 4) x, y, w, h: the person boxes (top-down only)
    category_ids: np.ndarray | None = None  # (P,) the boxes' categories, where known


def people_to_json(people: People) -> list[dict[str, Any]]:
    found = [
        {"keypoints": np.asarray(kp, np.float64).round(2).tolist(), "score": round(float(s), 4)}
        for kp, s in zip(people.keypoints, people.scores, strict=True)
    ]
    if people.boxes is not None:
        for entry, box in zip(found, people.boxes, strict=True):
            entry["bbox"] = np.asarray(box, dtype=np.float64).round(2).tolist()
    return found
