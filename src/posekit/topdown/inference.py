"""Top-down prediction: crop each person box, run the network (with the flip test), decode
the heatmaps or SimCC vectors, map the keypoints back to image pixels."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from posekit.config import TopDownConfig
from posekit.data.transforms import invert_affine, normalize_image, transform_points
from posekit.layers.blocks import cpu_layout
from posekit.topdown.augment import box_to_centre_scale, topdown_eval_transform
from posekit.topdown.codecs.flip import flip_heatmaps_back, flip_simcc_back, merge_flipped
from posekit.topdown.codecs.heatmap import decode_heatmaps
from posekit.topdown.codecs.simcc import decode_simcc
from posekit.topdown.dataset import TopDownSpec
from posekit.topdown.model import TopDownOutputs


def crop_people(
    image: np.ndarray,  # (H, W, 3) uint8
    boxes: np.ndarray,  # (M, 4) xywh
    spec: TopDownSpec,
) -> tuple[np.ndarray, np.ndarray]:  # crops (M, 3, h, w) float32, matrices (M, 2, 3)
    crops, matrices = [], []
    for box in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        centre, scale = box_to_centre_scale(box, spec.aspect_ratio, spec.bbox_padding)
        crop, matrix = topdown_eval_transform(image, centre, scale, spec.input_hw)
        crops.append(normalize_image(crop))
        matrices.append(matrix)
    height, width = spec.input_hw
    if not crops:
        return np.zeros((0, 3, height, width), np.float32), np.zeros((0, 2, 3))
    return np.stack(crops), np.stack(matrices)


def network_outputs(
    model: nn.Module, crops: torch.Tensor, flip_index: np.ndarray, spec: TopDownSpec, flip: bool
) -> TopDownOutputs:
    """The model's outputs on ``crops`` (N, 3, h, w), averaged with the mirrored crops'."""
    outputs: TopDownOutputs = model(crops)
    if not flip:
        return outputs
    mirrored: TopDownOutputs = model(torch.flip(crops, dims=[3]))
    if outputs.heatmaps is not None:
        assert mirrored.heatmaps is not None
        back = flip_heatmaps_back(mirrored.heatmaps, flip_index)
        return TopDownOutputs(heatmaps=merge_flipped(outputs.heatmaps, back))
    assert mirrored.simcc_x is not None and mirrored.simcc_y is not None
    back_x, back_y = flip_simcc_back(
        mirrored.simcc_x, mirrored.simcc_y, flip_index, spec.input_hw[1], spec.simcc_split_ratio
    )
    return TopDownOutputs(
        simcc_x=merge_flipped(outputs.simcc_x, back_x),
        simcc_y=merge_flipped(outputs.simcc_y, back_y),
    )


def decode_outputs(
    outputs: TopDownOutputs, spec: TopDownSpec, settings: TopDownConfig
) -> tuple[np.ndarray, np.ndarray]:  # keypoints (N, K, 2) crop pixels, scores (N, K)
    if outputs.heatmaps is not None:
        return decode_heatmaps(outputs.heatmaps.float().cpu().numpy(), spec.input_hw)
    assert outputs.simcc_x is not None and outputs.simcc_y is not None
    return decode_simcc(
        outputs.simcc_x.float().cpu().numpy(),
        outputs.simcc_y.float().cpu().numpy(),
        spec.simcc_split_ratio,
        settings.simcc_beta,
        spec.simcc_sigma,
    )


@torch.no_grad()
def predict_boxes(
    model: nn.Module,
    image: np.ndarray,  # (H, W, 3) uint8 BGR
    boxes: np.ndarray,  # (M, 4) xywh person boxes
    spec: TopDownSpec,
    settings: TopDownConfig,
    flip_index: np.ndarray,
    device: torch.device,
) -> np.ndarray:  # (M, K, 3) x, y, score in image pixels
    """Keypoints of the person in each box, ``settings.eval_batch_size`` crops at a time."""
    crops, matrices = crop_people(image, boxes, spec)
    found = []
    for start in range(0, len(crops), settings.eval_batch_size):
        batch = cpu_layout(
            torch.from_numpy(crops[start : start + settings.eval_batch_size]).to(device)
        )
        outputs = network_outputs(model, batch, flip_index, spec, settings.flip_test)
        points, scores = decode_outputs(outputs, spec, settings)
        for index, (xy, score) in enumerate(zip(points, scores, strict=True)):
            back = transform_points(xy, invert_affine(matrices[start + index]))
            found.append(np.concatenate([back, score[:, None]], axis=1))
    if not found:
        return np.zeros((0, 0, 3), np.float32)
    return np.stack(found).astype(np.float32)
