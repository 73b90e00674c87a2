"""Bottom-up grouping: keypoint peaks + part affinity fields -> people (pure numpy).

The algorithm is OpenPose's (CMU) as Lightweight OpenPose runs it, with the scoring of all
candidate connections vectorised:

1. Every pair (start peak, end peak) of every limb is a candidate connection. Its PAF
   score is the mean over ``samples`` points evenly spaced from start to end (both ends
   included; PAFs sampled bilinearly) of ``dot(PAF, unit vector start -> end)``, plus the
   distance prior ``min(0.5 * image_height / length - 1, 0)`` that penalises limbs longer
   than half the image. A candidate is kept when more than ``min_sample_fraction`` of its
   samples score above ``min_paf_score`` and its score is positive.
2. Per limb, candidates are taken greedily by descending score; each peak is used at most
   once per limb.
3. Limbs are visited in the skeleton's order. A connection whose ends are both unassigned
   starts a new person; one with a single assigned end adds the other end to that person
   (if the slot is free); one whose ends belong to two different people merges them when
   they share no keypoint type (so partial people built by earlier limbs join up, whatever
   the limb order). A connection that conflicts with an assignment is skipped.
4. A person's score is the sum of its keypoint scores and of the scores of the
   connections that built it (the original's ``pose_entry[-2]``). People with fewer than
   ``min_keypoints`` keypoints or with ``score / keypoints < min_mean_score`` are dropped.

:func:`normalised_person_scores` gives a score in [0, 1] for COCO results (mean keypoint
score × fraction of keypoints found); pass ``score="normalised"`` to get it directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from posekit.bottomup.peaks import find_peaks

SCORE_KINDS = ("total", "normalised")
_MAX_PAIRS_PER_BATCH = 1 << 14  # candidate pairs scored in one vectorised step


@dataclass
class _Person:
    slots: list[int]  # global peak index per keypoint type, -1 where missing
    score: float  # keypoint scores + connection scores
    alive: bool = True


def decode_bottomup(
    heatmaps: np.ndarray,  # (K + 1, H, W), last channel = background (ignored)
    pafs: np.ndarray,  # (2L, H, W)
    limbs: Sequence[Sequence[int]] | np.ndarray,  # (L, 2) start, end keypoint indices
    stride: int,
    peak_threshold: float = 0.1,
    **grouping: float | int | str,
) -> tuple[np.ndarray, np.ndarray]:  # (P, K, 3) x, y, score in input px; (P,) person scores
    """Peaks of the keypoint channels, then :func:`group_people` (keyword options pass on)."""
    maps = np.asarray(heatmaps, dtype=np.float32)
    peaks = find_peaks(maps[:-1], stride, threshold=peak_threshold)
    return group_people(peaks, pafs, limbs, stride, **grouping)  # type: ignore[arg-type]


def group_people(
    peaks: Sequence[np.ndarray],  # K arrays (M_k, 3): x, y in input px, score
    pafs: np.ndarray,  # (2L, H, W)
    limbs: Sequence[Sequence[int]] | np.ndarray,  # (L, 2)
    stride: int,
    *,
    samples: int = 10,
    min_paf_score: float = 0.05,
    min_sample_fraction: float = 0.8,
    distance_prior: bool = True,
    min_keypoints: int = 3,
    min_mean_score: float = 0.2,
    score: str = "total",
) -> tuple[np.ndarray, np.ndarray]:  # (P, K, 3) float32, score 0 where missing; (P,)
    """Assemble people from per-type peaks and PAFs; best-scoring people first.

    ``score="total"`` returns the original's person score (keypoint + connection scores);
    ``score="normalised"`` returns :func:`normalised_person_scores`.
    """
    if score not in SCORE_KINDS:
        raise ValueError(f"score must be one of {SCORE_KINDS}, got {score!r}")
    fields = np.asarray(pafs, dtype=np.float32)
    pairs = np.asarray(limbs, dtype=np.intp).reshape(-1, 2)
    if fields.ndim != 3 or fields.shape[0] != 2 * len(pairs):
        raise ValueError(f"pafs must be (2L, H, W) with L={len(pairs)}; got {fields.shape}")
    all_peaks = _stack_peaks(peaks)
    limb_id, start, end = _candidate_pairs(peaks, pairs)
    prior_height = fields.shape[1] * stride if distance_prior else None
    pair_score, passed = _score_candidates(
        all_peaks, limb_id, start, end, fields, stride, samples, min_paf_score, prior_height
    )
    valid = (passed > min_sample_fraction) & (pair_score > 0)
    connections = _greedy_connections(limb_id[valid], start[valid], end[valid], pair_score[valid])
    people = _assemble(connections, pairs, all_peaks[:, 2], len(peaks))
    keypoints, totals, count = _people_arrays(people, all_peaks, len(peaks))
    keep = (count >= min_keypoints) & (totals >= min_mean_score * np.maximum(count, 1))
    keypoints, totals = keypoints[keep], totals[keep]
    order = np.argsort(-totals, kind="stable")
    keypoints, totals = keypoints[order], totals[order]
    if score == "normalised":
        return keypoints, normalised_person_scores(keypoints)
    return keypoints, totals.astype(np.float32)


def normalised_person_scores(
    keypoints: np.ndarray,  # (P, K, 3) x, y, score; score 0 where missing
) -> np.ndarray:  # (P,) float32 in [0, 1]
    """Mean score of the found keypoints (clipped to [0, 1]) × fraction of keypoints found.

    That product is the sum of the clipped scores over the keypoint count K.
    """
    scores = np.clip(np.asarray(keypoints, dtype=np.float32)[..., 2], 0.0, 1.0)
    return (scores.sum(axis=1) / max(scores.shape[1], 1)).astype(np.float32)


def _stack_peaks(peaks: Sequence[np.ndarray]) -> np.ndarray:  # (T, 3) float64
    """All peaks of all types in one array, type by type (global peak index = row)."""
    arrays = [np.asarray(p, dtype=np.float64).reshape(-1, 3) for p in peaks]
    return np.concatenate(arrays) if arrays else np.zeros((0, 3))


def _candidate_pairs(
    peaks: Sequence[np.ndarray], pairs: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # (N,) limb, (N,) start peak, (N,) end peak
    """Every (start peak, end peak) pair of every limb, as global peak indices."""
    counts = np.array([len(p) for p in peaks], dtype=np.intp)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.intp)
    limb_ids, starts, ends = [], [], []
    for index, (a, b) in enumerate(pairs):
        count_a, count_b = counts[a], counts[b]
        if count_a == 0 or count_b == 0:
            continue
        limb_ids.append(np.full(count_a * count_b, index, dtype=np.intp))
        starts.append(offsets[a] + np.repeat(np.arange(count_a), count_b))
        ends.append(offsets[b] + np.tile(np.arange(count_b), count_a))
    if not limb_ids:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty, empty
    return np.concatenate(limb_ids), np.concatenate(starts), np.concatenate(ends)


def _score_candidates(
    all_peaks: np.ndarray,  # (T, 3)
    limb_id: np.ndarray,  # (N,)
    start: np.ndarray,  # (N,)
    end: np.ndarray,  # (N,)
    fields: np.ndarray,  # (2L, H, W)
    stride: int,
    samples: int,
    min_paf_score: float,
    prior_height: float | None,
) -> tuple[np.ndarray, np.ndarray]:  # (N,) PAF score with prior, (N,) fraction passed
    """PAF line integral of every candidate, in batches of bounded size."""
    score = np.zeros(limb_id.size)
    passed = np.zeros(limb_id.size)
    flat = fields.reshape(-1)
    for first in range(0, limb_id.size, _MAX_PAIRS_PER_BATCH):
        part = slice(first, first + _MAX_PAIRS_PER_BATCH)
        score[part], passed[part] = _line_integrals(
            all_peaks[start[part], :2],
            all_peaks[end[part], :2],
            limb_id[part],
            flat,
            fields.shape[1:],
            stride,
            samples,
            min_paf_score,
        )
    if prior_height is not None and limb_id.size:
        length = np.linalg.norm(all_peaks[end, :2] - all_peaks[start, :2], axis=1)
        score += np.minimum(0.5 * prior_height / np.maximum(length, 1e-9) - 1.0, 0.0)
    return score, passed


def _line_integrals(
    start_xy: np.ndarray,  # (N, 2) input px
    end_xy: np.ndarray,  # (N, 2) input px
    limb_id: np.ndarray,  # (N,)
    flat_fields: np.ndarray,  # (2L * H * W,)
    map_hw: tuple[int, int],
    stride: int,
    samples: int,
    min_paf_score: float,
) -> tuple[np.ndarray, np.ndarray]:  # (N,) mean dot product, (N,) fraction above threshold
    height, width = map_hw
    vector = end_xy - start_xy
    length = np.linalg.norm(vector, axis=1, keepdims=True)
    unit = np.where(length > 0, vector / np.maximum(length, 1e-12), 0.0)  # (N, 2)
    steps = np.linspace(0.0, 1.0, samples)[None, :, None]
    points = (start_xy[:, None, :] + steps * vector[:, None, :] - (stride - 1) / 2.0) / stride
    x = np.clip(points[..., 0], 0.0, width - 1)  # (N, S) map coordinates
    y = np.clip(points[..., 1], 0.0, height - 1)
    x0, y0 = np.floor(x).astype(np.intp), np.floor(y).astype(np.intp)
    x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
    fx, fy = x - x0, y - y0
    corners = (y0 * width + x0, y0 * width + x1, y1 * width + x0, y1 * width + x1)
    weights = ((1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy)
    base_x = (2 * limb_id * height * width)[:, None]
    base_y = base_x + height * width
    field_x = sum(w * flat_fields[base_x + c] for w, c in zip(weights, corners, strict=True))
    field_y = sum(w * flat_fields[base_y + c] for w, c in zip(weights, corners, strict=True))
    dots = field_x * unit[:, :1] + field_y * unit[:, 1:]  # (N, S)
    valid = length[:, 0] > 0
    mean = np.where(valid, dots.mean(axis=1), 0.0)
    fraction = np.where(valid, (dots > min_paf_score).mean(axis=1), 0.0)
    return mean, fraction


def _greedy_connections(
    limb_id: np.ndarray, start: np.ndarray, end: np.ndarray, score: np.ndarray
) -> list[tuple[int, int, int, float]]:  # (limb, start peak, end peak, score), limb order
    """Per limb, best connections first, each peak used at most once per limb."""
    order = np.lexsort((-score, limb_id))
    used: set[tuple[int, int]] = set()  # (limb, peak): start and end peaks never coincide
    chosen = []
    for limb, a, b, value in zip(
        limb_id[order].tolist(),
        start[order].tolist(),
        end[order].tolist(),
        score[order].tolist(),
        strict=True,
    ):
        if (limb, a) in used or (limb, b) in used:
            continue
        used.add((limb, a))
        used.add((limb, b))
        chosen.append((limb, a, b, value))
    return chosen


def _assemble(
    connections: list[tuple[int, int, int, float]],
    pairs: np.ndarray,  # (L, 2)
    peak_scores: np.ndarray,  # (T,)
    num_keypoints: int,
) -> list[_Person]:
    """Build people from connections in limb order; merge people joined by a connection."""
    people: list[_Person] = []
    owner: dict[int, _Person] = {}
    scores = peak_scores.tolist()
    for limb, a, b, value in connections:
        type_a, type_b = int(pairs[limb, 0]), int(pairs[limb, 1])
        person_a, person_b = owner.get(a), owner.get(b)
        if person_a is None and person_b is None:
            person = _Person([-1] * num_keypoints, scores[a] + scores[b] + value)
            person.slots[type_a], person.slots[type_b] = a, b
            owner[a] = owner[b] = person
            people.append(person)
        elif person_a is not None and person_b is None:
            _attach(person_a, type_b, b, scores[b] + value, owner)
        elif person_a is None and person_b is not None:
            _attach(person_b, type_a, a, scores[a] + value, owner)
        elif person_a is not person_b and _disjoint(person_a, person_b):  # type: ignore[arg-type]
            _merge(person_a, person_b, value, owner)  # type: ignore[arg-type]
    return [person for person in people if person.alive]


def _attach(person: _Person, slot: int, peak: int, gain: float, owner: dict) -> None:
    if person.slots[slot] == -1:
        person.slots[slot] = peak
        person.score += gain
        owner[peak] = person


def _disjoint(first: _Person, second: _Person) -> bool:
    return all(a == -1 or b == -1 for a, b in zip(first.slots, second.slots, strict=True))


def _merge(target: _Person, other: _Person, value: float, owner: dict) -> None:
    for slot, peak in enumerate(other.slots):
        if peak != -1:
            target.slots[slot] = peak
            owner[peak] = target
    target.score += other.score + value
    other.alive = False


def _people_arrays(
    people: list[_Person], all_peaks: np.ndarray, num_keypoints: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # (P, K, 3) float32, (P,) scores, (P,) counts
    slots = np.array([p.slots for p in people], dtype=np.intp).reshape(-1, num_keypoints)
    found = slots >= 0
    keypoints = np.zeros((len(people), num_keypoints, 3), dtype=np.float32)
    keypoints[found] = all_peaks[slots[found]]
    totals = np.array([person.score for person in people], dtype=np.float64)
    return keypoints, totals, found.sum(axis=1)
