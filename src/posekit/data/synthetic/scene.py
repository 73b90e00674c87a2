"""One synthetic image: background, distractors, a crowd region, people, and exact labels.

Everything is drawn back to front into the image and, with its depth rank, into a uint8 label
map (0 background and background clutter, 1 the crowd, 2.. people from far to near, 255
foreground occluders). A keypoint is covered (v=1) when the label under it belongs to
something nearer than its person; outside the frame it is v=0 with x=y=0; otherwise v=2.
Face points hidden by the person's own head (faces seen from behind, the far ear of a turned
head) are left unlabelled (v=0) as COCO annotators mostly do, or v=1 with
``SceneParams(label_hidden_face=True)``. Silhouettes, areas and boxes come from each person's
*visible* pixels, as in COCO.

Pixel convention: see :mod:`posekit.data.synthetic.shapes` (pixel centres at +0.5).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from posekit.data.synthetic.figures import (
    KP,
    Figure,
    Placement,
    build_figure,
    make_figure,
    sample_body,
    sample_look,
)
from posekit.data.synthetic.shapes import Shape, capsule, circle, draw_shapes, ellipse, polygon
from posekit.errors import ConfigError

CROWD_RANK = 1
FIRST_PERSON_RANK = 2
OCCLUDER_RANK = 255
MAX_PEOPLE = OCCLUDER_RANK - FIRST_PERSON_RANK  # people ranks must stay below the occluders
POLYGON_TOLERANCE_PX = 0.5  # cv2.approxPolyDP epsilon for segmentation outlines


@dataclass(frozen=True)
class SceneParams:
    """What a synthetic scene may contain. Ranges are inclusive ``(low, high)``.

    The defaults give 1-4 people of 40-90% of the image height (about 100-230 px at 256x256),
    mostly upright and facing the camera, with clutter, some occlusion and a few crowds.
    """

    people: tuple[int, int] = (1, 4)  # people per image (fewer when they do not fit)
    person_height: tuple[float, float] = (0.4, 0.9)  # standing height / image height
    max_overlap: float = 0.3  # keypoint boxes: intersection / smaller box, per pair
    placement_attempts: int = 12  # positions tried per person before leaving it out
    rotation_sd_deg: float = 12.0  # in-plane rotation ~ N(0, sd), clipped to +-max
    max_rotation_deg: float = 30.0
    large_rotation_prob: float = 0.04  # else the angle is uniform in +-100 degrees
    back_facing_prob: float = 0.25  # people seen from behind (mirrored, no face)
    crowd_prob: float = 0.1  # images with an iscrowd=1 cluster of tiny figures
    crowd_people: tuple[int, int] = (6, 16)
    crowd_height: tuple[float, float] = (0.04, 0.09)  # tiny figures' height / image height
    distractors: tuple[int, int] = (2, 8)  # blobs, boxes and sticks per image
    foreground_prob: float = 0.15  # chance that a distractor is in front of the people
    min_visible_area: int = 48  # people showing fewer pixels are not annotated
    label_hidden_face: bool = False  # face points behind the own head: v=1 if True, else v=0
    noise: int = 6  # per-pixel grey noise amplitude (0..255 levels)
    blur_prob: float = 0.25  # chance of a 3x3 Gaussian blur over the finished image

    def __post_init__(self) -> None:
        checks = {
            "people": 0 <= self.people[0] <= self.people[1] <= MAX_PEOPLE,
            "person_height": 0 < self.person_height[0] <= self.person_height[1],
            "crowd_people": 1 <= self.crowd_people[0] <= self.crowd_people[1],
            "crowd_height": 0 < self.crowd_height[0] <= self.crowd_height[1],
            "distractors": 0 <= self.distractors[0] <= self.distractors[1],
            "max_overlap": 0.0 <= self.max_overlap <= 1.0,
            "placement_attempts": self.placement_attempts >= 1,
            "min_visible_area": self.min_visible_area >= 1,
            "noise": 0 <= self.noise <= 64,
        }
        for probability in ("large_rotation_prob", "back_facing_prob", "crowd_prob",
                            "foreground_prob", "blur_prob"):  # fmt: skip
            checks[probability] = 0.0 <= getattr(self, probability) <= 1.0
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(
                    f"synthetic scene params: {name}={getattr(self, name)!r} is out of range; "
                    "ranges are (low, high) with low <= high, probabilities in [0, 1]"
                )


def render_scene(
    rng: np.random.Generator, size: tuple[int, int], params: SceneParams
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Draw one scene of ``size`` = (width, height); return (BGR uint8 image, annotations).

    Annotations are COCO dicts without ids: keypoints (flat x, y, v list), num_keypoints,
    bbox, area, iscrowd, segmentation; people first (far to near), then the crowd region.
    """
    width, height = size
    image = draw_background(rng, size)
    labels = np.zeros((height, width), dtype=np.uint8)
    count = int(rng.integers(params.distractors[0], params.distractors[1] + 1))
    in_front = rng.random(count) < params.foreground_prob
    for _ in range(int((~in_front).sum())):
        draw_shapes(image, distractor_shapes(rng, size))
    crowd = sample_crowd(rng, size, params) if rng.random() < params.crowd_prob else []
    for figure in crowd:
        draw_figure(image, labels, figure, CROWD_RANK)
    figures = place_people(rng, size, params)
    for rank, figure in enumerate(figures, start=FIRST_PERSON_RANK):
        draw_figure(image, labels, figure, rank)
    for _ in range(int(in_front.sum())):
        draw_shapes(image, distractor_shapes(rng, size, max_extent=0.12), labels, OCCLUDER_RANK)
    image = finish_image(rng, image, params)
    people = annotate_people(labels, figures, params.min_visible_area, params.label_hidden_face)
    if crowd:
        people.extend(annotate_crowd(labels == CROWD_RANK))
    return image, people


def render_figures(
    size: tuple[int, int],
    figures: list[Figure],
    background: tuple[int, int, int] = (128, 128, 128),
    label_hidden_face: bool = False,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Draw figures (first = farthest) on a plain background; annotate every one of them.

    A test helper: without noise or clutter, and a fully hidden figure keeps its annotation
    (area 0, empty segmentation), so annotations line up with ``figures``.
    """
    width, height = size
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = background
    labels = np.zeros((height, width), dtype=np.uint8)
    for rank, figure in enumerate(figures, start=FIRST_PERSON_RANK):
        draw_figure(image, labels, figure, rank)
    return image, annotate_people(labels, figures, 0, label_hidden_face)


def draw_figure(image: np.ndarray, labels: np.ndarray, figure: Figure, rank: int) -> None:
    draw_shapes(image, figure.shapes, labels, rank)


def draw_background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A smooth colour gradient blended with low-frequency colour noise, maybe a floor."""
    width, height = size
    base = rng.uniform(30.0, 225.0, size=3)
    corners = np.clip(base + rng.normal(0.0, 50.0, size=(2, 2, 3)), 0, 255).astype(np.uint8)
    image = cv2.resize(corners, (width, height), interpolation=cv2.INTER_LINEAR)
    cells = int(rng.integers(3, 16))
    spread = rng.uniform(15.0, 60.0)
    blotches = base + rng.normal(0.0, spread, size=(cells, cells, 3))
    blotches = np.clip(blotches, 0, 255).astype(np.uint8)
    texture = cv2.resize(blotches, (width, height), interpolation=cv2.INTER_CUBIC)
    image = cv2.addWeighted(image, 1.0 - (mix := rng.uniform(0.2, 0.7)), texture, mix, 0.0)
    if rng.random() < 0.5:  # a floor below a horizon, with perspective-free tile lines
        horizon = int(height * rng.uniform(0.35, 0.8))
        floor = rng.integers(0, 256, size=3).astype(np.uint8)
        image[horizon:] //= 2  # uint8 halves: an even blend of the texture and the floor
        image[horizon:] += floor // 2
        step = int(rng.integers(12, 48))
        tile = tuple(int(c * 0.7) for c in floor)
        for y in range(horizon, height, step):
            cv2.line(image, (0, y), (width - 1, y), tile, 1, cv2.LINE_AA)
    return image


def distractor_shapes(
    rng: np.random.Generator, size: tuple[int, int], max_extent: float = 0.25
) -> list[Shape]:
    """Non-person clutter: a blob, a polygon, a box, a stick or a jointed stick (limb-like)."""
    width, height = size
    scale = min(width, height) * rng.uniform(0.04, max_extent)
    centre = rng.uniform((0.0, 0.0), (width, height))
    colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
    kind = int(rng.integers(5))
    if kind == 0:
        angle = rng.uniform(0.0, np.pi)
        u = scale * np.array([np.cos(angle), np.sin(angle)])
        v = rng.uniform(0.3, 1.0) * np.array([-u[1], u[0]])
        return [ellipse(centre, u, v, colour)]
    if kind == 1:  # corners at random angles around the centre
        angles = np.sort(rng.uniform(0.0, 2 * np.pi, 3 + int(rng.integers(0, 5))))
        points = centre + scale * np.column_stack([np.cos(angles), np.sin(angles)])
        return [polygon(points, colour)]
    if kind == 2:  # a rotated box
        angle = rng.uniform(0.0, np.pi)
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        half = scale * np.array([1.0, rng.uniform(0.3, 1.0)])
        corners = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]) * half
        return [polygon(centre + corners @ rotation.T, colour)]
    joints = 2 if kind == 3 else 3 + int(rng.integers(0, 2))
    steps = rng.normal(0.0, 1.0, size=(joints - 1, 2))
    steps *= scale / np.maximum(np.hypot(steps[:, 0], steps[:, 1]), 1e-6)[:, None]
    points = centre + np.concatenate([np.zeros((1, 2)), np.cumsum(steps, axis=0)])
    radius = rng.uniform(0.02, 0.05) * min(width, height)
    shapes = [capsule(a, b, radius, 0.8 * radius, colour) for a, b in itertools.pairwise(points)]
    if kind == 4 and rng.random() < 0.5:  # a ball on the end: a head-like hard negative
        shapes.append(circle(points[-1], radius * 1.8, colour))
    return shapes


def sample_crowd(
    rng: np.random.Generator, size: tuple[int, int], params: SceneParams
) -> list[Figure]:
    """A cluster of figures too small to annotate, inside a random band of the image."""
    width, height = size
    region_size = np.array([width * rng.uniform(0.3, 0.6), height * rng.uniform(0.12, 0.25)])
    corner = rng.uniform((0.0, 0.0), np.array([width, height]) - region_size)
    count = int(rng.integers(params.crowd_people[0], params.crowd_people[1] + 1))
    figures = []
    for _ in range(count):
        x, y = (corner + rng.uniform((0.0, 0.0), region_size)).tolist()
        height_px = height * rng.uniform(*params.crowd_height)
        facing = -1 if rng.random() < 0.5 else 1
        placement = Placement(height_px, (x, y), rng.normal(0.0, 5.0), facing)
        figures.append(make_figure(rng, placement, "stand"))
    return sorted(figures, key=lambda figure: figure.height_px)


def place_people(
    rng: np.random.Generator, size: tuple[int, int], params: SceneParams
) -> list[Figure]:
    """People at random scales, angles and positions, overlapping at most ``max_overlap``.

    Returned far to near (smaller first), which is also the drawing order.
    """
    width, height = size
    count = int(rng.integers(params.people[0], params.people[1] + 1))
    figures: list[Figure] = []
    boxes: list[np.ndarray] = []
    for _ in range(count):
        body, look = sample_body(rng), sample_look(rng)
        height_px = height * rng.uniform(*params.person_height)
        angle = _sample_angle(rng, params)
        facing = -1 if rng.random() < params.back_facing_prob else 1
        low = np.array([0.06 * width, min(0.38 * height_px, 0.5 * height)])
        high = np.array([0.94 * width, max(height - 0.38 * height_px, 0.5 * height)])
        for _ in range(params.placement_attempts):
            centre = rng.uniform(low, high)
            placement = Placement(height_px, (float(centre[0]), float(centre[1])), angle, facing)
            box = _keypoint_box(placement.apply(body.keypoints), 0.06 * height_px)
            if all(_overlap(box, other) <= params.max_overlap for other in boxes):
                figures.append(build_figure(body, look, placement))
                boxes.append(box)
                break
    return sorted(figures, key=lambda figure: figure.height_px)


def _sample_angle(rng: np.random.Generator, params: SceneParams) -> float:
    if rng.random() < params.large_rotation_prob:
        return float(rng.uniform(-100.0, 100.0))
    limit = params.max_rotation_deg
    return float(np.clip(rng.normal(0.0, params.rotation_sd_deg), -limit, limit))


def _keypoint_box(keypoints: np.ndarray, pad: float) -> np.ndarray:
    return np.concatenate([keypoints.min(axis=0) - pad, keypoints.max(axis=0) + pad])


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over the smaller box's area, for (x0, y0, x1, y1) boxes."""
    inter = np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0.0, None).prod()
    smaller = min((a[2:] - a[:2]).prod(), (b[2:] - b[:2]).prod())
    return float(inter / max(smaller, 1e-9))


def finish_image(rng: np.random.Generator, image: np.ndarray, params: SceneParams) -> np.ndarray:
    """Sensor-like grey noise and an occasional slight blur."""
    height, width = image.shape[:2]
    if params.noise > 0:
        amplitude = int(rng.integers(0, params.noise + 1))
        grey = rng.integers(0, 2 * amplitude + 1, size=(height, width), dtype=np.uint8)
        noise = cv2.merge([grey, grey, grey])
        image = cv2.subtract(cv2.add(image, noise), (amplitude, amplitude, amplitude, 0))
    if rng.random() < params.blur_prob:
        image = cv2.GaussianBlur(image, (3, 3), 0)
    return image


def annotate_people(
    labels: np.ndarray, figures: list[Figure], min_visible_area: int, label_hidden_face: bool
) -> list[dict[str, Any]]:
    """COCO annotations (without ids) of figures drawn with ranks FIRST_PERSON_RANK, ...,
    leaving out people with fewer than ``min_visible_area`` visible pixels."""
    people = []
    for rank, figure in enumerate(figures, start=FIRST_PERSON_RANK):
        person = annotate_person(labels, figure, rank, label_hidden_face)
        if person["area"] >= min_visible_area:
            people.append(person)
    return people


def annotate_person(
    labels: np.ndarray, figure: Figure, rank: int, label_hidden_face: bool = False
) -> dict[str, Any]:
    keypoints = keypoint_visibility(labels, figure, rank, label_hidden_face)
    silhouette = (labels == rank).astype(np.uint8)
    x, y, w, h = cv2.boundingRect(silhouette)
    coordinates = np.round(keypoints[:, :2], 2).tolist()
    visibility = keypoints[:, 2].astype(int).tolist()
    return {
        "keypoints": [
            v for (x, y), flag in zip(coordinates, visibility, strict=True) for v in (x, y, flag)
        ],
        "num_keypoints": int((keypoints[:, 2] > 0).sum()),
        "bbox": [float(x), float(y), float(w), float(h)],
        "area": float(cv2.countNonZero(silhouette)),
        "iscrowd": 0,
        "segmentation": mask_polygons(silhouette),
    }


def keypoint_visibility(
    labels: np.ndarray, figure: Figure, rank: int, label_hidden_face: bool = False
) -> np.ndarray:
    """(17, 3) x, y, v in pixel-index coordinates: 2 visible; 1 covered by something nearer
    (label > ``rank``); 0 with x = y = 0 outside the frame. Face points hidden by the
    person's own head are 1 when ``label_hidden_face``, else 0 (unlabelled, as COCO mostly
    leaves them)."""
    height, width = labels.shape
    xy = figure.keypoints
    inside = (xy[:, 0] >= 0) & (xy[:, 0] < width) & (xy[:, 1] >= 0) & (xy[:, 1] < height)
    cols = np.clip(np.floor(xy[:, 0]).astype(np.int64), 0, width - 1)
    rows = np.clip(np.floor(xy[:, 1]).astype(np.int64), 0, height - 1)
    covered = (labels[rows, cols] > rank) | figure.self_occluded
    labelled = inside & (label_hidden_face | ~figure.self_occluded)
    visibility = np.where(labelled, np.where(covered, 1, 2), 0)
    # Written in pixel-index coordinates (pixel centres at integers), as COCO keypoints are
    # read by posekit's targets and decoding: drawing position - 0.5.
    # (clipped to the pixel grid: a point in the outer half of an edge pixel sits on it).
    index_xy = np.clip(xy - 0.5, 0.0, [width - 1, height - 1])
    return np.column_stack([np.where(labelled[:, None], index_xy, 0.0), visibility])


def mask_polygons(mask: np.ndarray) -> list[list[float]]:
    """Outer outlines of a uint8 mask as COCO polygons along the pixels' outer edges.

    OpenCV traces boundary pixel centres; pushing each vertex out by half a pixel makes
    pycocotools' ``annToMask`` reproduce the mask (IoU about 0.99) instead of shrinking it.
    A degenerate outline (a one-pixel-wide sliver: fewer than 3 vertices or no area) is
    replaced by its pixel box, so no visible piece is lost from the segmentation.
    """
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours:
        simple = cv2.approxPolyDP(contour, POLYGON_TOLERANCE_PX, True)
        if len(simple) < 3 or cv2.contourArea(simple) <= 0:
            polygons.extend(_box_polygon(*cv2.boundingRect(contour)))
            continue
        outline = grow_polygon(simple.reshape(-1, 2).astype(np.float64) + 0.5, 0.5)
        polygons.append(np.round(outline.reshape(-1), 2).tolist())
    return polygons


def grow_polygon(points: np.ndarray, distance: float) -> np.ndarray:
    """Move each vertex of a simple polygon (n, 2) outwards by ``distance`` (mitred, capped)."""
    doubled_area = np.sum(
        points[:, 0] * np.roll(points[:, 1], -1) - np.roll(points[:, 0], -1) * points[:, 1]
    )
    outward = 1.0 if doubled_area > 0 else -1.0

    def unit_normals(edges: np.ndarray) -> np.ndarray:
        normals = outward * np.column_stack([edges[:, 1], -edges[:, 0]])
        return normals / np.maximum(np.hypot(normals[:, 0], normals[:, 1]), 1e-9)[:, None]

    normal_in = unit_normals(points - np.roll(points, 1, axis=0))
    normal_out = unit_normals(np.roll(points, -1, axis=0) - points)
    bisector = normal_in + normal_out
    bisector /= np.maximum(np.hypot(bisector[:, 0], bisector[:, 1]), 1e-9)[:, None]
    cosine = np.maximum((bisector * normal_in).sum(axis=1), 0.5)  # caps sharp-corner spikes
    return points + bisector * (distance / cosine)[:, None]


def _box_polygon(x: int, y: int, w: int, h: int) -> list[list[float]]:
    """The pixel box [x, x + w) x [y, y + h) as one COCO polygon along its outer edges."""
    corners = ((x, y), (x + w, y), (x + w, y + h), (x, y + h))
    return [[float(v) for corner in corners for v in corner]]


def annotate_crowd(mask: np.ndarray) -> list[dict[str, Any]]:
    """An iscrowd=1 annotation with an RLE of the crowd's visible pixels (none if hidden)."""
    area = int(np.count_nonzero(mask))
    if area == 0:
        return []
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    x, y, w, h = cv2.boundingRect(mask.astype(np.uint8))
    return [{
        "keypoints": [0] * (3 * len(KP)),
        "num_keypoints": 0,
        "bbox": [float(x), float(y), float(w), float(h)],
        "area": float(area),
        "iscrowd": 1,
        "segmentation": {"size": list(map(int, rle["size"])), "counts": rle["counts"].decode()},
    }]  # fmt: skip
