"""A run folder is never overwritten by accident, and holds one training process at a time."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from posekit.cli import main
from posekit.engine.run_folder import is_locked, previous_run, run_lock
from posekit.errors import ConfigError

TINY = [
    "--max-epochs", "1", "--batch-size", "2", "training.max_iter=1", "data.input_size=64",
    "bottomup.inference.input_height=64", "data.num_workers=0", "training.eval_interval=0",
    "model.params={num_refinement_stages: 1, num_channels: 8, width_mult: 0.25, head_width: 8}",
]  # fmt: skip


@pytest.fixture
def data_words(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    from posekit.data.synthetic.generate import generate_synthetic

    root = tmp_path_factory.mktemp("run_folder_data")
    generate_synthetic(root, num_train=2, num_val=1, size=(96, 96), seed=5)
    return [f"data.train.labels={root / 'train.json'}", f"data.train.images={root / 'train'}"]


def test_a_new_run_into_a_run_folder_stops_or_moves_it_aside(
    tmp_path: Path, data_words: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "run"
    assert main(["train", "--work-dir", str(work), *TINY, *data_words]) == 0
    first = (work / "checkpoints" / "last.pth").read_bytes()
    (work / "best.onnx").write_bytes(b"an export of the first run")
    capsys.readouterr()
    # again, without --resume / --exist-ok: one line, nothing touched
    assert main(["train", "--work-dir", str(work), *TINY, *data_words]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{work} holds a run" in err[0] and "--exist-ok" in err[0]
    assert (work / "checkpoints" / "last.pth").read_bytes() == first
    # --exist-ok: the old run moved aside whole, the new one in a clean folder
    assert main(["train", "--work-dir", str(work), "--exist-ok", *TINY, *data_words]) == 0
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert len(aside) == 1 and f"moved what an earlier run left in {work} to {aside[0]}" in (
        capsys.readouterr().out
    )
    assert (aside[0] / "checkpoints" / "last.pth").read_bytes() == first
    assert (aside[0] / "best.onnx").is_file() and not (work / "best.onnx").exists()
    rows = (work / "results.csv").read_text().strip().splitlines()
    assert len(rows) == 2  # the header and this run's one epoch, not the old run's too


def test_resume_continues_in_the_same_folder(tmp_path: Path, data_words: list[str]) -> None:
    work = tmp_path / "run"
    assert main(["train", "--work-dir", str(work), *TINY, *data_words]) == 0
    words = ["train", "--work-dir", str(work), "--resume", *TINY[:-1], *data_words,
             "training.max_iter=2"]  # fmt: skip
    assert main(words) == 0
    assert previous_run(work) and not any(p.name.startswith("run.old") for p in tmp_path.iterdir())


def test_a_folder_in_use_is_refused_and_a_killed_holder_frees_it(tmp_path: Path) -> None:
    work = tmp_path / "busy"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path\n"
         "from posekit.engine.run_folder import run_lock\n"
         "with run_lock(Path(sys.argv[1])):\n    print('locked', flush=True); time.sleep(60)",
         str(work)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        assert is_locked(work)
        with pytest.raises(ConfigError) as error, run_lock(work):
            pass
        message = str(error.value)
        assert "\n" not in message and f"process {holder.pid}" in message
        assert "another --work-dir" in message
    finally:
        holder.kill()
        holder.wait()
    deadline = time.monotonic() + 10
    while is_locked(work) and time.monotonic() < deadline:
        time.sleep(0.05)
    with run_lock(work):  # the killed process left no stuck lock
        assert (work / ".posekit.lock").read_text() == str(os.getpid())


def test_resume_applies_what_can_change_and_refuses_the_rest(
    tmp_path: Path, data_words: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    work = tmp_path / "run"
    words = ["train", "--work-dir", str(work), *TINY[:-1], *data_words]  # fmt: skip
    schedule = ["training.schedule.name=constant", "training.schedule.warmup_iters=0"]
    assert main([*words, "training.optimizer.lr=0.001", *schedule]) == 0
    capsys.readouterr()
    # the learning rate given with --resume is the one training uses (not only config.yaml's)
    again = [*words, "--resume", "training.optimizer.lr=0.01", "training.max_iter=2"]
    assert main([*again, "--max-epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert (
        "resuming with training.max_epochs (1 -> 2), training.max_iter (1 -> 2), "
        "training.optimizer.lr (0.001 -> 0.01)"
    ) in out
    last = torch.load(work / "checkpoints" / "last.pth", weights_only=False)
    assert last["train_state"]["iteration"] == 2
    rates = sorted({group["lr"] / group["lr_mult"] for group in last["optimizer"]["param_groups"]})
    assert rates == [pytest.approx(0.01)]
    assert "lr: 0.01" in (work / "config.yaml").read_text()
    # what cannot change mid-run is refused by name, and nothing is written
    before = (work / "checkpoints" / "last.pth").read_bytes()
    assert main([*words, "--resume", "training.batch_size=4", "training.max_iter=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "training.batch_size (2 -> 4)" in err[0]
    assert "cannot change when resuming" in err[0]
    assert (work / "checkpoints" / "last.pth").read_bytes() == before


def test_the_saved_config_works_from_another_folder(
    tmp_path: Path, data_words: list[str], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    import yaml

    start = tmp_path / "start"
    start.mkdir()
    for word in data_words:  # relative to where training starts
        value = word.partition("=")[2]
        (start / Path(value).name).symlink_to(value)
    monkeypatch.chdir(start)
    relative = ["data.train.labels=train.json", "data.train.images=train",
                "data.val.labels=train.json", "data.val.images=train"]  # fmt: skip
    assert main(["train", "--work-dir", "run", *TINY, *relative]) == 0
    saved = yaml.safe_load((start / "run" / "config.yaml").read_text())
    assert saved["data"]["train"]["labels"] == str(start / "train.json")
    assert saved["work_dir"] == str(start / "run")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(["val", "--weights", str(start / "run" / "checkpoints" / "last.pth")]) == 0


def test_resuming_an_export_is_one_line_before_any_data_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    export = Path(__file__).resolve().parents[1] / "data" / "before_family_sections"
    assert main(["train", "--resume", str(export / "bottomup.safetensors")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is an export" in err[0] and "--weights-only" in err[0]
    assert list(tmp_path.iterdir()) == []  # no synthetic data set, no run folder


def test_leftovers_of_a_run_killed_before_its_first_checkpoint_are_moved_aside(
    tmp_path: Path,
) -> None:
    from posekit.engine.run_folder import refuse_or_move_aside

    work = tmp_path / "run"
    (work / "tensorboard").mkdir(parents=True)
    (work / "config.yaml").write_text("seed: 0\n")
    moved = refuse_or_move_aside(work, exist_ok=False)
    assert moved is not None and (moved / "config.yaml").is_file() and not work.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("mine")
    assert refuse_or_move_aside(empty, exist_ok=False) is None  # not a run's: left alone
    assert (empty / "notes.txt").is_file()
