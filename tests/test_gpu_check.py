"""``benchmarks/gpu_check.py`` on the CPU path (the GPU one runs where a GPU is): every family
trains with its mixed precision, the loss falls, the stopped-and-resumed run ends identical."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_gpu_check_runs_on_the_cpu_path() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu",
         "--steps", "8", "--batch", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
        env={**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [r["check"] for r in results] == ["bottomup", "topdown", "detector"]
    for result in results:
        assert result["loss_falls"] and result["resume_exact"], result
        assert result["amp"] == "torch.bfloat16" and result["iterations"] == 8
        assert result["img_per_s"] > 0


def test_the_gpu_check_says_when_there_is_no_gpu() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert json.loads(done.stdout) == {"check": "cuda", "ok": False, "error": "no CUDA device here"}
