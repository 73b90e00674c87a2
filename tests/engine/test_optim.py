from __future__ import annotations

import pytest
from torch import nn

from posekit.config import ParamRule, ScheduleConfig
from posekit.engine.optim import (
    apply_custom_keys,
    frozen_batchnorms,
    frozen_state_names,
    lr_factor,
    plain_param_groups,
    rule_for,
)
from posekit.errors import ConfigError


def test_warmup_is_linear_then_schedule() -> None:
    cfg = ScheduleConfig(name="constant", warmup_iters=10, warmup_start=0.0)
    assert [lr_factor(s, 100, 10, cfg) for s in (0, 5, 10, 50)] == [0.0, 0.5, 1.0, 1.0]


def test_step_schedule_counts_epochs() -> None:
    cfg = ScheduleConfig(name="step", milestones=[2, 4], gamma=0.1)
    factors = [lr_factor(s, 60, 10, cfg) for s in (0, 19, 20, 39, 40)]
    assert factors == pytest.approx([1, 1, 0.1, 0.1, 0.01])


def test_cosine_and_flat_cosine() -> None:
    cosine = ScheduleConfig(name="cosine", min_factor=0.0)
    assert lr_factor(0, 100, 10, cosine) == pytest.approx(1.0)
    assert lr_factor(50, 100, 10, cosine) == pytest.approx(0.5)
    assert lr_factor(100, 100, 10, cosine) == pytest.approx(0.0)
    flat = ScheduleConfig(name="flat_cosine", flat_fraction=0.5, min_factor=0.0)
    assert lr_factor(49, 100, 10, flat) == 1.0
    assert lr_factor(75, 100, 10, flat) == pytest.approx(0.5)


def _two_part_model() -> nn.Module:
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)),
        nn.Sequential(nn.Conv2d(4, 2, 1)),
    )


def test_custom_keys_freeze_slow_and_keep_the_rest() -> None:
    model = _two_part_model()
    keys = {"0.": ParamRule(lr_mult=0.0), "1.0.bias": ParamRule(lr_mult=0.1, decay_mult=0.0)}
    groups = apply_custom_keys(model, plain_param_groups(model, 1e-3, 1e-4), keys)
    names = {id(p): n for n, p in model.named_parameters()}
    grouped = {names[id(p)]: g for g in groups for p in g["params"]}
    assert set(grouped) == {"1.0.weight", "1.0.bias"}  # the frozen part is left out
    assert grouped["1.0.bias"]["lr"] == pytest.approx(1e-4)
    assert grouped["1.0.bias"]["lr_mult"] == pytest.approx(0.1)
    assert grouped["1.0.weight"]["lr"] == pytest.approx(1e-3)
    assert grouped["1.0.weight"]["weight_decay"] == pytest.approx(1e-4)
    assert not any(p.requires_grad for p in model[0].parameters())
    assert frozen_batchnorms(model, keys) == [model[0][1]]
    assert frozen_state_names(model, keys) >= {"0.1.running_mean", "0.0.weight"}


def test_the_longest_prefix_wins() -> None:
    keys = {"backbone.": ParamRule(lr_mult=0.1), "backbone.layer4.": ParamRule(lr_mult=1.0)}
    assert rule_for("backbone.layer4.0.conv1.weight", keys).lr_mult == 1.0
    assert rule_for("backbone.layer1.0.conv1.weight", keys).lr_mult == 0.1
    assert rule_for("head.final.weight", keys) is None


def test_freezing_everything_is_a_config_error() -> None:
    model = _two_part_model()
    with pytest.raises(ConfigError, match="custom_keys freezes every parameter"):
        apply_custom_keys(model, plain_param_groups(model, 1e-3, 0.0), {"": ParamRule(lr_mult=0)})
