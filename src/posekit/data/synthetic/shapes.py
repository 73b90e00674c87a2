"""Filled drawing primitives for the synthetic data set, drawn twice: in colour and as labels.

Pixel convention (shared by the whole synthetic data set): coordinates are continuous, x to the
right, y down; pixel (column c, row r) covers [c, c + 1) x [r, r + 1), so its centre is
(c + 0.5, r + 0.5) and the pixel under a point (x, y) is (floor(x), floor(y)). OpenCV draws
integer coordinates at pixel centres, so shapes are handed to it shifted by -0.5, with 4
fractional bits.

Each shape is drawn in colour (anti-aliased, shaded) and, unless it is a detail inside the
silhouette, into a uint8 label map as one integer (a depth rank) with plain 8-connected filling,
so every pixel knows which object is in front. Shapes are small; the code keeps per-shape
Python work low (plain floats, one fixed-point conversion per primitive).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

Colour = tuple[int, int, int]

_SHIFT = 4
_ONE = 1 << _SHIFT
_RIM_SHADE = 0.72  # rim colour of shaded shapes, as a fraction of the base colour
_CORE_RADIUS = 0.55  # core of a shaded capsule, as a fraction of its radius
_LIGHT = np.array([-0.2, -0.25])  # core offset (in radii): light from the upper left


@dataclass(frozen=True)
class Shape:
    """One filled primitive in pixel coordinates.

    ``points``: capsule -> its two ends; polygon -> its corners; ellipse -> centre, centre + u,
    centre + v (u, v: perpendicular semi-axis vectors); circle -> its centre.
    ``radii``: capsule -> (radius at end 0, radius at end 1); circle -> (radius,).
    """

    kind: str
    points: np.ndarray
    radii: tuple[float, ...] = ()
    colour: Colour = (0, 0, 0)
    shaded: bool = False  # darker rim and lighter core (colour only)
    detail: bool = False  # lies inside the silhouette already: no label drawn


def capsule(p0: np.ndarray, p1: np.ndarray, r0: float, r1: float, colour: Colour) -> Shape:
    """A tapered limb from ``p0`` (radius ``r0``) to ``p1`` (radius ``r1``), round ends."""
    return Shape("capsule", np.array([p0, p1], dtype=np.float64), (r0, r1), colour, True)


def polygon(points: np.ndarray, colour: Colour, detail: bool = False) -> Shape:
    return Shape("polygon", np.asarray(points, dtype=np.float64), (), colour, not detail, detail)


def ellipse(
    centre: np.ndarray, u: np.ndarray, v: np.ndarray, colour: Colour, detail: bool = False
) -> Shape:
    points = np.array([centre, centre + u, centre + v], dtype=np.float64)
    return Shape("ellipse", points, (), colour, False, detail)


def circle(centre: np.ndarray, radius: float, colour: Colour, detail: bool = False) -> Shape:
    return Shape("circle", np.array([centre], dtype=np.float64), (radius,), colour, False, detail)


def draw_shapes(
    image: np.ndarray,
    shapes: Iterable[Shape],
    labels: np.ndarray | None = None,
    rank: int = 0,
) -> None:
    """Draw ``shapes`` (back to front) into a BGR uint8 ``image`` in place and, when given,
    write ``rank`` into the uint8 ``labels`` map wherever they cover it."""
    for shape in shapes:
        geometry = _fixed_geometry(shape.kind, shape.points, shape.radii)
        if labels is not None and not shape.detail:
            _fill(labels, shape.kind, geometry, rank, cv2.LINE_8)
        if not shape.shaded:
            _fill(image, shape.kind, geometry, shape.colour, cv2.LINE_AA)
            continue
        rim = tuple(int(c * _RIM_SHADE) for c in shape.colour)
        if shape.kind != "capsule":
            _fill(image, shape.kind, geometry, shape.colour, cv2.LINE_AA)
            cv2.polylines(image, [geometry], True, rim, 1, cv2.LINE_AA, _SHIFT)
            continue
        _fill(image, "capsule", geometry, rim, cv2.LINE_AA)
        offset = _LIGHT * max(shape.radii)
        core_radii = tuple(r * _CORE_RADIUS for r in shape.radii)
        core = _fixed_geometry("capsule", shape.points + offset, core_radii)
        light = tuple(min(255, int(c * 1.08) + 8) for c in shape.colour)
        _fill(image, "capsule", core, light, cv2.LINE_AA)


def _fixed_geometry(kind: str, points: np.ndarray, radii: tuple[float, ...]) -> Any:
    """OpenCV fixed-point arguments of a shape (pixel centres at +0.5, 4 fractional bits)."""
    if kind == "polygon":
        return np.round((points - 0.5) * _ONE).astype(np.int32)
    if kind == "capsule":
        return _capsule_geometry(*points.ravel().tolist(), *radii)
    if kind == "circle":
        x, y = points.ravel().tolist()
        return (_fixed_point(x, y), _fixed_length(radii[0]))
    if kind == "ellipse":
        cx, cy, ux, uy, vx, vy = points.ravel().tolist()
        ux, uy, vx, vy = ux - cx, uy - cy, vx - cx, vy - cy
        axes = (_fixed_length(math.hypot(ux, uy)), _fixed_length(math.hypot(vx, vy)))
        return (_fixed_point(cx, cy), axes, math.degrees(math.atan2(uy, ux)))
    raise ValueError(f"unknown shape kind {kind!r}")


def _capsule_geometry(
    x0: float, y0: float, x1: float, y1: float, r0: float, r1: float
) -> tuple[np.ndarray | None, tuple, tuple]:
    """The quad tangent to both end circles' diameters (None if the ends meet) and the circles."""
    dx, dy = x1 - x0, y1 - y0
    length = math.hypot(dx, dy)
    quad = None
    if length > 1e-6:
        nx, ny = -dy / length, dx / length
        corners = [(x0 + nx * r0, y0 + ny * r0), (x1 + nx * r1, y1 + ny * r1),
                   (x1 - nx * r1, y1 - ny * r1), (x0 - nx * r0, y0 - ny * r0)]  # fmt: skip
        quad = np.array([_fixed_point(x, y) for x, y in corners], dtype=np.int32)
    ends = ((_fixed_point(x0, y0), _fixed_length(r0)), (_fixed_point(x1, y1), _fixed_length(r1)))
    return quad, ends[0], ends[1]


def _fill(
    canvas: np.ndarray, kind: str, geometry: Any, colour: Colour | int, line_type: int
) -> None:
    if kind == "capsule":
        quad, *ends = geometry
        if quad is not None:
            cv2.fillConvexPoly(canvas, quad, colour, line_type, _SHIFT)
        for centre, radius in ends:
            cv2.circle(canvas, centre, radius, colour, -1, line_type, _SHIFT)
    elif kind == "polygon":
        cv2.fillPoly(canvas, [geometry], colour, line_type, _SHIFT)
    elif kind == "circle":
        cv2.circle(canvas, geometry[0], geometry[1], colour, -1, line_type, _SHIFT)
    else:
        centre, axes, angle = geometry
        cv2.ellipse(canvas, centre, axes, angle, 0, 360, colour, -1, line_type, _SHIFT)


def _fixed_point(x: float, y: float) -> tuple[int, int]:
    """A continuous pixel coordinate as OpenCV fixed point (pixel centres at +0.5)."""
    return round((x - 0.5) * _ONE), round((y - 0.5) * _ONE)


def _fixed_length(length: float) -> int:
    return max(1, round(length * _ONE))
