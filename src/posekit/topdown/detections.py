"""Person detections for top-down evaluation: a COCO results JSON (``bbox`` x, y, w, h,
``score``, ``image_id``, ``category_id``) such as the detections files published with
SimpleBaseline / HRNet (e.g. ``COCO_val2017_detections_AP_H_56_person.json``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson

from posekit.errors import DataError

PERSON_CATEGORY = 1


def load_detections(
    path: str | Path,
    score_threshold: float = 0.0,
    category_id: int = PERSON_CATEGORY,
) -> dict[int, tuple[np.ndarray, np.ndarray]]:  # image id -> (boxes (M, 4) xywh, scores (M,))
    """Boxes of ``category_id`` with ``score >= score_threshold`` and a positive size."""
    file_path = Path(path)
    try:
        entries = orjson.loads(file_path.read_bytes())
    except FileNotFoundError:
        raise DataError(
            f"detections file {file_path} not found; check data.val.detections"
        ) from None
    except orjson.JSONDecodeError as exc:
        raise DataError(f"{file_path}: not valid JSON ({exc}); give a COCO results file") from None
    if not isinstance(entries, list):
        raise DataError(f"{file_path}: expected a JSON list of detections (a COCO results file)")
    found: dict[int, tuple[list, list]] = {}
    for index, entry in enumerate(entries):
        try:
            if entry.get("category_id", category_id) != category_id:
                continue
            box = [float(v) for v in entry["bbox"]]
            score = float(entry.get("score", 1.0))
            image_id = int(entry["image_id"])
        except (AttributeError, KeyError, TypeError, ValueError):
            raise DataError(
                f"{file_path}: detection {index} lacks a valid image_id, bbox [x, y, w, h] or "
                "score; fix or remove it"
            ) from None
        if len(box) != 4 or box[2] <= 0 or box[3] <= 0 or score < score_threshold:
            continue
        boxes, scores = found.setdefault(image_id, ([], []))
        boxes.append(box)
        scores.append(score)
    return {
        image_id: (np.asarray(boxes, np.float32), np.asarray(scores, np.float32))
        for image_id, (boxes, scores) in found.items()
    }
