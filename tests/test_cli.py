"""The command line as a user meets it: exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from posekit.cli import main


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "posekit", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def assert_user_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0]


def test_config_show_prints_resolved_yaml(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  batch_size: 3\n")
    result = run_cli("config", "show", str(path), "training.amp=true", "--cfg-options", "seed=7")
    assert result.returncode == 0, result.stderr
    shown = yaml.safe_load(result.stdout)
    assert shown["training"]["batch_size"] == 3
    assert shown["training"]["amp"] is True
    assert shown["seed"] == 7


def test_config_show_without_file_takes_overrides() -> None:
    result = run_cli("config", "show", "training.max_epochs=4")
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["training"]["max_epochs"] == 4


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (("config", "show", "training.optimizer.lrr=1"), ("did you mean 'training.optimizer.lr'",)),
        (("config", "show", "missing.yaml"), ("missing.yaml", "not found")),
        (("synth",), ("--out",)),
        (("no-such-command",), ("invalid choice",)),
    ],
)
def test_user_errors_are_one_line_exit_2(args: tuple[str, ...], needles: tuple[str, ...]) -> None:
    assert_user_error(run_cli(*args), *needles)


def test_main_returns_2_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "show", "training.batch_size=zero"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
