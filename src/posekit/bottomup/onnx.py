"""What a bottom-up ONNX export holds: the graph (the last stage's heatmaps and PAFs, dynamic
batch, height and width), its metadata (schemas, the input rule, the outputs) and the
outputs of a run of it as the torch model's :class:`StageOutputs`."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from posekit.bottomup.lw_openpose import StageOutputs
from posekit.engine.onnx_graph import OnnxGraph

OUTPUT_NAMES = ["heatmaps", "pafs"]


class LastStage(nn.Module):
    """The network's last stage's heatmaps and PAFs."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = self.model(image)
        return outputs.heatmaps[-1], outputs.pafs[-1]


def onnx_graph(network: nn.Module, input_height: int) -> OnnxGraph:
    """Dynamic batch, height and width; traced at ``input_height`` square."""
    spatial = {0: "batch", 2: "map_height", 3: "map_width"}
    axes = {"image": {0: "batch", 2: "height", 3: "width"}, "heatmaps": spatial, "pafs": spatial}
    example = torch.zeros(1, 3, input_height, input_height)
    return OnnxGraph(LastStage(network), example, list(OUTPUT_NAMES), axes)


def onnx_metadata(task: Any) -> dict[str, Any]:
    """The schema, the network's point order, the input rule and the outputs."""
    settings = task.cfg.bottomup.inference
    stride = task.stride
    height = max(stride, round(settings.input_height / stride) * stride)
    letterbox = None
    if settings.letterbox:
        letterbox = max(stride, round(settings.letterbox / stride) * stride)
    rule = (
        f"the whole image fitted into a letterbox x letterbox square ({letterbox})"
        if letterbox
        else "height = input_height; width = max(stride, ceil(image_width * input_height / "
        "image_height / stride) * stride)"
    )
    return {
        "schema": task.schema.to_dict(),
        "network_schema": task.layout.network_schema.to_dict(),
        "input": {
            "height": "dynamic",
            "width": "dynamic",
            "stride": stride,
            "input_height": height,
            "letterbox": letterbox,
            "resize": f"{rule}; the image is scaled by k = min(height / image_height, width / "
            "image_width) to (min(width, max(1, round(image_width * k))), min(height, max(1, "
            "round(image_height * k)))) with cv2.resize (INTER_AREA if k < 1 else "
            "INTER_LINEAR), then padded right and bottom with pad_value; image point p -> "
            "input (p + 0.5) * scale - 0.5 per axis (scale = resized / original size)",
            "scales": list(settings.scales),
            "flip": settings.flip,
        },
        "outputs": {
            "heatmaps": "(N, K + 1, H / stride, W / stride): one heatmap per network_schema "
            "keypoint, the last channel background (1 - max); map cell i is input pixel "
            f"i * {stride} + {(stride - 1) / 2}",
            "pafs": "(N, 2L, H / stride, W / stride): part affinity fields, channel 2l = x and "
            "2l + 1 = y of limb l of network_schema's skeleton",
        },
    }


def outputs_from_onnx(named: dict[str, torch.Tensor]) -> StageOutputs:
    return StageOutputs(heatmaps=[named["heatmaps"]], pafs=[named["pafs"]])
