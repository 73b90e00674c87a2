"""The RT-DETR-style model: sizes, deformable sampling, anchors, query selection, refinement."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from posekit.detector.model import (
    DETECTOR_SIZES,
    DeformableAttention,
    RTDetr,
    deformable_sample,
    detector_size,
    inverse_sigmoid,
    level_anchors,
    sine_positions_2d,
)
from posekit.errors import ConfigError

SMALLEST = {"widths": [8, 8, 16, 16, 32], "hidden_dim": 32, "num_heads": 2}


def test_sizes_grow_and_params_override_the_preset() -> None:
    counts = [sum(p.numel() for p in RTDetr(1, name).parameters()) for name in ("tiny", "small")]
    assert counts[0] < 3e6 < counts[1]
    size = detector_size("tiny", {"num_queries": 7, "widths": [8, 8, 16, 16, 32]})
    assert size.num_queries == 7 and size.widths == (8, 8, 16, 16, 32)
    assert size.hidden_dim == DETECTOR_SIZES["tiny"].hidden_dim


@pytest.mark.parametrize(
    ("name", "overrides", "message"),
    [
        ("huge", {}, "size 'huge' is unknown"),
        (
            "tiny",
            {"hidden_dm": 3},
            "unknown detector parameter 'hidden_dm' (did you mean 'hidden_dim'?)",
        ),
        ("tiny", {"hidden_dim": 30, "num_heads": 4}, "multiple of 2 × num_heads"),
        ("tiny", {"depths": [1, 1]}, "depths 4"),
    ],
)
def test_bad_sizes_are_config_errors(name: str, overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        detector_size(name, overrides)


def test_inverse_sigmoid_inverts_sigmoid() -> None:
    x = torch.tensor([0.1, 0.5, 0.9])
    torch.testing.assert_close(inverse_sigmoid(x).sigmoid(), x)


def test_sine_positions_differ_per_cell_and_have_the_width() -> None:
    positions = sine_positions_2d(3, 4, 16)
    assert positions.shape == (12, 16)
    assert torch.unique(positions, dim=0).shape[0] == 12


def test_deformable_sample_is_bilinear_sampling_weighted_over_levels_and_points() -> None:
    torch.manual_seed(0)
    shapes = [(4, 6), (2, 3)]
    batch, heads, head_dim, queries, points = 2, 2, 3, 5, 2
    value = torch.randn(batch, sum(h * w for h, w in shapes), heads, head_dim)
    locations = torch.rand(batch, queries, heads, len(shapes), points, 2)
    weights = torch.rand(batch, queries, heads, len(shapes), points)
    out = deformable_sample(value, shapes, locations, weights)
    assert out.shape == (batch, queries, heads * head_dim)
    # one entry by hand: bilinear interpolation at pixel coordinates loc * size - 0.5
    b, q, h = 1, 3, 1
    expected = torch.zeros(head_dim)
    start = 0
    for level, (height, width) in enumerate(shapes):
        grid = value[b, start : start + height * width, h].reshape(height, width, head_dim)
        start += height * width
        for p in range(points):
            x = locations[b, q, h, level, p, 0] * width - 0.5
            y = locations[b, q, h, level, p, 1] * height - 0.5
            x0, y0 = int(torch.floor(x)), int(torch.floor(y))
            sample = torch.zeros(head_dim)
            for dx in (0, 1):
                for dy in (0, 1):
                    xi, yi = x0 + dx, y0 + dy
                    if 0 <= xi < width and 0 <= yi < height:
                        weight = (1 - abs(x - xi)) * (1 - abs(y - yi))
                        sample += weight * grid[yi, xi]
            expected += weights[b, q, h, level, p] * sample
    torch.testing.assert_close(out[b, q, h * head_dim : (h + 1) * head_dim], expected)


def test_deformable_attention_starts_uniform_around_the_reference() -> None:
    attention = DeformableAttention(dim=8, heads=2, levels=1, points=2)
    memory = torch.ones(1, 4 * 4, 8)  # a constant map: every sample gives the same value
    query = torch.randn(1, 3, 8)
    reference = torch.tensor([[[0.5, 0.5, 0.25, 0.25]] * 3])
    out = attention(query, reference, memory, [(4, 4)])
    expected = attention.output_projection(attention.value_projection(memory[:, :1]))
    torch.testing.assert_close(out, expected.expand(1, 3, 8))


def test_anchors_grow_per_level_and_border_ones_are_invalid() -> None:
    logits, valid = level_anchors([(4, 4), (2, 2)], torch.device("cpu"))
    assert logits.shape == (20, 4) and valid.shape == (20, 1)
    boxes = logits[valid.squeeze(1)].sigmoid()
    torch.testing.assert_close(boxes[0], torch.tensor([0.125, 0.125, 0.05, 0.05]))
    torch.testing.assert_close(boxes[-1], torch.tensor([0.75, 0.75, 0.1, 0.1]))
    assert valid.all()  # none of these touch the border
    _, edge = level_anchors([(200, 200)], torch.device("cpu"))
    assert not edge.all()  # centres at 0.0025 < 0.01


def test_forward_gives_every_layer_and_the_selected_proposals() -> None:
    torch.manual_seed(0)
    model = RTDetr(num_classes=3, size="tiny", num_queries=10, num_decoder_layers=2, **SMALLEST)
    outputs = model(torch.randn(2, 3, 64, 96))
    assert len(outputs.layers) == 2
    for logits, boxes in [*outputs.layers, outputs.encoder]:
        assert logits.shape == (2, 10, 3) and boxes.shape == (2, 10, 4)
        assert ((boxes > 0) & (boxes < 1)).all()
    assert outputs.logits is outputs.layers[-1][0]
    # untrained heads predict no change: the first layer's boxes are the proposals' boxes
    torch.testing.assert_close(outputs.layers[0][1], outputs.encoder[1])
    # at the focal prior every class starts near p = 0.01
    assert abs(outputs.encoder[0].sigmoid().mean().item() - 0.01) < 0.01


def test_later_layers_pass_gradient_to_earlier_refinements() -> None:
    """Look-forward-twice: the loss on layer 2's boxes reaches layer 1's box head."""
    torch.manual_seed(0)
    model = RTDetr(num_classes=1, size="tiny", num_queries=5, num_decoder_layers=2, **SMALLEST)
    for head in model.box_heads:  # leave the zero start so gradients are informative
        torch.nn.init.normal_(head.layers[-1].weight, std=0.1)
    outputs = model(torch.randn(1, 3, 64, 64))
    F.l1_loss(outputs.layers[1][1], torch.full_like(outputs.layers[1][1], 0.5)).backward()
    first_head = model.box_heads[0].layers[-1].weight.grad
    assert first_head is not None and first_head.abs().sum() > 0
