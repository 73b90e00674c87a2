"""Lightweight OpenPose training step: images/s of posekit's step against a plain eager fp32
NCHW loop of the same model, in the same process (ratio = ours / baseline).

posekit's step is the loop's: channels_last memory format and, with ``training.amp``, bf16
autocast on CPU (fp16 + GradScaler on CUDA). Each variant runs ``--steps`` timed steps after
``--warmup`` steps; the figure is the median step time.

    .venv/bin/python benchmarks/bench_train_step.py [--size 368] [--stages 1 3] [--steps 6]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from posekit.bottomup.layouts import OPENPOSE18
from posekit.bottomup.loss import bottomup_loss
from posekit.bottomup.lw_openpose import LightweightOpenPose


def make_batch(batch: int, size: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    cells = size // 8
    heatmaps = OPENPOSE18.num_keypoints + 1
    pafs = 2 * OPENPOSE18.num_limbs
    return {
        "image": torch.randn(batch, 3, size, size, generator=generator),
        "heatmaps": torch.rand(batch, heatmaps, cells, cells, generator=generator),
        "pafs": torch.rand(batch, pafs, cells, cells, generator=generator) * 2 - 1,
        "weights": torch.ones(batch, 1, cells, cells),
    }


def step_seconds(
    stages: int, batch: dict[str, torch.Tensor], channels_last: bool, amp: bool, steps: int,
    warmup: int, compile_model: bool = False,
) -> float:  # fmt: skip
    torch.manual_seed(0)
    model = LightweightOpenPose(OPENPOSE18.num_keypoints + 1, 2 * OPENPOSE18.num_limbs, stages)
    images = batch["image"]
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
    if compile_model:
        model = torch.compile(model)
    times = []
    for index in range(warmup + steps):
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            outputs = model(images)
            loss = bottomup_loss(outputs, batch["heatmaps"], batch["pafs"], batch["weights"])[
                "loss"
            ]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if index >= warmup:
            times.append(time.perf_counter() - started)
        elif index == 0 and compile_model:
            print(json.dumps({"name": "compile_first_step", "value": round(
                time.perf_counter() - started, 1), "unit": "s"}), flush=True)  # fmt: skip
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=368)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--stages", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also torch.compile + bf16")
    args = parser.parse_args()
    batch = make_batch(args.batch, args.size)
    for stages in args.stages:
        plain = args.batch / step_seconds(stages, batch, False, False, args.steps, args.warmup)
        variants = {
            "channels_last": (True, False, False),
            "channels_last_bf16": (True, True, False),
        }
        if args.compile:
            variants["channels_last_bf16_compile"] = (True, True, True)
        for name, (channels_last, amp, compiled) in variants.items():
            ours = args.batch / step_seconds(
                stages, batch, channels_last, amp, args.steps, args.warmup, compiled
            )
            print(
                json.dumps(
                    {
                        "name": "train_step",
                        "variant": name,
                        "refinement_stages": stages,
                        "size": args.size,
                        "batch": args.batch,
                        "value": round(ours, 2),
                        "unit": "img/s",
                        "baseline": round(plain, 2),
                        "ratio": round(ours / plain, 2),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
