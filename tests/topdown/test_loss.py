from __future__ import annotations

import math

import pytest
import torch

from posekit.topdown.loss import heatmap_loss, simcc_loss, topdown_loss
from posekit.topdown.model import TopDownOutputs


def test_heatmap_loss_zero_when_prediction_is_target() -> None:
    target = torch.rand(2, 3, 8, 6)
    terms = heatmap_loss(target.clone(), target, torch.ones(2, 3))
    assert set(terms) == {"loss", "heatmap"}
    assert terms["loss"].item() == 0.0


def test_heatmap_loss_known_value() -> None:
    pred = torch.tensor([[[[1.0, 2.0]], [[3.0, 0.0]]]])  # (1, 2, 1, 2)
    target = torch.zeros(1, 2, 1, 2)
    weights = torch.tensor([[1.0, 0.5]])
    # ((1 + 4) * 1 + (9 + 0) * 0.5) / 4 elements
    assert heatmap_loss(pred, target, weights)["loss"].item() == pytest.approx(9.5 / 4)


def test_heatmap_loss_weight_zero_removes_a_keypoint() -> None:
    torch.manual_seed(0)
    pred, target = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4)
    weights = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    changed = pred.clone()
    changed[0, 1] += 5.0
    before = heatmap_loss(pred, target, weights)["loss"]
    assert heatmap_loss(changed, target, weights)["loss"].item() == pytest.approx(before.item())
    changed[1, 1] += 5.0  # a weighted keypoint does count
    assert heatmap_loss(changed, target, weights)["loss"] > before


def test_heatmap_loss_is_float32_under_bf16_autocast() -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 2, 1)
    target = torch.rand(1, 2, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pred = conv(torch.rand(1, 3, 4, 4))
        assert pred.dtype == torch.bfloat16
        terms = heatmap_loss(pred, target, torch.ones(1, 2))
    assert terms["loss"].dtype == torch.float32
    expected = ((pred.float() - target) ** 2).mean()
    assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_simcc_loss_zero_when_prediction_is_target() -> None:
    torch.manual_seed(0)
    x, y = torch.rand(2, 3, 12), torch.rand(2, 3, 16)
    terms = simcc_loss(x.clone(), y.clone(), x, y, torch.ones(2, 3))
    assert set(terms) == {"loss", "simcc_x", "simcc_y"}
    assert abs(terms["loss"].item()) < 1e-6


def test_simcc_loss_known_value() -> None:
    # p = softmax([0, 0]) = (1/2, 1/2), q = softmax([0, ln 3]) = (1/4, 3/4):
    # KL(p || q) = 1/2 ln 2 + 1/2 ln(2/3) = 1/2 ln(4/3)
    pred_x = torch.tensor([[[0.0, math.log(3.0)], [5.0, -5.0]]])  # (1, 2, 2)
    target_x = torch.zeros(1, 2, 2)
    weights = torch.tensor([[1.0, 0.0]])
    same = torch.tensor([[[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]])
    terms = simcc_loss(pred_x, same, target_x, same, weights, beta=1.0)
    kl = 0.5 * math.log(4 / 3)
    assert terms["simcc_x"].item() == pytest.approx(kl / 2)  # mean over N * K = 2
    assert terms["simcc_y"].item() == pytest.approx(0.0, abs=1e-7)
    assert terms["loss"].item() == pytest.approx(kl / 2)
    # beta scales both logits: beta = 10 on logits / 10 is the same case
    scaled = simcc_loss(pred_x / 10, same / 10, target_x, same / 10, weights)
    assert scaled["simcc_x"].item() == pytest.approx(kl / 2, rel=1e-5)


def test_simcc_loss_weight_zero_removes_a_keypoint() -> None:
    torch.manual_seed(0)
    px, py, tx, ty = (
        torch.rand(2, 3, 8),
        torch.rand(2, 3, 10),
        torch.rand(2, 3, 8),
        torch.rand(2, 3, 10),
    )
    weights = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    before = simcc_loss(px, py, tx, ty, weights)["loss"].item()
    px2, py2 = px.clone(), py.clone()
    px2[0, 2] = torch.randn(8) * 3
    py2[0, 2] = torch.randn(10) * 3
    assert simcc_loss(px2, py2, tx, ty, weights)["loss"].item() == pytest.approx(before)
    px2[1, 2] = torch.randn(8) * 3
    assert simcc_loss(px2, py2, tx, ty, weights)["loss"].item() != pytest.approx(before)


def test_simcc_loss_is_float32_under_bf16_autocast() -> None:
    x = torch.rand(1, 2, 8, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = simcc_loss(x, x, torch.rand(1, 2, 8), torch.rand(1, 2, 8), torch.ones(1, 2))
    assert all(value.dtype == torch.float32 for value in terms.values())


def test_topdown_loss_picks_the_head() -> None:
    heatmaps = torch.rand(2, 3, 4, 4)
    batch = {"heatmaps": heatmaps, "weights": torch.ones(2, 3)}
    terms = topdown_loss(TopDownOutputs(heatmaps=heatmaps + 1), batch)
    assert set(terms) == {"loss", "heatmap"} and terms["loss"].item() == pytest.approx(1.0)

    x, y = torch.rand(2, 3, 8), torch.rand(2, 3, 10)
    batch = {"simcc_x": x, "simcc_y": y, "weights": torch.ones(2, 3)}
    terms = topdown_loss(TopDownOutputs(simcc_x=x, simcc_y=y), batch)
    assert set(terms) == {"loss", "simcc_x", "simcc_y"} and abs(terms["loss"].item()) < 1e-6

    with pytest.raises(KeyError, match="heatmaps"):
        topdown_loss(TopDownOutputs(heatmaps=heatmaps), {"weights": torch.ones(2, 3)})
    with pytest.raises(ValueError, match="neither"):
        topdown_loss(TopDownOutputs(), batch)
