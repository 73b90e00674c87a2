"""Bottom-up decoding speed: posekit's vectorised decoder against an original-style one.

Maps are rendered for 1, 3 and 10 synthetic OpenPose-18 people in a 368 × 368 input
(46 × 46 maps, stride 8). The baseline is the same algorithm written the way the original
Lightweight OpenPose code is: ×4 cubic upsampling of the maps, 4-neighbour peaks with a
pairwise distance suppression, and a Python loop over candidate pairs and sample points.
Prints one JSON line per scene: {"name", "value" (ms), "unit", "baseline", "ratio"}.

    .venv/bin/python benchmarks/bench_decode.py [--runs 100]
"""

from __future__ import annotations

import argparse
import json
import math
import time

import cv2
import numpy as np

from posekit.bottomup.grouping import decode_bottomup
from posekit.bottomup.layouts import OPENPOSE18_LIMBS

STRIDE = 8
MAP_HW = (46, 46)
SIGMA = 7.0
UPSAMPLE = 4
POSE = np.array(
    [
        [0, -100], [0, -70], [-30, -70], [-45, -30], [-50, 10], [30, -70], [45, -30],
        [50, 10], [-20, 20], [-22, 80], [-24, 140], [20, 20], [22, 80], [24, 140],
        [-7, -107], [7, -107], [-15, -103], [15, -103],
    ],
    dtype=np.float64,
)  # fmt: skip


def make_people(count: int, seed: int = 0) -> np.ndarray:  # (P, 18, 2) input px
    """People on a jittered grid, scaled to fit; neighbours' limbs overlap."""
    rng = np.random.default_rng(seed)
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    scale = min(1.0, 1.3 / rows, 1.6 / columns)
    people = []
    for index in range(count):
        row, column = divmod(index, columns)
        centre = np.array([(column + 0.5) * 368 / columns, (row + 0.5) * 368 / rows])
        pose = POSE * scale * rng.uniform(0.9, 1.1) + rng.normal(0, 3 * scale, POSE.shape)
        people.append(pose + centre + rng.uniform(-8, 8, 2))
    return np.stack(people)


def render_maps(people: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K + 1, H, W) Gaussian heatmaps and (2L, H, W) averaged unit-vector PAFs."""
    centres_y = (np.arange(MAP_HW[0]) * STRIDE + (STRIDE - 1) / 2)[:, None]
    centres_x = (np.arange(MAP_HW[1]) * STRIDE + (STRIDE - 1) / 2)[None, :]
    heatmaps = np.zeros((people.shape[1] + 1, *MAP_HW), dtype=np.float32)
    for person in people:
        for k, (x, y) in enumerate(person):
            gauss = np.exp(-((centres_x - x) ** 2 + (centres_y - y) ** 2) / (2 * SIGMA**2))
            heatmaps[k] = np.maximum(heatmaps[k], gauss)
    heatmaps[-1] = 1 - heatmaps[:-1].max(axis=0)
    pafs = np.zeros((2 * len(OPENPOSE18_LIMBS), *MAP_HW), dtype=np.float32)
    xs, ys = centres_x / STRIDE, centres_y / STRIDE
    for index, (a, b) in enumerate(OPENPOSE18_LIMBS):
        total, count = np.zeros((2, *MAP_HW)), np.zeros(MAP_HW)
        for person in people:
            start, end = person[a] / STRIDE, person[b] / STRIDE
            length = np.linalg.norm(end - start)
            ux, uy = (end - start) / length
            along = (xs - start[0]) * ux + (ys - start[1]) * uy
            across = np.abs((xs - start[0]) * uy - (ys - start[1]) * ux)
            inside = (along >= -1) & (along <= length + 1) & (across <= 1)
            total += inside * np.array([ux, uy])[:, None, None]
            count += inside
        pafs[2 * index : 2 * index + 2] = total / np.maximum(count, 1)
    return heatmaps, pafs


# ---------------------------------------------------------------- original-style baseline


def baseline_decode(heatmaps: np.ndarray, pafs: np.ndarray) -> list[list[tuple]]:
    """Upsample ×4, extract peaks per type, group with per-pair, per-sample loops."""
    size = (MAP_HW[1] * UPSAMPLE, MAP_HW[0] * UPSAMPLE)
    heat = cv2.resize(heatmaps.transpose(1, 2, 0), size, interpolation=cv2.INTER_CUBIC)
    field = cv2.resize(pafs.transpose(1, 2, 0), size, interpolation=cv2.INTER_CUBIC)
    peaks = [baseline_peaks(heat[:, :, k]) for k in range(heatmaps.shape[0] - 1)]
    people = baseline_group(peaks, field)
    scale = STRIDE / UPSAMPLE
    return [
        [((x + 0.5) * scale - 0.5, (y + 0.5) * scale - 0.5, s) for x, y, s in person]
        for person in people
    ]


def baseline_peaks(heat: np.ndarray, threshold: float = 0.1) -> list[tuple[int, int, float]]:
    heat = np.where(heat < threshold, 0, heat)
    padded = np.pad(heat, 1)
    centre = padded[1:-1, 1:-1]
    is_peak = (
        (centre > padded[1:-1, :-2])
        & (centre > padded[1:-1, 2:])
        & (centre > padded[:-2, 1:-1])
        & (centre > padded[2:, 1:-1])
    )
    ys, xs = np.nonzero(is_peak)
    candidates = sorted(zip(xs.tolist(), ys.tolist(), strict=True))
    kept, suppressed = [], set()
    for i, (x, y) in enumerate(candidates):
        if i in suppressed:
            continue
        for j in range(i + 1, len(candidates)):
            if math.hypot(x - candidates[j][0], y - candidates[j][1]) < 6:
                suppressed.add(j)
        kept.append((x, y, float(heat[y, x])))
    return kept


def baseline_connections(kpts_a, kpts_b, field_x, field_y, samples=10, min_paf=0.05):
    candidates = []
    half_height = field_x.shape[0] // 2
    for i, (xa, ya, _) in enumerate(kpts_a):
        for j, (xb, yb, _) in enumerate(kpts_b):
            dx, dy = xb - xa, yb - ya
            norm = math.hypot(dx, dy)
            if norm == 0:
                continue
            ux, uy = dx / norm, dy / norm
            scores = []
            for step in range(samples):
                t = step / (samples - 1)
                px, py = round(xa + t * dx), round(ya + t * dy)
                scores.append(ux * field_x[py, px] + uy * field_y[py, px])
            passed = sum(1 for s in scores if s > min_paf)
            score = sum(scores) / samples + min(half_height / norm - 1, 0)
            if passed > 0.8 * samples and score > 0:
                candidates.append((score, i, j))
    candidates.sort(reverse=True)
    used_a, used_b, chosen = set(), set(), []
    for score, i, j in candidates:
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            chosen.append((i, j, score))
    return chosen


def baseline_group(peaks, field, min_keypoints=3, min_mean=0.2):
    people = []  # [slots (list of (type, index) -> peak), score]
    for limb, (a, b) in enumerate(OPENPOSE18_LIMBS):
        chosen = baseline_connections(
            peaks[a], peaks[b], field[:, :, 2 * limb], field[:, :, 2 * limb + 1]
        )
        for i, j, score in chosen:
            owners = [p for p in people if p[0][a] == i or p[0][b] == j]
            if not owners:
                slots = [-1] * len(peaks)
                slots[a], slots[b] = i, j
                people.append([slots, peaks[a][i][2] + peaks[b][j][2] + score])
            elif len(owners) == 1:
                person = owners[0]
                if person[0][b] == -1:
                    person[0][b] = j
                    person[1] += peaks[b][j][2] + score
                elif person[0][a] == -1:
                    person[0][a] = i
                    person[1] += peaks[a][i][2] + score
            else:
                first, second = owners[0], owners[1]
                if all(s == -1 or t == -1 for s, t in zip(first[0], second[0], strict=True)):
                    first[0] = [
                        s if s != -1 else t for s, t in zip(first[0], second[0], strict=True)
                    ]
                    first[1] += second[1] + score
                    people.remove(second)
    result = []
    for slots, score in people:
        count = sum(1 for s in slots if s != -1)
        if count >= min_keypoints and score / count >= min_mean:
            result.append([peaks[k][s] if s != -1 else (0, 0, 0) for k, s in enumerate(slots)])
    return result


# ---------------------------------------------------------------- timing


def median_ms(function, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    for count in (1, 3, 10):
        people = make_people(count)
        heatmaps, pafs = render_maps(people)
        keypoints, _ = decode_bottomup(heatmaps, pafs, OPENPOSE18_LIMBS, STRIDE)
        found = baseline_decode(heatmaps, pafs)
        assert len(keypoints) == count, (count, len(keypoints))
        assert len(found) == count, (count, len(found))
        value = median_ms(
            lambda h=heatmaps, p=pafs: decode_bottomup(h, p, OPENPOSE18_LIMBS, 8), args.runs
        )
        baseline = median_ms(lambda h=heatmaps, p=pafs: baseline_decode(h, p), args.runs)
        print(json.dumps({
            "name": f"decode_{count}p", "value": round(value, 3), "unit": "ms",
            "baseline": round(baseline, 3), "ratio": round(baseline / value, 2),
        }))  # fmt: skip


if __name__ == "__main__":
    main()
