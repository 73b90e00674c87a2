"""COCO evaluation: keypoint OKS AP/AR, bbox AP/AR, PCK, and results files.

Keypoint and bbox AP come from faster-coco-eval (``backend="fast"``, C++) or pycocotools
(``backend="pycocotools"``, the reference). For keypoints the fast backend also replaces the
two Python loops left in faster-coco-eval (results loading and per-image OKS) with one
vectorised pass that performs the same float operations in the same order, so the OKS
matrices are bit-identical to pycocotools'. The only difference left is faster-coco-eval's
C++ precision ``tp / (tp + fp)`` against pycocotools' ``tp / (tp + fp + eps)``: a stat can
differ by an ulp or two (1e-16; tested ≤ 1e-12). The libraries' progress prints are
swallowed; :func:`format_table` renders the stats.

Stats follow COCOeval: ``-1.0`` where there is no ground truth in a category (e.g. no large
people). Empty results give all zeros. Inputs are never mutated: the libraries add fields
(``area``, ``id``, ``ignore``...) to annotation dicts, so they get copies.

Results entries (:func:`keypoint_results`, :func:`bbox_results`) are COCO's: keypoints in
the data set's keypoint order (map network layouts back first, e.g.
:meth:`posekit.bottomup.layouts.KeypointLayout.to_dataset`), flattened ``x, y, score`` in original
image pixels.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from posekit.atomic import atomic_write_bytes

BACKENDS = ("fast", "pycocotools")
KEYPOINT_STATS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
BBOX_STATS = (
    "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
)  # fmt: skip

GroundTruth = str | os.PathLike[str] | dict[str, Any]


def evaluate_keypoints(
    gt: GroundTruth,
    results: Sequence[dict[str, Any]],
    sigmas: Sequence[float] | np.ndarray,  # (K,) OKS sigmas of the data set's keypoints
    backend: str = "fast",
    use_categories: bool = True,
) -> dict[str, float]:  # KEYPOINT_STATS -> value
    """COCO keypoint AP/AR (OKS with ``sigmas``, any keypoint count) of ``results``.

    ``use_categories=False`` scores category-agnostically: predictions match people of any
    category (for models that do not tell the categories of a many-category set apart, e.g. a
    bottom-up model on AP-10K). COCOeval's own ``useCats = 0`` finds no keypoint pairs in
    pycocotools and fails in faster-coco-eval, so every category is merged into the first
    instead (the same matching ``useCats = 0`` means)."""
    sigma_array = np.asarray(sigmas, dtype=np.float64).reshape(-1)
    for entry in results:
        if len(entry["keypoints"]) != 3 * sigma_array.size:
            raise ValueError(
                f"a result has {len(entry['keypoints'])} keypoint values; expected "
                f"3 × {sigma_array.size} (x, y, score per sigma)"
            )
    if not use_categories:
        gt, results = _one_category(load_ground_truth(gt), results)
    return _evaluate(gt, results, "keypoints", KEYPOINT_STATS, backend, sigma_array)


def evaluate_bboxes(
    gt: GroundTruth, results: Sequence[dict[str, Any]], backend: str = "fast"
) -> dict[str, float]:  # BBOX_STATS -> value
    """COCO bbox AP/AR of ``results`` (``bbox`` as x, y, w, h in image pixels)."""
    return _evaluate(gt, results, "bbox", BBOX_STATS, backend, None)


def _evaluate(
    gt: GroundTruth,
    results: Sequence[dict[str, Any]],
    iou_type: str,
    names: tuple[str, ...],
    backend: str,
    sigmas: np.ndarray | None,
) -> dict[str, float]:
    if backend not in BACKENDS:
        raise ValueError(f"unknown evaluation backend {backend!r}; known: {list(BACKENDS)}")
    if not results:
        return dict.fromkeys(names, 0.0)
    gt_data = _copy_annotations(load_ground_truth(gt))
    _check_image_ids(gt_data, results)
    detections = [dict(entry) for entry in results]
    run = _run_fast if backend == "fast" else _run_pycocotools
    with _quiet():
        stats = run(gt_data, detections, iou_type, sigmas)
    return {name: float(value) for name, value in zip(names, stats, strict=False)}


def _one_category(
    gt_data: dict[str, Any], results: Sequence[dict[str, Any]]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Ground truth and results with every category merged into the first one."""
    categories = gt_data.get("categories") or [{"id": 1, "name": "person"}]
    merged = categories[0]["id"]
    annotations = [{**ann, "category_id": merged} for ann in gt_data.get("annotations", [])]
    gt = {**gt_data, "annotations": annotations, "categories": [categories[0]]}
    return gt, [{**entry, "category_id": merged} for entry in results]


def load_ground_truth(gt: GroundTruth) -> dict[str, Any]:
    """A COCO annotation dict from a path (read with orjson) or the dict itself."""
    if isinstance(gt, dict):
        return gt
    return orjson.loads(Path(gt).read_bytes())


def _check_image_ids(gt_data: dict[str, Any], results: Sequence[dict[str, Any]]) -> None:
    known = {image["id"] for image in gt_data.get("images", [])}
    unknown = {entry["image_id"] for entry in results} - known
    if unknown:
        raise ValueError(
            f"results refer to {len(unknown)} image id(s) missing from the ground truth "
            f"(e.g. {sorted(unknown)[:5]}); evaluate against the annotation file they came from"
        )


def _copy_annotations(data: dict[str, Any]) -> dict[str, Any]:
    """Shallow copy with fresh annotation dicts (the evaluators write fields into them)."""
    return {**data, "annotations": [dict(ann) for ann in data.get("annotations", [])]}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _silent(*args: object, **kwargs: object) -> None:
    return None


def _run_fast(
    gt_data: dict,
    detections: list[dict],
    iou_type: str,
    sigmas: np.ndarray | None,
) -> np.ndarray:
    from faster_coco_eval import COCO, COCOeval_faster

    coco_gt = COCO(gt_data, print_function=_silent)
    if iou_type == "keypoints":
        coco_dt = _keypoint_detections(coco_gt, detections)
        evaluator_class = _vectorised_oks_evaluator()
    else:
        coco_dt = coco_gt.loadRes(detections)
        evaluator_class = COCOeval_faster
    evaluator = evaluator_class(
        coco_gt, coco_dt, iou_type, print_function=_silent, kpt_oks_sigmas=sigmas
    )
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return np.asarray(evaluator.stats)


def _run_pycocotools(
    gt_data: dict,
    detections: list[dict],
    iou_type: str,
    sigmas: np.ndarray | None,
) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    coco_gt = COCO()
    coco_gt.dataset = gt_data
    coco_gt.createIndex()
    coco_dt = coco_gt.loadRes(detections)
    evaluator = COCOeval(coco_gt, coco_dt, iou_type)
    if sigmas is not None:
        evaluator.params.kpt_oks_sigmas = sigmas
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return np.asarray(evaluator.stats)


def _keypoint_detections(coco_gt: Any, detections: list[dict]) -> Any:
    """faster-coco-eval ``loadRes`` for keypoint results, vectorised (same values).

    Each entry gets ``id`` (1-based position), ``bbox`` (the keypoints' extent) and ``area``
    (its width × height), computed with the same float64 operations as ``loadRes``.
    """
    from faster_coco_eval import COCO

    points = np.asarray([entry["keypoints"] for entry in detections], dtype=np.float64)
    x, y = points[:, 0::3], points[:, 1::3]
    x0, x1, y0, y1 = x.min(axis=1), x.max(axis=1), y.min(axis=1), y.max(axis=1)
    width, height = x1 - x0, y1 - y0
    area = width * height
    boxes = np.stack([x0, y0, width, height], axis=1).tolist()
    for index, (entry, box, box_area) in enumerate(
        zip(detections, boxes, area.tolist(), strict=True), start=1
    ):
        entry["area"], entry["id"], entry["bbox"] = box_area, index, box
    result = COCO(print_function=_silent)
    result.dataset = {
        "info": copy.deepcopy(coco_gt.dataset.get("info", {})),
        "images": list(coco_gt.dataset["images"]),
        "categories": copy.deepcopy(coco_gt.dataset["categories"]),
        "annotations": detections,
    }
    result.createIndex()
    return result


@functools.cache
def _vectorised_oks_evaluator() -> type:
    """``COCOeval_faster`` whose OKS matrices for all images come from one numpy pass."""
    from faster_coco_eval import COCOeval_faster

    class VectorisedOksEval(COCOeval_faster):  # type: ignore[misc, valid-type]
        def evaluate(self) -> None:
            self._oks_table: dict | None = None
            super().evaluate()

        def computeOks(self, imgId: int, catId: int):  # the library's method name
            if not self.params.useCats:
                return super().computeOks(imgId, catId)
            if self._oks_table is None:
                self._oks_table = _oks_table(self)
            return self._oks_table.get((imgId, catId), [])

    return VectorisedOksEval


def _oks_table(evaluator: Any) -> dict[tuple[int, int], np.ndarray]:
    """(image, category) -> (D, G) OKS, detections by descending score (stable), top maxDet."""
    params = evaluator.params
    keys, gts, dts, gt_counts, dt_counts = [], [], [], [], []
    for image_id in params.imgIds:
        for cat_id in params.catIds:
            image_gts = evaluator.gt_dataset.get(image_id, cat_id)
            image_dts = evaluator.dt_dataset.get(image_id, cat_id)
            if image_gts and image_dts:
                keys.append((image_id, cat_id))
                gts.extend(image_gts)
                dts.extend(image_dts)
                gt_counts.append(len(image_gts))
                dt_counts.append(len(image_dts))
    if not keys:
        return {}
    dt_rows, dt_counts_kept = _top_detections(dts, np.asarray(dt_counts), params.maxDets[-1])
    gt_count = np.asarray(gt_counts)
    pair_dt, pair_gt = _pair_indices(dt_counts_kept, gt_count)
    detections = np.asarray([dts[i]["keypoints"] for i in dt_rows], dtype=np.float64)
    oks = _pair_oks(gts, detections[pair_dt], pair_gt, np.asarray(params.kpt_oks_sigmas))
    sizes = dt_counts_kept * gt_count
    blocks = np.split(oks, np.cumsum(sizes)[:-1])
    return {
        key: block.reshape(count_dt, count_gt)
        for key, block, count_dt, count_gt in zip(
            keys, blocks, dt_counts_kept.tolist(), gt_count.tolist(), strict=True
        )
    }


def _top_detections(
    dts: list[dict], counts: np.ndarray, max_dets: int
) -> tuple[np.ndarray, np.ndarray]:  # detection rows by group, then score; (groups,) kept
    """Per group: detections by descending score (ties in input order), the first max_dets."""
    group = np.repeat(np.arange(len(counts)), counts)
    scores = np.asarray([d["score"] for d in dts], dtype=np.float64)
    order = np.lexsort((-scores, group))  # stable: as pycocotools' mergesort per image
    rank = np.arange(len(order)) - np.repeat(np.cumsum(counts) - counts, counts)
    keep = rank < max_dets
    return order[keep], np.minimum(counts, max_dets)


def _pair_indices(
    dt_counts: np.ndarray, gt_counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:  # (P,) detection row, (P,) gt row; detection-major
    sizes = dt_counts * gt_counts
    group = np.repeat(np.arange(len(sizes)), sizes)
    local = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    dt_start = np.cumsum(dt_counts) - dt_counts
    gt_start = np.cumsum(gt_counts) - gt_counts
    per_row = gt_counts[group]
    return dt_start[group] + local // per_row, gt_start[group] + local % per_row


def _pair_oks(
    gts: list[dict],
    detection_points: np.ndarray,  # (P, 3K) detection keypoints of every pair
    pair_gt: np.ndarray,  # (P,) gt row of every pair
    sigmas: np.ndarray,  # (K,)
) -> np.ndarray:  # (P,) OKS, bit-identical to pycocotools' computeOks
    truth = np.asarray([g["keypoints"] for g in gts], dtype=np.float64)[pair_gt]
    boxes = np.asarray([g["bbox"] for g in gts], dtype=np.float64)[pair_gt]
    areas = np.asarray([g["area"] for g in gts], dtype=np.float64)[pair_gt]
    xd, yd = detection_points[:, 0::3], detection_points[:, 1::3]
    visible = truth[:, 2::3] > 0
    count = visible.sum(axis=1)
    dx, dy = xd - truth[:, 0::3], yd - truth[:, 1::3]
    unlabelled = count == 0  # distances to the doubled box instead
    if unlabelled.any():
        x0, x1 = boxes[:, :1] - boxes[:, 2:3], boxes[:, :1] + boxes[:, 2:3] * 2
        y0, y1 = boxes[:, 1:2] - boxes[:, 3:], boxes[:, 1:2] + boxes[:, 3:] * 2
        box_dx = np.maximum(0, x0 - xd) + np.maximum(0, xd - x1)
        box_dy = np.maximum(0, y0 - yd) + np.maximum(0, yd - y1)
        dx = np.where(unlabelled[:, None], box_dx, dx)
        dy = np.where(unlabelled[:, None], box_dy, dy)
    variances = (sigmas * 2) ** 2
    error = (dx**2 + dy**2) / variances / (areas[:, None] + np.spacing(1)) / 2
    similarity = np.exp(-error)
    oks = np.empty(len(pair_gt))
    # pycocotools sums exp(-e) over the visible keypoints only: sum the same values, compacted
    # to the left in the same order, so that numpy's pairwise summation matches.
    columns = np.argsort(~visible, axis=1, kind="stable")
    for visible_count in np.unique(count).tolist():
        rows = np.nonzero(count == visible_count)[0]
        if visible_count == 0:
            oks[rows] = similarity[rows].sum(axis=1) / similarity.shape[1]
            continue
        picked = np.take_along_axis(similarity[rows], columns[rows, :visible_count], axis=1)
        oks[rows] = picked.sum(axis=1) / visible_count
    return oks


def format_table(stats: dict[str, float], digits: int = 3) -> str:
    """Two aligned rows (AP, AR) of names over values, e.g. for logs and the CLI."""
    lines = []
    for prefix in ("AP", "AR"):
        names = [name for name in stats if name.startswith(prefix)]
        if not names:
            continue
        width = max(digits + 3, *(len(name) for name in names))
        lines.append("  ".join(name.rjust(width) for name in names))
        lines.append("  ".join(f"{stats[name]:.{digits}f}".rjust(width) for name in names))
    return "\n".join(lines)


def format_metrics(metrics: dict[str, float]) -> str:
    """The AP table, MPII's PCKh table, or the PCK line."""
    if "AP" in metrics:
        return format_table(metrics)
    if "PCKh" in metrics:
        parts = "  ".join(f"{name} {value:.4f}" for name, value in metrics.items())
        return f"PCKh@0.5 {metrics['PCKh']:.4f}" + (f"  ({parts})" if len(metrics) > 1 else "")
    return f"PCK@0.2 {metrics['PCK']:.4f}"


def pck(
    pred: np.ndarray,  # (N, K, 2) predicted x, y
    gt: np.ndarray,  # (N, K, 3) true x, y, v; v > 0 labelled
    norm: np.ndarray,  # (N,) per-instance length, e.g. box_norm(gt boxes)
    threshold: float = 0.2,
) -> float:
    """Percentage of Correct Keypoints, as a fraction in [0, 1].

    A labelled keypoint is correct when its distance to the prediction is at most
    ``threshold * norm`` of its instance. posekit uses the ground-truth box's longer side
    (:func:`box_norm`) as ``norm``, so ``threshold=0.2`` means "within 20 % of the person's
    size". Returns NaN when no keypoint is labelled.
    """
    predicted = np.asarray(pred, dtype=np.float64)[..., :2]
    truth = np.asarray(gt, dtype=np.float64)
    scale = np.asarray(norm, dtype=np.float64).reshape(-1, 1)
    labelled = truth[..., 2] > 0
    if not labelled.any():
        return float("nan")
    distance = np.linalg.norm(predicted - truth[..., :2], axis=-1)  # (N, K)
    correct = distance <= threshold * scale
    return float(np.count_nonzero(correct & labelled) / np.count_nonzero(labelled))


def box_norm(boxes: np.ndarray) -> np.ndarray:  # (N, 4) x, y, w, h -> (N,) max(w, h)
    """The PCK normaliser posekit uses: the longer side of each ground-truth box."""
    values = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.maximum(values[:, 2], values[:, 3])


def keypoint_results(
    image_id: int,
    keypoints: np.ndarray,  # (P, K, 3) x, y, score in image pixels (data set order)
    scores: np.ndarray,  # (P,) person scores
    category_ids: np.ndarray | Sequence[int] | int = 1,  # (P,) or one id for all
) -> list[dict[str, Any]]:
    """COCO keypoint results entries for one image."""
    points = np.asarray(keypoints, dtype=np.float64).reshape(len(scores), -1)
    categories = np.broadcast_to(np.asarray(category_ids, dtype=np.int64), (len(points),))
    return [
        {
            "image_id": int(image_id),
            "category_id": int(category),
            "keypoints": row.tolist(),
            "score": float(score),
        }
        for row, score, category in zip(
            points, np.asarray(scores, dtype=np.float64), categories, strict=True
        )
    ]


def bbox_results(
    image_id: int,
    boxes: np.ndarray,  # (N, 4) x, y, w, h in image pixels
    scores: np.ndarray,  # (N,)
    category_ids: np.ndarray | Sequence[int] | int = 1,  # (N,) or one id for all
) -> list[dict[str, Any]]:
    """COCO bbox results entries for one image."""
    values = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    categories = np.broadcast_to(np.asarray(category_ids, dtype=np.int64), (len(values),))
    return [
        {
            "image_id": int(image_id),
            "category_id": int(category),
            "bbox": box.tolist(),
            "score": float(score),
        }
        for box, score, category in zip(
            values, np.asarray(scores, dtype=np.float64), categories, strict=True
        )
    ]


def save_results(results: Sequence[dict[str, Any]], path: str | os.PathLike[str]) -> None:
    """Write a COCO results JSON atomically (a reader never sees a partial file)."""
    atomic_write_bytes(path, orjson.dumps(list(results), option=orjson.OPT_SERIALIZE_NUMPY))
