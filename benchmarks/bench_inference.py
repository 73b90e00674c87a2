"""Bottom-up inference speed, network + decoding, batch 1 at 256x456 (frames/s), for
PyTorch eager fp32, posekit's optimised path and the exported ONNX model in onnxruntime;
ratio = frames/s over eager fp32. Also prints peak RSS of this process.

posekit's optimised path: BatchNorm folded into the convolutions, channels_last, inference
mode and bf16 autocast on CPUs that support it (the heatmaps and PAFs are compared with the
fp32 ones and the largest difference is printed).

    .venv/bin/python benchmarks/bench_inference.py [--frames 30] [--width-mult 1.0]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from posekit.bottomup.grouping import decode_bottomup
from posekit.bottomup.layouts import OPENPOSE18
from posekit.bottomup.lw_openpose import LightweightOpenPose
from posekit.layers.fusion import fold_batchnorm

HEIGHT, WIDTH = 256, 456


def timed(run: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], frames: int) -> float:
    image = np.random.default_rng(0).standard_normal((1, 3, HEIGHT, WIDTH)).astype(np.float32)
    for _ in range(3):
        run(image)
    times = []
    for _ in range(frames):
        started = time.perf_counter()
        heatmaps, pafs = run(image)
        decode_bottomup(heatmaps[0], pafs[0], OPENPOSE18.skeleton, 8)
        times.append(time.perf_counter() - started)
    return 1.0 / statistics.median(times)


def torch_runner(model: torch.nn.Module, channels_last: bool, bf16: bool) -> Callable:
    def run(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tensor = torch.from_numpy(image)
        if channels_last:
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            outputs = model(tensor)
        return outputs.heatmaps[-1].float().numpy(), outputs.pafs[-1].float().numpy()

    return run


def onnx_runner(model: torch.nn.Module, folder: Path) -> Callable:
    import onnxruntime

    from posekit.bottomup.onnx import onnx_graph
    from posekit.commands.export import write_onnx

    path = write_onnx(onnx_graph(model.eval(), HEIGHT), folder / "bench.onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        heatmaps, pafs = session.run(None, {"image": image})
        return heatmaps, pafs

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--width-mult", type=float, default=1.0)
    parser.add_argument("--channels", type=int, default=128)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = LightweightOpenPose(19, 38, 1, args.channels, args.width_mult).eval()
    eager = timed(torch_runner(model, False, False), args.frames)
    fused = fold_batchnorm(model).to(memory_format=torch.channels_last)
    image = np.random.default_rng(1).standard_normal((1, 3, HEIGHT, WIDTH)).astype(np.float32)
    reference = torch_runner(model, False, False)(image)
    results = {
        "optimised_fp32": timed(torch_runner(fused, True, False), args.frames),
        "optimised_bf16": timed(torch_runner(fused, True, True), args.frames),
    }
    differences = {
        "optimised_fp32": torch_runner(fused, True, False)(image),
        "optimised_bf16": torch_runner(fused, True, True)(image),
    }
    with tempfile.TemporaryDirectory() as folder:
        onnx = onnx_runner(model, Path(folder))
        results["onnxruntime"] = timed(onnx, args.frames)
        differences["onnxruntime"] = onnx(image)
    for name, fps in results.items():
        diff = max(
            float(np.abs(a - b).max()) for a, b in zip(differences[name], reference, strict=True)
        )
        line = {"name": "inference", "variant": name, "value": round(fps, 2), "unit": "frames/s",
                "baseline": round(eager, 2), "ratio": round(fps / eager, 2),
                "max_abs_diff": round(diff, 6)}  # fmt: skip
        print(json.dumps(line), flush=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"name": "peak_rss_inference", "value": round(rss, 1), "unit": "MB",
                      "baseline": None, "ratio": None}))  # fmt: skip


if __name__ == "__main__":
    main()
