"""Network keypoint layouts: the points a bottom-up network predicts, and the map back.

A data set's schema (e.g. COCO-17) and the network's layout can differ. For COCO the default
Lightweight OpenPose layout is the OpenPose 18-point one: COCO-17 plus a neck (the mean of the
shoulders, present only when both are), in OpenPose order, with OpenPose's 19 limbs. Any other
schema is used as it is (the identity layout), so a custom keypoint set needs no code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from posekit.schema import COCO17, KeypointSchema, make_schema

# OpenPose order; each entry is the COCO-17 index, or -1 for the neck.
OPENPOSE18_FROM_COCO17 = (0, -1, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)
OPENPOSE18_NAMES = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder",
    "left_elbow", "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip",
    "left_knee", "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear",
)  # fmt: skip
# Limbs in OpenPose's order (a tree from the neck, then the two ear-shoulder links).
OPENPOSE18_LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11),
    (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17), (2, 16), (5, 17),
)  # fmt: skip
OPENPOSE18_FLIP_PAIRS = ((2, 5), (3, 6), (4, 7), (8, 11), (9, 12), (10, 13), (14, 15), (16, 17))
_NECK_SIGMA = 0.079  # as the shoulders'
OPENPOSE18 = make_schema(
    "openpose18",
    OPENPOSE18_NAMES,
    OPENPOSE18_LIMBS,
    OPENPOSE18_FLIP_PAIRS,
    sigmas=tuple(
        _NECK_SIGMA if i < 0 else COCO17.sigmas[i]  # type: ignore[index]
        for i in OPENPOSE18_FROM_COCO17
    ),
)


@dataclass(frozen=True)
class KeypointLayout:
    """Maps data set keypoints to the network's points and back.

    ``source_index[j]`` is the data set keypoint behind network point ``j``; ``-1`` marks the
    neck (mean of the data set's ``neck_from`` pair).
    """

    dataset_schema: KeypointSchema
    network_schema: KeypointSchema
    source_index: tuple[int, ...]
    neck_from: tuple[int, int] | None = None

    def to_network(self, keypoints: np.ndarray) -> np.ndarray:
        """(N, K_data, 3) x, y, v -> (N, K_net, 3); a neck is labelled only if both shoulders
        are."""
        keypoints = np.asarray(keypoints, dtype=np.float32)
        index = np.asarray(self.source_index)
        result = keypoints[:, np.maximum(index, 0)].copy()
        if self.neck_from is not None:
            left, right = keypoints[:, self.neck_from[0]], keypoints[:, self.neck_from[1]]
            both = (left[:, 2] > 0) & (right[:, 2] > 0)
            neck = np.zeros_like(left)
            neck[:, :2] = (left[:, :2] + right[:, :2]) / 2
            neck[:, 2] = np.minimum(left[:, 2], right[:, 2])
            neck[~both] = 0
            result[:, index < 0] = neck[:, None]
        return result

    def to_dataset(self, keypoints: np.ndarray) -> np.ndarray:
        """(P, K_net, C) -> (P, K_data, C); derived points (the neck) are dropped."""
        keypoints = np.asarray(keypoints)
        result = np.zeros(
            (keypoints.shape[0], self.dataset_schema.num_keypoints, *keypoints.shape[2:]),
            dtype=keypoints.dtype,
        )
        for net_index, data_index in enumerate(self.source_index):
            if data_index >= 0:
                result[:, data_index] = keypoints[:, net_index]
        return result


def identity_layout(schema: KeypointSchema) -> KeypointLayout:
    return KeypointLayout(schema, schema, tuple(range(schema.num_keypoints)))


def openpose18_layout() -> KeypointLayout:
    return KeypointLayout(COCO17, OPENPOSE18, OPENPOSE18_FROM_COCO17, neck_from=(5, 6))


def default_layout(schema: KeypointSchema) -> KeypointLayout:
    """OpenPose-18 for COCO-17 data, the schema itself for anything else."""
    if schema.keypoints == COCO17.keypoints:
        return openpose18_layout()
    return identity_layout(schema)
