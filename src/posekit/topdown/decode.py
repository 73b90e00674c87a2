"""Top-down post-processing: person rescoring and OKS non-maximum suppression (MMPose's
CocoMetric with ``score_mode="bbox_keypoint"`` and ``nms_mode="oks_nms"``). Pure numpy."""

from __future__ import annotations

import numpy as np


def rescore(
    box_scores: np.ndarray,  # (M,) detector (or ground-truth: 1) box scores
    keypoint_scores: np.ndarray,  # (M, K)
    threshold: float = 0.2,
) -> np.ndarray:  # (M,) float64
    """Box score times the mean of the keypoint scores above ``threshold`` (0 when none)."""
    scores = np.asarray(keypoint_scores, dtype=np.float64)
    confident = scores > threshold
    counts = confident.sum(axis=1)
    sums = np.where(confident, scores, 0.0).sum(axis=1)
    means = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    return np.asarray(box_scores, dtype=np.float64) * means


def oks_matrix(
    keypoints: np.ndarray,  # (M, K, 2+) x, y in image pixels
    areas: np.ndarray,  # (M,) person areas (box w * h)
    sigmas: np.ndarray,  # (K,)
) -> np.ndarray:  # (M, M) object keypoint similarity of every pair
    """OKS between predictions, as MMPose's ``oks_iou``: all keypoints count, the scale is
    the mean of the two areas."""
    xy = np.asarray(keypoints, dtype=np.float64)[..., :2]
    variances = (2.0 * np.asarray(sigmas, dtype=np.float64)) ** 2
    squared = ((xy[:, None] - xy[None]) ** 2).sum(axis=-1)  # (M, M, K)
    area = np.asarray(areas, dtype=np.float64)
    scale = (area[:, None] + area[None]) / 2 + np.spacing(1)
    exponent = squared / variances / scale[..., None] / 2
    return np.exp(-exponent).mean(axis=-1)


def oks_nms(
    keypoints: np.ndarray,  # (M, K, 2+)
    scores: np.ndarray,  # (M,)
    areas: np.ndarray,  # (M,)
    sigmas: np.ndarray,  # (K,)
    threshold: float = 0.9,
) -> np.ndarray:  # (kept,) indices into the inputs, best score first
    """Greedy NMS: keep the best person, drop the others whose OKS with it exceeds
    ``threshold``, repeat."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    if len(order) == 0:
        return order.astype(np.int64)
    similarity = oks_matrix(keypoints, areas, sigmas)
    keep = []
    while len(order):
        best = order[0]
        keep.append(best)
        order = order[1:][similarity[best, order[1:]] <= threshold]
    return np.asarray(keep, dtype=np.int64)
