"""``posekit trials``: Optuna trials on a tiny synthetic set (a few seconds per trial).

In-process runs cover the list form (failures recorded, best config, plot), threshold
pruning, the search-space form and the user errors; subprocesses cover kill -9 and resume,
and two commands sharing one study on a real PostgreSQL server.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import yaml

from posekit.cli import main
from posekit.config import load_config
from posekit.data.synthetic.generate import generate_synthetic
from posekit.trials.store import database_url

TINY_MODEL = {"num_refinement_stages": 1, "num_channels": 8, "width_mult": 0.25, "head_width": 8}
POSEKIT = [sys.executable, "-m", "posekit"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1"}
BUDGET = ["--budget-epochs", "1", "--budget-subset", "4", "--budget-size", "64"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("trials_synth")
    generate_synthetic(root, num_train=12, num_val=3, size=(96, 96), seed=3)
    return root


@pytest.fixture
def base_config(tiny_data: Path, tmp_path: Path) -> Path:
    config = {
        "model": {"name": "lw_openpose", "params": dict(TINY_MODEL)},
        "data": {
            "train": {"labels": str(tiny_data / "train.json"), "images": str(tiny_data / "train")},
            "val": {"labels": str(tiny_data / "val.json"), "images": str(tiny_data / "val")},
            "input_size": 64,
            "num_workers": 0,
        },
        "inference": {"input_height": 64},
        "training": {"batch_size": 2, "max_epochs": 5, "checkpoint_after": 0, "val_after": 0,
                     "optimizer": {"lr": 1e-3}},
    }  # fmt: skip
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def trials_args(base: Path, trials: Path, out: Path, *extra: str) -> list[str]:
    return ["trials", "--base-config", str(base), "--trials-file", str(trials),
            "--output-dir", str(out), *extra]  # fmt: skip


def latest_csv(out: Path) -> list[dict[str, str]]:
    files = sorted(out.glob("trials_*.csv"), key=lambda p: p.stat().st_mtime)
    assert files, f"no trials_*.csv in {out}"
    with files[-1].open(newline="") as handle:
        return list(csv.DictReader(handle))


def journal_study(out: Path) -> optuna.Study:
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(out / "study.journal")))
    return optuna.load_study(study_name=out.name, storage=storage)


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ---------------------------------------------------------------------------------------------
# In process


def test_list_form_records_failures_best_config_and_plot(
    base_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entries = [
        {"training.optimizer.lr": 1e-3},
        {"model.params.num_channels": -1},  # fails while the model is built
        {"training.optimiser.lr": 1e-3},  # unknown key: fails with the config's one-line error
        {"training.optimizer.lr": 3e-3, "training.batch_size": 4},
    ]
    trials = write_json(tmp_path / "trials.json", entries)
    out = tmp_path / "search"
    code, stdout, _ = run_main(trials_args(base_config, trials, out, *BUDGET), capsys)
    assert code == 0, stdout

    rows = latest_csv(out)
    assert list(rows[0])[:5] == ["trial_id", "status", "final_map", "final_loss", "duration_s"]
    assert {"param_training.optimizer.lr", "param_model.params.num_channels"} <= set(rows[0])
    assert [r["trial_id"] for r in rows] == ["0", "1", "2", "3"]
    assert [r["status"] for r in rows] == ["completed", "failed", "failed", "completed"]
    assert float(rows[0]["final_loss"]) > 0 and rows[0]["final_map"] != ""

    errors = {t.number: t.user_attrs.get("error") for t in journal_study(out).trials}
    assert "negative dimension" in errors[1] and "\n" not in errors[1]
    assert "training.optimiser" in errors[2] and "did you mean" in errors[2]

    # each trial ran in its own folder with the budget
    trial_cfg = load_config(out / "trial_3" / "config.yaml")
    assert trial_cfg.training.max_epochs == 1 and trial_cfg.training.subset_size == 4
    assert trial_cfg.training.eval_interval == 1 and trial_cfg.training.batch_size == 4

    # the best config: the base + the best entry, without the budget
    complete = [r for r in rows if r["status"] == "completed"]
    best = max(complete, key=lambda r: (float(r["final_map"]), -int(r["trial_id"])))
    cfg = load_config(out / "best_config.yaml")
    assert cfg.training.optimizer.lr == float(best["param_training.optimizer.lr"])
    assert cfg.training.max_epochs == 5 and cfg.model.params == TINY_MODEL
    assert (out / "trials.png").stat().st_size > 1000
    assert f"best: trial {best['trial_id']}" in stdout


def test_the_best_trial_is_chosen_by_its_score(
    base_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Trials that score differently (no validation: ranked by minus the training loss); the
    better one is not the first, so a best-of that takes the first finished trial fails."""
    config = yaml.safe_load(base_config.read_text())
    config["data"].pop("val")
    without_val = tmp_path / "no_val.yaml"
    without_val.write_text(yaml.safe_dump(config))
    entries = [{"training.optimizer.lr": 1e-9}, {"training.optimizer.lr": 5e-3}]
    trials = write_json(tmp_path / "trials.json", entries)
    out = tmp_path / "search"
    code, stdout, _ = run_main(trials_args(without_val, trials, out, *BUDGET), capsys)
    assert code == 0, stdout
    rows = latest_csv(out)
    scores = [float(r["final_map"]) for r in rows]
    assert [r["status"] for r in rows] == ["completed", "completed"]
    assert scores[1] > scores[0]  # the learning trial beats the frozen one
    assert "best: trial 1" in stdout
    assert load_config(out / "best_config.yaml").training.optimizer.lr == 5e-3


def test_threshold_prunes_every_trial_and_says_why(
    base_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trials = write_json(tmp_path / "t.json", [{"seed": 1}, {"seed": 2}])
    out = tmp_path / "pruned"
    args = trials_args(base_config, trials, out, *BUDGET, "--budget-epochs", "2",
                       "--early-stop-threshold", "2.0", "--pruner", "none")  # fmt: skip
    code, stdout, _ = run_main(args, capsys)
    assert code == 0, stdout
    rows = latest_csv(out)
    assert [r["status"] for r in rows] == ["pruned", "pruned"]
    for trial in journal_study(out).trials:
        assert trial.state == optuna.trial.TrialState.PRUNED
        assert "early-stop threshold 2" in trial.user_attrs["pruned_reason"]
        assert "at epoch 1" in trial.user_attrs["pruned_reason"]
    assert "no trial completed" in stdout and not (out / "best_config.yaml").exists()
    assert (out / "trials.png").is_file()


def test_search_space_with_median_pruner_and_no_validation(
    base_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space = {
        "training.optimizer.lr": {"low": 1e-4, "high": 1e-2, "log": True},
        "training.batch_size": {"choices": [2, 4]},
    }
    trials = write_json(tmp_path / "space.json", space)
    out = tmp_path / "space"
    args = trials_args(base_config, trials, out, *BUDGET, "--n-trials", "2", "--pruner", "median",
                       "data.val.labels=null")  # fmt: skip
    code, stdout, _ = run_main(args, capsys)
    assert code == 0, stdout
    assert "minus the training loss" in stdout
    rows = latest_csv(out)
    assert len(rows) == 2 and {r["status"] for r in rows} <= {"completed", "pruned"}
    for row in rows:
        assert 1e-4 <= float(row["param_training.optimizer.lr"]) <= 1e-2
        assert row["param_training.batch_size"] in ("2", "4")
        assert float(row["final_map"]) == pytest.approx(-float(row["final_loss"]), rel=1e-4)
    assert all(t.number < 2 for t in journal_study(out).trials)


@pytest.mark.parametrize(
    ("content", "extra", "needles"),
    [
        (None, [], ("not found", "--trials-file")),
        ("[{", [], ("not valid JSON", "line 1")),
        ('{"training.optimizer.lr": {"low": 1}}', [], ("'low' and 'high'",)),
        ('{"training.optimizer.lr": {"low": 1e-4, "high": 1e-3}}', [], ("--n-trials",)),
        ('[{"seed": 1}]', ["--storage", "not a url"], ("--storage", "not a database URL")),
        ('[{"seed": 1}]', ["--storage", "postgresql://nobody@127.0.0.1:1/db"],
         ("cannot open the database",)),
        ('[{"seed": 1}]', ["--workers", "0"], ("--workers",)),
    ],
)  # fmt: skip
def test_user_errors_are_one_line(
    base_config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
    extra: list[str],
    needles: tuple[str, ...],
) -> None:
    trials = tmp_path / "trials.json"
    if content is not None:
        trials.write_text(content)
    code, _, stderr = run_main(trials_args(base_config, trials, tmp_path / "o", *extra), capsys)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr
    for needle in needles:
        assert needle in lines[0]


def test_another_trials_file_does_not_mix_into_a_study(
    base_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mixed"
    first = write_json(tmp_path / "a.json", [{"model.params.num_channels": -1}])
    assert run_main(trials_args(base_config, first, out, *BUDGET), capsys)[0] == 0
    second = write_json(tmp_path / "b.json", [{"seed": 5}])
    code, _, stderr = run_main(trials_args(base_config, second, out, *BUDGET), capsys)
    assert code == 2 and "another trials file" in stderr


def test_an_entry_queued_twice_runs_once(
    base_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two processes enqueueing at the same moment can double an entry: the later trial
    steps aside (``duplicate_of``) and the CSV lists the entry once."""
    from posekit.trials.options import TrialsOptions
    from posekit.trials.run import prepare_run
    from posekit.trials.store import open_storage, open_study

    entries = [{"model.params.num_channels": -1}, {"model.params.num_channels": -2}]
    trials = write_json(tmp_path / "t.json", entries)
    out = tmp_path / "doubled"
    options = TrialsOptions(str(trials), str(out), str(base_config), 1, 4, 64)
    setup = prepare_run(options, say=lambda _: None).setup()
    study = open_study(setup, open_storage(setup), create=True)
    study.enqueue_trial({"candidate": 0})  # the same entry again, as a racing process would

    code, stdout, _ = run_main(trials_args(base_config, trials, out, *BUDGET), capsys)
    assert code == 0, stdout
    assert "entry 0 already taken by trial 0" in stdout
    rows = latest_csv(out)
    assert [(r["trial_id"], r["status"]) for r in rows] == [("0", "failed"), ("1", "failed")]
    assert journal_study(out).trials[2].user_attrs["duplicate_of"] == 0


# ---------------------------------------------------------------------------------------------
# Subprocesses: kill -9 and resume; two commands on one PostgreSQL study


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_killed_study_resumes_each_entry_once(base_config: Path, tmp_path: Path) -> None:
    lrs = [1e-3, 2e-3, 3e-3]
    trials = write_json(tmp_path / "t.json", [{"training.optimizer.lr": lr} for lr in lrs])
    out = tmp_path / "resume"
    command = [*POSEKIT, *trials_args(base_config, trials, out, *BUDGET, "--budget-epochs", "2")]
    with (tmp_path / "first.log").open("w") as log:
        first = subprocess.Popen(command, env=ENV, stdout=log, stderr=subprocess.STDOUT)
        try:
            started = wait_for(lambda: (out / "trial_1").is_dir() or first.poll() is not None, 180)
            assert started and first.poll() is None, "the first command ended before trial 1"
            os.kill(first.pid, signal.SIGKILL)
        finally:
            first.kill()
            first.wait(timeout=60)
    assert not list(out.glob("trials_*.csv"))

    again = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "trial 1: interrupted earlier; failed and queued again" in again.stdout

    rows = latest_csv(out)
    assert sorted(float(r["param_training.optimizer.lr"]) for r in rows) == lrs
    assert {r["status"] for r in rows} == {"completed"}
    study = journal_study(out)
    killed = study.trials[1]
    assert killed.state == optuna.trial.TrialState.FAIL and killed.user_attrs["interrupted"]
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == 1]
    assert len(retried) == 1 and retried[0].state == optuna.trial.TrialState.COMPLETE
    assert str(retried[0].number) in {r["trial_id"] for r in rows}


def postgres_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_commands_share_a_postgres_study(base_config: Path, tmp_path: Path) -> None:
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries (initdb): apt-get install postgresql")
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL")
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to start PostgreSQL")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="posekit-pg-"))  # outside pytest's root-only tmp
    data, sockets, port = root / "data", root / "sock", free_port()
    sockets.mkdir()
    if as_postgres:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")

    def pg(*args: str) -> None:
        subprocess.run([*as_postgres, *args], check=True, capture_output=True, timeout=120)

    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1"
    ctl = str(bin_dir / "pg_ctl")
    started = False
    try:
        pg(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust")
        pg(ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start")
        started = True
        pg(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
           "posekit_trials")  # fmt: skip

        entries = [{"training.optimizer.lr": lr} for lr in (1e-3, 2e-3, 3e-3, 4e-3)]
        trials = write_json(tmp_path / "t.json", entries)
        out = tmp_path / "shared"
        url = f"postgresql://postgres@127.0.0.1:{port}/posekit_trials"
        args = trials_args(base_config, trials, out, *BUDGET, "--storage", url, "--workers", "1")
        logs = [tmp_path / f"command_{i}.log" for i in range(2)]
        procs = []
        for log in logs:
            with log.open("w") as handle:
                procs.append(subprocess.Popen([*POSEKIT, *args], env=ENV, stdout=handle,
                                              stderr=subprocess.STDOUT))  # fmt: skip
        for proc in procs:
            try:
                proc.wait(timeout=300)
            finally:
                proc.kill()
        outputs = [log.read_text() for log in logs]
        assert [p.returncode for p in procs] == [0, 0], "\n".join(outputs)
        assert all("trial" in text for text in outputs)

        rows = latest_csv(out)
        assert len(rows) == 4 and {r["status"] for r in rows} == {"completed"}
        assert sorted(float(r["param_training.optimizer.lr"]) for r in rows) == [
            1e-3, 2e-3, 3e-3, 4e-3
        ]  # fmt: skip
        study = optuna.load_study(study_name="shared", storage=database_url(url))
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        assert sorted(t.params["candidate"] for t in complete) == [0, 1, 2, 3]
        # between them, the two commands ran each entry once
        ran = [line for text in outputs for line in text.splitlines() if line.startswith("trial ")]
        assert sum(": complete," in line for line in ran) == 4
    finally:
        if started:
            subprocess.run([*as_postgres, ctl, "-D", str(data), "stop", "-m", "immediate"],
                           capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)
