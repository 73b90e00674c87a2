"""Articulated people on the COCO-17 skeleton for the synthetic data set.

A body is sampled in *body units*: standing height about 1 (top of the head to the soles),
origin at the mid-hip point, y down, seen from the front, so the person's left side is at +x
(a front-facing person's ``left_*`` keypoints appear on the image's right). One similarity
transform then places it in the image: scale to pixels, mirror for people seen from behind,
rotate in the image plane, translate. Keypoints and every drawn shape go through the same
transform, so the labels are exact. Pixel convention: see :mod:`posekit.data.synthetic.shapes`.

Proportions follow the usual artists' canon (head about 1/8 of the height, upper arm 0.17,
forearm 0.15, thigh and shin 0.24, shoulders 0.2-0.23 wide); joint angles are drawn per pose
kind within anatomical limits (elbows and knees bend one way).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from posekit.data.synthetic.shapes import Shape, capsule, circle, ellipse, polygon
from posekit.schema import COCO17_KEYPOINTS

KP = {name: index for index, name in enumerate(COCO17_KEYPOINTS)}
SIDES = ((1, "left"), (-1, "right"))  # (x sign in the front view, keypoint name prefix)
ARM_JOINTS = ("shoulder", "elbow", "wrist")
LEG_JOINTS = ("hip", "knee", "ankle")

# pose kind: (weight, thigh angle from straight down (deg, + = outward), thigh length scale,
#             shin angle (deg) = follow * thigh angle + offset, follow, shin length scale)
POSE_KINDS: dict[str, tuple] = {
    "stand": (0.35, (-2, 10), (0.95, 1.0), (-8, 4), 1.0, (0.95, 1.0)),
    "walk": (0.25, (-6, 14), (0.85, 1.0), (-15, 2), 1.0, (0.8, 1.0)),
    "wide": (0.15, (15, 40), (0.9, 1.0), (-30, 0), 1.0, (0.9, 1.0)),
    "crouch": (0.12, (45, 80), (0.5, 0.85), (-12, 8), 0.0, (0.85, 1.0)),
    "sit": (0.13, (0, 35), (0.15, 0.4), (-10, 12), 0.0, (0.9, 1.0)),
}
# arm style: (weight, upper-arm angle from the torso's down direction (deg, + = outward),
#             elbow bend (deg), bend direction: -1 = hand towards the body midline, 0 = either)
ARM_STYLES: dict[str, tuple] = {
    "hang": (0.28, (4, 25), (0, 25), -1),
    "swing": (0.20, (-15, 25), (0, 45), -1),
    "side": (0.20, (55, 115), (0, 80), 0),
    "up": (0.10, (125, 175), (0, 40), 0),
    "akimbo": (0.11, (25, 50), (95, 130), -1),
    "cross": (0.11, (0, 15), (75, 110), -1),
}
# A face keypoint is visible when its depth towards the viewer (cosine of its angle on the
# head) exceeds this; back views negate the depth. Body joints are never self-occluded here.
FACE_MIN_DEPTH = {
    "nose": 0.05,
    "left_eye": 0.2,
    "right_eye": 0.2,
    "left_ear": -0.45,
    "right_ear": -0.45,
}

SKIN_TONES = ((189, 224, 255), (164, 203, 241), (130, 177, 224), (104, 148, 198),
              (80, 118, 165), (58, 86, 125), (45, 62, 92), (120, 160, 210))  # fmt: skip
HAIR_COLOURS = ((20, 20, 25), (30, 45, 70), (40, 80, 130), (90, 160, 210), (160, 160, 165),
                (30, 60, 150))  # fmt: skip
PANTS_COLOURS = ((130, 80, 40), (35, 35, 35), (120, 170, 190), (110, 110, 110), (60, 40, 30))
EYE_COLOUR = (40, 30, 30)
MOUTH_COLOUR = (60, 50, 150)
SMALL_FIGURE_PX = 40.0  # figures shorter than this are drawn flat, without face details


@dataclass(frozen=True)
class Body:
    """A sampled pose: in body units (front view, person's left at +x), or placed in pixels."""

    keypoints: np.ndarray  # (17, 2)
    face_depth: np.ndarray  # (17,) towards the viewer for face points, 0 for body joints
    anchors: dict[str, np.ndarray]  # outline points: torso corners, head and foot centres, ...
    vectors: dict[str, np.ndarray]  # semi-axis vectors of the head and feet ellipses
    radii: dict[str, float]  # limb thickness


@dataclass(frozen=True)
class Look:
    """Per-person colours (BGR) and clothing."""

    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    shirt: tuple[int, int, int]
    stripes: tuple[int, int, int] | None
    pants: tuple[int, int, int]
    shoes: tuple[int, int, int]
    long_sleeves: bool
    shorts: bool


@dataclass(frozen=True)
class Placement:
    """Where a body goes: standing height in pixels, mid-hip point, in-plane angle, facing."""

    height_px: float
    centre: tuple[float, float]
    angle_deg: float = 0.0
    facing: int = 1  # +1 towards the viewer, -1 seen from behind (mirrored)

    def matrix(self) -> np.ndarray:
        angle = math.radians(self.angle_deg)
        rotation = np.array(
            [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
        )
        return self.height_px * rotation @ np.diag([float(self.facing), 1.0])

    def apply(self, points: np.ndarray) -> np.ndarray:
        return points @ self.matrix().T + np.asarray(self.centre, dtype=np.float64)

    def place(self, body: Body) -> Body:
        """``body`` in pixel coordinates."""
        matrix = self.matrix()
        names = list(body.anchors)
        anchors = self.apply(np.array([body.anchors[name] for name in names]))
        vector_names = list(body.vectors)
        vectors = np.array([body.vectors[name] for name in vector_names]) @ matrix.T
        return Body(
            keypoints=self.apply(body.keypoints),
            face_depth=body.face_depth,
            anchors=dict(zip(names, anchors, strict=True)),
            vectors=dict(zip(vector_names, vectors, strict=True)),
            radii={name: r * self.height_px for name, r in body.radii.items()},
        )


@dataclass(frozen=True)
class Figure:
    """A person ready to draw: keypoints and shapes in pixels, back to front."""

    keypoints: np.ndarray  # (17, 2) continuous pixel coordinates
    self_occluded: np.ndarray  # (17,) bool: hidden behind the person's own head
    shapes: tuple[Shape, ...]
    height_px: float


def make_figure(
    rng: np.random.Generator, placement: Placement, pose_kind: str | None = None
) -> Figure:
    """Sample a body and a look, and place them."""
    return build_figure(sample_body(rng, pose_kind), sample_look(rng), placement)


def build_figure(body: Body, look: Look, placement: Placement) -> Figure:
    placed = placement.place(body)
    shapes = tuple(body_shapes(placed, look, placement.facing))
    if placement.height_px < SMALL_FIGURE_PX:  # face details and shading would be sub-pixel
        shapes = tuple(replace(s, shaded=False) for s in shapes if not s.detail)
    self_occluded = placement.facing * body.face_depth <= _FACE_MIN_DEPTH_ARRAY
    return Figure(placed.keypoints, self_occluded, shapes, placement.height_px)


_FACE_MIN_DEPTH_ARRAY = np.array([FACE_MIN_DEPTH.get(name, -np.inf) for name in KP])


def _choose(rng: np.random.Generator, table: dict[str, tuple]) -> str:
    """A key of ``table`` drawn with the weights in each entry's first field."""
    weights = np.cumsum([entry[0] for entry in table.values()])
    index = int(np.searchsorted(weights, rng.random() * weights[-1], side="right"))
    return list(table)[min(index, len(table) - 1)]


def _direction(angle: float) -> np.ndarray:
    """Unit vector ``angle`` radians from straight down, positive towards +x."""
    return np.array([math.sin(angle), math.cos(angle)])


def sample_body(rng: np.random.Generator, pose_kind: str | None = None) -> Body:
    """A random pose of kind ``pose_kind`` (a key of POSE_KINDS; None draws one), body units."""
    kind = pose_kind if pose_kind is not None else _choose(rng, POSE_KINDS)
    yaw = float(np.clip(rng.normal(0.0, 0.4), -1.0, 1.0))  # body turn: narrows the torso
    width = math.cos(yaw)
    build = rng.uniform(0.85, 1.2)
    keypoints = np.zeros((len(KP), 2))
    anchors: dict[str, np.ndarray] = {}
    vectors: dict[str, np.ndarray] = {}
    radii = {
        "thigh": 0.062 * build, "knee": 0.045 * build, "shin_low": 0.03 * build,
        "upper_arm": 0.04 * build, "elbow": 0.032 * build, "wrist": 0.024 * build,
        "neck": 0.03 * build, "hand": 0.028, "waist": 0.012 * build,
    }  # fmt: skip
    lean = rng.normal(0.0, 0.08)  # sideways torso lean (rad)
    torso = rng.uniform(0.29, 0.32)
    if kind == "crouch":  # leaning forward: the torso looks shorter and often tilts
        lean += rng.uniform(0.0, 0.15) * rng.choice([-1, 1])
        torso *= rng.uniform(0.8, 0.95)
    up = np.array([-math.sin(lean), -math.cos(lean)])
    across = np.array([math.cos(lean), -math.sin(lean)])
    shoulder_mid = torso * up
    shoulder_half = rng.uniform(0.095, 0.115) * width
    hip_half = rng.uniform(0.05, 0.062) * width
    for sign, side in SIDES:
        shoulder = shoulder_mid + sign * shoulder_half * across
        hip = np.array([sign * hip_half, 0.0])
        keypoints[KP[f"{side}_shoulder"]] = shoulder
        keypoints[KP[f"{side}_hip"]] = hip
        shoulder_out = shoulder + sign * 0.035 * build * across + 0.012 * up
        hip_out = hip + np.array([sign * radii["thigh"] * 0.95, 0.0])
        anchors[f"{side}_shoulder_out"] = shoulder_out
        anchors[f"{side}_hip_out"] = hip_out
        waist_in = sign * radii["waist"] * across
        anchors[f"{side}_waist"] = 0.45 * shoulder_out + 0.55 * hip_out - waist_in
        anchors[f"{side}_belt"] = 0.18 * shoulder_out + 0.82 * hip_out
        _place_arm(rng, keypoints, anchors, side, sign, shoulder, lean)
        _place_leg(rng, keypoints, anchors, vectors, side, POSE_KINDS[kind], sign, hip)
    anchors["shoulder_mid"] = shoulder_mid
    anchors["crotch"] = np.array([0.0, 0.075])
    face_depth = _place_head(rng, keypoints, anchors, vectors, shoulder_mid, lean, yaw)
    return Body(keypoints, face_depth, anchors, vectors, radii)


def _place_arm(
    rng: np.random.Generator,
    keypoints: np.ndarray,
    anchors: dict[str, np.ndarray],
    side: str,
    sign: int,
    shoulder: np.ndarray,
    lean: float,
) -> None:
    _, upper_range, bend_range, bend_sign = ARM_STYLES[_choose(rng, ARM_STYLES)]
    upper_angle = math.radians(rng.uniform(*upper_range))
    bend = math.radians(rng.uniform(*bend_range)) * (bend_sign or rng.choice([-1, 1]))
    foreshortened = rng.random() < 0.3
    upper_length = rng.uniform(0.165, 0.185) * (rng.uniform(0.75, 1.0) if foreshortened else 1.0)
    fore_length = rng.uniform(0.14, 0.155) * (rng.uniform(0.75, 1.0) if rng.random() < 0.3 else 1.0)
    fore_direction = _direction(lean + sign * (upper_angle + bend))
    elbow = shoulder + upper_length * _direction(lean + sign * upper_angle)
    wrist = elbow + fore_length * fore_direction
    keypoints[KP[f"{side}_elbow"]] = elbow
    keypoints[KP[f"{side}_wrist"]] = wrist
    anchors[f"{side}_hand"] = wrist + 0.035 * fore_direction


def _place_leg(
    rng: np.random.Generator,
    keypoints: np.ndarray,
    anchors: dict[str, np.ndarray],
    vectors: dict[str, np.ndarray],
    side: str,
    pose: tuple,
    sign: int,
    hip: np.ndarray,
) -> None:
    _, thigh_range, thigh_scale, shin_range, follow, shin_scale = pose
    thigh_angle = rng.uniform(*thigh_range)
    shin_angle = follow * thigh_angle + rng.uniform(*shin_range)
    thigh_length = rng.uniform(0.23, 0.25) * rng.uniform(*thigh_scale)
    shin_length = rng.uniform(0.22, 0.245) * rng.uniform(*shin_scale)
    knee = hip + thigh_length * _direction(sign * math.radians(thigh_angle))
    shin_direction = _direction(sign * math.radians(shin_angle))
    ankle = knee + shin_length * shin_direction
    keypoints[KP[f"{side}_knee"]] = knee
    keypoints[KP[f"{side}_ankle"]] = ankle
    anchors[f"{side}_foot"] = ankle + 0.018 * shin_direction
    vectors[f"{side}_foot_u"] = 0.042 * np.array([shin_direction[1], -shin_direction[0]])
    vectors[f"{side}_foot_v"] = 0.024 * shin_direction


def _place_head(
    rng: np.random.Generator,
    keypoints: np.ndarray,
    anchors: dict[str, np.ndarray],
    vectors: dict[str, np.ndarray],
    shoulder_mid: np.ndarray,
    lean: float,
    yaw: float,
) -> np.ndarray:
    """Neck, head ellipse and face keypoints on a sphere-like head; returns face depths."""
    tilt = lean + rng.normal(0.0, 0.12)
    up = np.array([-math.sin(tilt), -math.cos(tilt)])
    across = np.array([math.cos(tilt), -math.sin(tilt)])
    head_height = rng.uniform(0.125, 0.14)
    head_width = head_height * rng.uniform(0.72, 0.8)
    chin = shoulder_mid + rng.uniform(0.035, 0.05) * up
    centre = chin + 0.5 * head_height * up
    turn = float(np.clip(0.8 * yaw + rng.normal(0.0, 0.3), -1.0, 1.0))  # face turn, + = to +x
    depth = np.zeros(len(KP))
    face = {  # name: (angle on the head from the front, drop below the centre, radius)
        "nose": (turn, 0.17, 0.56),
        "left_eye": (turn + 0.38, -0.01, 0.5),
        "right_eye": (turn - 0.38, -0.01, 0.5),
        "left_ear": (turn + math.pi / 2, 0.05, 0.5),
        "right_ear": (turn - math.pi / 2, 0.05, 0.5),
    }
    for name, (angle, drop, radius) in face.items():
        offset = radius * head_width * math.sin(angle) * across - drop * head_height * up
        keypoints[KP[name]] = centre + offset
        depth[KP[name]] = math.cos(angle)
    anchors["chin"] = chin
    anchors["head"] = centre
    vectors["head_u"] = 0.5 * head_width * across
    vectors["head_v"] = -0.5 * head_height * up  # points down, towards the chin
    return depth


def sample_look(rng: np.random.Generator) -> Look:
    def pick(palette: tuple) -> tuple[int, int, int]:
        return tuple(int(c) for c in palette[int(rng.integers(len(palette)))])

    def random_colour() -> tuple[int, int, int]:
        return tuple(int(c) for c in rng.integers(15, 240, size=3))

    skin = pick(SKIN_TONES)
    shirt = random_colour()
    stripes = random_colour() if rng.random() < 0.25 else None
    pants = pick(PANTS_COLOURS) if rng.random() < 0.7 else random_colour()
    hair = skin if rng.random() < 0.08 else pick(HAIR_COLOURS)
    shoes = tuple(int(c) for c in rng.integers(10, 90, size=3))
    return Look(skin, hair, shirt, stripes, pants, shoes, rng.random() < 0.5, rng.random() < 0.25)


def body_shapes(body: Body, look: Look, facing: int) -> list[Shape]:
    """Shapes in the body's frame (pixels once placed), back to front: legs, pelvis, neck,
    torso, head, arms. Faces seen from behind (``facing`` -1) are covered by hair."""
    shapes = _leg_shapes(body, look)
    a = body.anchors
    pelvis = [a["left_belt"], a["left_hip_out"], a["crotch"], a["right_hip_out"], a["right_belt"]]
    shapes.append(polygon(np.array(pelvis), look.pants))
    neck_top = a["chin"] - 0.3 * body.vectors["head_v"]
    neck = body.radii["neck"]
    shapes.append(capsule(a["shoulder_mid"], neck_top, neck, neck, look.skin))
    shapes.extend(_torso_shapes(body, look))
    shapes.extend(_head_shapes(body, look, facing))
    shapes.extend(_arm_shapes(body, look))
    return shapes


def _leg_shapes(body: Body, look: Look) -> list[Shape]:
    shapes, k, r, a = [], body.keypoints, body.radii, body.anchors
    shin_colour = look.skin if look.shorts else look.pants
    for _, side in SIDES:
        hip, knee, ankle = (k[KP[f"{side}_{joint}"]] for joint in LEG_JOINTS)
        shapes.append(capsule(hip, knee, r["thigh"], r["knee"], look.pants))
        shapes.append(capsule(knee, ankle, r["knee"] * 0.95, r["shin_low"], shin_colour))
        u, v = body.vectors[f"{side}_foot_u"], body.vectors[f"{side}_foot_v"]
        shapes.append(ellipse(a[f"{side}_foot"], u, v, look.shoes))
    return shapes


def _torso_shapes(body: Body, look: Look) -> list[Shape]:
    a = body.anchors
    left = [a["left_shoulder_out"], a["left_waist"], a["left_belt"]]
    right = [a["right_shoulder_out"], a["right_waist"], a["right_belt"]]
    shapes = [polygon(np.array(left + right[::-1]), look.shirt)]
    if look.stripes is not None:
        edges = np.linspace(0.0, 1.0, 8)
        for top, bottom in zip(edges[1:-1:2], edges[2::2], strict=True):
            band = [_along(left, top), _along(left, bottom)]
            band += [_along(right, bottom), _along(right, top)]
            shapes.append(polygon(np.array(band), look.stripes, detail=True))
    return shapes


def _along(chain: list[np.ndarray], t: float) -> np.ndarray:
    """The point a fraction ``t`` along a two-segment polyline (by segment, not by length)."""
    if t <= 0.5:
        return chain[0] + (chain[1] - chain[0]) * (2 * t)
    return chain[1] + (chain[2] - chain[1]) * (2 * t - 1)


def _head_shapes(body: Body, look: Look, facing: int) -> list[Shape]:
    a, k = body.anchors, body.keypoints
    centre, u, v = a["head"], body.vectors["head_u"], body.vectors["head_v"]
    shapes = []
    ear_radius = 0.11 * float(np.hypot(*u)) * 2
    for ear in ("left_ear", "right_ear"):
        if facing * body.face_depth[KP[ear]] > FACE_MIN_DEPTH[ear]:
            shapes.append(circle(k[KP[ear]], ear_radius, _shade(look.skin, 0.9)))
    shapes.append(ellipse(centre, u, v, look.hair))
    if facing < 0:
        return shapes
    shapes.append(ellipse(centre + 0.16 * v, 0.9 * u, 0.84 * v, look.skin, detail=True))
    eye_radius = 0.14 * float(np.hypot(*u))
    for eye in ("left_eye", "right_eye"):
        if body.face_depth[KP[eye]] > FACE_MIN_DEPTH[eye]:
            shapes.append(circle(k[KP[eye]], eye_radius, EYE_COLOUR, detail=True))
    nose = k[KP["nose"]]
    shapes.append(circle(nose, eye_radius * 0.9, _shade(look.skin, 0.75), detail=True))
    mouth = nose + 0.45 * (a["chin"] - nose)
    shapes.append(ellipse(mouth, 0.25 * u, 0.05 * v, MOUTH_COLOUR, detail=True))
    return shapes


def _arm_shapes(body: Body, look: Look) -> list[Shape]:
    shapes, k, r, a = [], body.keypoints, body.radii, body.anchors
    fore_colour = look.shirt if look.long_sleeves else look.skin
    for _, side in SIDES:
        shoulder, elbow, wrist = (k[KP[f"{side}_{joint}"]] for joint in ARM_JOINTS)
        if look.long_sleeves:
            shapes.append(capsule(shoulder, elbow, r["upper_arm"], r["elbow"], look.shirt))
        else:
            shapes.append(capsule(shoulder, elbow, r["upper_arm"], r["elbow"], look.skin))
            sleeve_end = shoulder + 0.45 * (elbow - shoulder)
            sleeve_radii = (1.05 * r["upper_arm"], 1.15 * r["elbow"])
            shapes.append(capsule(shoulder, sleeve_end, *sleeve_radii, look.shirt))
        shapes.append(capsule(elbow, wrist, r["elbow"] * 0.95, r["wrist"], fore_colour))
        shapes.append(circle(a[f"{side}_hand"], r["hand"], look.skin))
    return shapes


def _shade(colour: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return tuple(int(min(255, c * factor)) for c in colour)
