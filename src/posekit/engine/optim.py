"""Optimizer parameter groups and learning-rate schedules.

The plain parameter groups (no weight decay on biases, norms and depthwise weights), MMPose's
per-prefix multipliers over a family's groups, and the schedules, stepped per optimizer step.
A family with its own groups (Lightweight OpenPose's) keeps them in its wing.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import nn

from posekit.config import OptimizerConfig, ParamRule, ScheduleConfig
from posekit.errors import ConfigError


def named_leaf_params(module: nn.Module, prefix: str) -> Iterator[tuple[str, nn.Module, str]]:
    for module_name, child in module.named_modules():
        for param_name, _ in child.named_parameters(recurse=False):
            full = ".".join(p for p in (prefix, module_name, param_name) if p)
            yield full, child, param_name


def plain_param_groups(model: nn.Module, base_lr: float, weight_decay: float) -> list[dict]:
    """One learning rate; no weight decay on biases, norms and depthwise weights."""
    decayed, plain = [], []
    params = dict(model.named_parameters())
    for name, child, param_name in named_leaf_params(model, ""):
        norms = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm)
        no_decay = param_name == "bias" or isinstance(child, norms)
        if isinstance(child, nn.Conv2d) and child.groups > 1:
            no_decay = True
        (plain if no_decay else decayed).append(params[name])
    return [
        {"params": decayed, "lr": base_lr, "weight_decay": weight_decay, "lr_mult": 1.0},
        {"params": plain, "lr": base_lr, "weight_decay": 0.0, "lr_mult": 1.0},
    ]


def rule_for(name: str, custom_keys: dict[str, ParamRule]) -> ParamRule | None:
    """The rule of the longest ``custom_keys`` prefix that ``name`` starts with."""
    matches = [key for key in custom_keys if name.startswith(key)]
    return custom_keys[max(matches, key=len)] if matches else None


def apply_custom_keys(
    model: nn.Module, groups: list[dict], custom_keys: dict[str, ParamRule]
) -> list[dict]:
    """Split the family's groups by ``custom_keys`` (MMPose's paramwise custom keys): matched
    parameters get ``lr * lr_mult`` and ``weight_decay * decay_mult``; ``lr_mult: 0`` freezes
    them (``requires_grad`` off, left out of the optimizer)."""
    if not custom_keys:
        return groups
    names = {id(p): n for n, p in model.named_parameters()}
    result: list[dict] = []
    for group in groups:
        split: dict[tuple[float, float], list[nn.Parameter]] = {}
        for parameter in group["params"]:
            rule = rule_for(names[id(parameter)], custom_keys)
            lr_mult, decay_mult = (rule.lr_mult, rule.decay_mult) if rule else (1.0, 1.0)
            if lr_mult == 0:
                parameter.requires_grad_(False)
                continue
            split.setdefault((lr_mult, decay_mult), []).append(parameter)
        for (lr_mult, decay_mult), params in split.items():
            base_mult = group.get("lr_mult", 1.0)
            result.append(
                {**group, "params": params, "lr": group["lr"] * lr_mult,
                 "weight_decay": group["weight_decay"] * decay_mult,
                 "lr_mult": base_mult * lr_mult}
            )  # fmt: skip
    if not result:
        raise ConfigError(
            "training.optimizer.custom_keys freezes every parameter; leave something to train"
        )
    return result


def frozen_batchnorms(model: nn.Module, custom_keys: dict[str, ParamRule]) -> list[nn.Module]:
    """BatchNorm layers under a frozen prefix: kept in eval mode while training, so their
    running statistics stay as loaded and the frozen part computes what it did."""
    frozen = []
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            rule = rule_for(name + ".", custom_keys)
            if rule is not None and rule.lr_mult == 0:
                frozen.append(module)
    return frozen


def frozen_state_names(model: nn.Module, custom_keys: dict[str, ParamRule]) -> set[str]:
    """State-dict entries that never change under ``custom_keys`` (EMA copies them)."""
    names = set()
    for name in model.state_dict():
        rule = rule_for(name, custom_keys)
        if rule is not None and rule.lr_mult == 0:
            names.add(name)
    return names


def build_optimizer(param_groups: list[dict], cfg: OptimizerConfig) -> torch.optim.Optimizer:
    if cfg.name == "adam":
        return torch.optim.Adam(param_groups, lr=cfg.lr, betas=cfg.betas)
    if cfg.name == "adamw":
        return torch.optim.AdamW(param_groups, lr=cfg.lr, betas=cfg.betas)
    return torch.optim.SGD(param_groups, lr=cfg.lr, momentum=cfg.momentum)


def lr_factor(step: int, total_steps: int, steps_per_epoch: int, cfg: ScheduleConfig) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based). Pure."""
    warmup = cfg.warmup_iters
    if warmup and step < warmup:
        return cfg.warmup_start + (1 - cfg.warmup_start) * step / warmup
    if cfg.name == "step":
        epoch = step // max(1, steps_per_epoch)
        return cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    if cfg.name == "constant":
        return 1.0
    flat = warmup + int(cfg.flat_fraction * max(0, total_steps - warmup))
    if cfg.name == "flat_cosine" and step < flat:
        return 1.0
    start = flat if cfg.name == "flat_cosine" else warmup
    progress = min(1.0, (step - start) / max(1, total_steps - start))
    return cfg.min_factor + (1 - cfg.min_factor) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, steps_per_epoch: int, cfg: ScheduleConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, steps_per_epoch, cfg)
    )
