"""Bottom-up inference: image -> network maps (multi-scale, flip) -> people in image pixels."""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from torch import nn

from posekit.bottomup.augment import bottomup_eval_transform
from posekit.bottomup.grouping import decode_bottomup
from posekit.bottomup.layouts import KeypointLayout
from posekit.bottomup.peaks import flip_back_heatmaps, flip_back_pafs
from posekit.config import InferenceConfig
from posekit.data.transforms import compose_affine, invert_affine, normalize_image
from posekit.layers.blocks import cpu_layout
from posekit.people import People


def input_size_for(image_hw: tuple[int, int], height: int, stride: int) -> tuple[int, int]:
    """Network input (h, w): the image scaled to ``height``, width padded to the stride."""
    image_h, image_w = image_hw
    width = math.ceil(image_w * height / image_h / stride) * stride
    return height, max(stride, width)


def inference_input_size(
    image_hw: tuple[int, int], cfg: InferenceConfig, scale: float, stride: int
) -> tuple[int, int]:
    """The network input (h, w) at one test scale: the image scaled to
    ``input_height * scale`` (width padded to the stride), or, with ``letterbox``, a fixed
    square of that side holding the whole image (as overfit training sees it)."""
    if cfg.letterbox:
        side = max(stride, round(cfg.letterbox * scale / stride) * stride)
        return side, side
    height = max(stride, round(cfg.input_height * scale / stride) * stride)
    return input_size_for(image_hw, height, stride)


def map_to_input(stride: int) -> np.ndarray:
    """(2, 3) affine from map cells to input pixels: cell i -> i * stride + (stride - 1) / 2."""
    half = (stride - 1) / 2
    return np.array([[stride, 0, half], [0, stride, half]], dtype=np.float64)


def _forward(model: nn.Module, batch: np.ndarray, device: torch.device) -> tuple[np.ndarray, ...]:
    outputs = model(cpu_layout(torch.from_numpy(batch).to(device)))
    heatmaps = outputs.heatmaps[-1].float().cpu().numpy()
    pafs = outputs.pafs[-1].float().cpu().numpy()
    return heatmaps, pafs


@torch.no_grad()
def network_maps(
    model: nn.Module,
    image: np.ndarray,  # (H, W, 3) uint8 BGR
    layout: KeypointLayout,
    cfg: InferenceConfig,
    stride: int,
    device: torch.device,
    bf16: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Averaged maps over scales (and flips) on the grid of the first scale; ``bf16``:
    bf16 autocast for the network (``inference.bf16``).

    Returns heatmaps (K + 1, h, w), PAFs (2L, h, w) and the (2, 3) image -> input matrix of
    the first scale.
    """
    schema = layout.network_schema
    base: tuple[np.ndarray, np.ndarray] | None = None
    base_matrix = np.eye(2, 3)
    base_hw = (0, 0)
    for scale_index, scale in enumerate(cfg.scales):
        size = inference_input_size(image.shape[:2], cfg, scale, stride)
        net_input, _, matrix = bottomup_eval_transform(image, size)
        batch = normalize_image(net_input)[None]
        if cfg.flip:
            batch = np.concatenate([batch, batch[..., ::-1]])
        with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
            heatmaps, pafs = _forward(model, np.ascontiguousarray(batch), device)
        heat, paf = heatmaps[0], pafs[0]
        if cfg.flip:
            heat = (heat + flip_back_heatmaps(heatmaps[1], schema.flip_index())) / 2
            paf = (paf + flip_back_pafs(pafs[1], schema.skeleton, schema.flip_index())) / 2
        if scale_index == 0:
            base, base_matrix, base_hw = (heat, paf), matrix, heat.shape[1:]
            continue
        # base map cell -> base input -> image -> this input -> this map cell
        to_here = compose_affine(
            invert_affine(map_to_input(stride)),
            compose_affine(
                matrix, compose_affine(invert_affine(base_matrix), map_to_input(stride))
            ),
        )
        assert base is not None
        base = (
            base[0] + _warp_maps(heat, to_here, base_hw),
            base[1] + _warp_maps(paf, to_here, base_hw),
        )
    assert base is not None
    count = len(cfg.scales)
    return base[0] / count, base[1] / count, base_matrix


def _warp_maps(maps: np.ndarray, base_to_here: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Resample (C, h, w) maps onto the base grid; ``base_to_here`` maps base cells to ours."""
    channels_last = np.ascontiguousarray(maps.transpose(1, 2, 0))
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped = np.stack(
        [
            cv2.warpAffine(channels_last[..., c], base_to_here, (out_hw[1], out_hw[0]), flags=flags)
            for c in range(maps.shape[0])
        ]
    )
    return warped


def predict_people(
    model: nn.Module,
    image: np.ndarray,
    layout: KeypointLayout,
    cfg: InferenceConfig,
    stride: int,
    device: torch.device,
    bf16: bool = False,
) -> People:
    heatmaps, pafs, matrix = network_maps(model, image, layout, cfg, stride, device, bf16)
    keypoints, scores = decode_bottomup(
        heatmaps,
        pafs,
        layout.network_schema.skeleton,
        stride,
        peak_threshold=cfg.heatmap_threshold,
        min_keypoints=cfg.min_keypoints,
        score="normalised",
    )
    if len(keypoints):
        back = invert_affine(matrix)
        xy = keypoints[..., :2] @ back[:, :2].T + back[:, 2]
        keypoints = np.concatenate([xy, keypoints[..., 2:]], axis=-1)
        keypoints[keypoints[..., 2] <= 0] = 0
    return People(layout.to_dataset(keypoints).astype(np.float32), np.asarray(scores))
