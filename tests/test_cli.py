"""The command line as a user meets it: exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import re
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


def test_check_data_exit_codes(real_coco_dir: Path, tmp_path: Path) -> None:
    clean = run_cli("check-data", "--labels", str(real_coco_dir / "test_coco.json"),
                    "--images", str(real_coco_dir))  # fmt: skip
    assert clean.returncode == 0, clean.stdout + clean.stderr
    empty = tmp_path / "images"
    empty.mkdir()
    broken = run_cli("check-data", "--labels", str(real_coco_dir / "test_coco.json"),
                     "--images", str(empty), "--json")  # fmt: skip
    assert broken.returncode == 1
    assert "000000000785.jpg" in broken.stdout or "785" in broken.stdout
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    assert_user_error(run_cli("check-data", "--labels", str(bad_json), "--images", str(empty)),
                      "bad.json")  # fmt: skip


def test_prepare_writes_safe_json(real_coco_dir: Path, tmp_path: Path) -> None:
    result = run_cli("prepare", "--labels", str(real_coco_dir / "test_coco.json"),
                     "--output-name", str(tmp_path / "prepared.pkl"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "prepared.json").is_file()
    assert not (tmp_path / "prepared.pkl").exists()


def test_synth_and_bad_schema_errors(tmp_path: Path) -> None:
    assert_user_error(run_cli("synth", "--out", str(tmp_path), "--images", "2", "--size", "2x2"),
                      "--size")  # fmt: skip
    schema = tmp_path / "s.yaml"
    schema.write_text("keypoints: [a, b]\nskeleton: [[0, 5]]\n")
    labels = tmp_path / "l.json"
    labels.write_text('{"images": [], "annotations": [], "categories": []}')
    assert_user_error(
        run_cli("check-data", "--labels", str(labels), "--images", str(tmp_path),
                "--schema", str(schema)),
        "s.yaml", "out of range",
    )  # fmt: skip


def test_version_and_help_say_what_a_user_needs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert re.match(r"posekit \S+ \(PyTorch \S+, Python \S+\)", capsys.readouterr().out)
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "Train, evaluate, run and export human pose models" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "[CONFIG] KEY=VALUE" in text and "--exist-ok" in text
