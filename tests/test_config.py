from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from posekit.config import (
    PosekitConfig,
    apply_overrides,
    deep_merge,
    load_config,
    parse_override_value,
    save_config,
)
from posekit.errors import ConfigError


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_validate() -> None:
    cfg = load_config()
    assert isinstance(cfg, PosekitConfig)
    assert cfg.data.keypoint_schema == "coco17"
    assert cfg.resolved_work_dir() == Path("runs/default")


def test_deep_merge_merges_mappings_and_replaces_lists() -> None:
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    top = {"a": {"c": [3]}, "e": 2}
    assert deep_merge(base, top) == {"a": {"b": 1, "c": [3]}, "d": 1, "e": 2}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 1}  # inputs untouched


def test_base_inheritance_chain(tmp_path: Path) -> None:
    _write(tmp_path / "root.yaml", {"training": {"batch_size": 4, "max_epochs": 3}})
    (tmp_path / "sub").mkdir()
    _write(
        tmp_path / "sub" / "mid.yaml",
        {"base": "../root.yaml", "training": {"max_epochs": 5, "resize_schedule": [[1, 256]]}},
    )
    leaf = _write(
        tmp_path / "sub" / "leaf.yaml",
        {"base": ["mid.yaml"], "training": {"resize_schedule": [[2, 320]]}},
    )
    cfg = load_config(leaf)
    assert cfg.training.batch_size == 4
    assert cfg.training.max_epochs == 5
    assert cfg.training.resize_schedule == [(2, 320)]  # lists replace, not append


def test_base_cycle_is_reported(tmp_path: Path) -> None:
    _write(tmp_path / "a.yaml", {"base": "b.yaml"})
    _write(tmp_path / "b.yaml", {"base": "a.yaml"})
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")


def test_overrides_words_and_types() -> None:
    cfg = load_config(
        None,
        [
            "training.optimizer.lr=1e-4",
            "training.amp=true",
            "data.train.labels=/x/train.json",
            "data.schema=my.yaml",
            "training.resize_schedule=[[1, 128], [3, 256]]",
        ],
    )
    assert cfg.training.optimizer.lr == pytest.approx(1e-4)
    assert cfg.training.amp is True
    assert cfg.data.train.labels == "/x/train.json"
    assert cfg.data.keypoint_schema == "my.yaml"
    assert cfg.training.resize_schedule == [(1, 128), (3, 256)]


@pytest.mark.parametrize(
    ("text", "value"),
    [("1e-4", 1e-4), ("3", 3), ("true", True), ("null", None), ("abc", "abc"), ("[1, 2]", [1, 2])],
)
def test_parse_override_value(text: str, value: object) -> None:
    assert parse_override_value(text) == value


def test_unknown_key_suggests_closest() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, ["training.optimizer.lrr=0.1"])
    message = str(info.value)
    assert "'training.optimizer.lrr'" in message
    assert "did you mean 'training.optimizer.lr'" in message


def test_unknown_key_in_file_names_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.yaml", {"trainig": {"amp": True}})
    with pytest.raises(ConfigError, match=r"c\.yaml.*did you mean 'training'"):
        load_config(path)


def test_wrong_type_names_key() -> None:
    with pytest.raises(ConfigError, match="'training.batch_size'.*'many'"):
        load_config(None, ["training.batch_size=many"])


def test_bad_override_syntax() -> None:
    with pytest.raises(ConfigError, match="key.path=value"):
        apply_overrides({}, ["training.amp"])
    with pytest.raises(ConfigError, match="holds a value"):
        apply_overrides({"training": {"amp": True}}, ["training.amp.x=1"])


def test_malformed_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("training: [\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    top_list = tmp_path / "list.yaml"
    top_list.write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(top_list)


def test_save_then_load_round_trip(tmp_path: Path) -> None:
    cfg = load_config(None, ["training.batch_size=3", "data.schema=x.yaml"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg


def test_repository_configs_validate() -> None:
    root = Path(__file__).resolve().parents[1] / "configs"
    configs = sorted(p for p in root.glob("**/*.yaml") if p.parent.name != "schemas")
    assert len(configs) > 8
    for path in configs:
        load_config(path)


def test_environment_variables_expand_with_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSEKIT_TEST_DIR", raising=False)
    words = ["data.train.labels=${POSEKIT_TEST_DIR:../shared}/coco/a.json"]
    assert load_config(None, words).data.train.labels == "../shared/coco/a.json"
    monkeypatch.setenv("POSEKIT_TEST_DIR", "/samples")
    assert load_config(None, words).data.train.labels == "/samples/coco/a.json"
    with pytest.raises(ConfigError, match="POSEKIT_NOT_SET_ANYWHERE"):
        load_config(None, ["data.train.labels=${POSEKIT_NOT_SET_ANYWHERE}/x"])


def test_partial_stage2_augmentation_keeps_the_stage2_defaults() -> None:
    cfg = load_config(
        None, ["bottomup.augment_stage2.flip_prob=0.2", "topdown.augment_stage2.rotate_max=5"]
    )
    assert cfg.bottomup.augment_stage2.flip_prob == 0.2
    assert cfg.bottomup.augment_stage2.max_rotate == 10.0  # stage 2's default, not stage 1's 40
    assert (
        cfg.topdown.augment_stage2.scale_min == 0.9 and cfg.topdown.augment_stage2.rotate_max == 5
    )
    with pytest.raises(ConfigError, match="max_rotat"):
        load_config(None, ["bottomup.augment_stage2.max_rotat=3"])


def test_old_bottomup_keys_are_aliases_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    words = ["loss.heatmap_weight=5", "targets.sigma=3", "data.augment.flip_prob=0.1",
             "inference.input_height=256", "inference.bf16=true",
             "data.augment_stage2={}"]  # fmt: skip
    cfg = load_config(None, words)
    assert cfg.bottomup.loss.heatmap_weight == 5 and cfg.bottomup.targets.sigma == 3
    assert cfg.bottomup.augment.flip_prob == 0.1
    assert cfg.bottomup.inference.input_height == 256
    assert cfg.inference.bf16 is True  # shared by the families: it stays
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("config + overrides: 'loss' is now")
    assert "'targets' is now 'bottomup.targets'" in lines[0]
    new = load_config(None, ["bottomup.loss.heatmap_weight=5"])
    assert new.bottomup.loss == cfg.bottomup.loss and capsys.readouterr().err == ""


def test_a_key_given_under_its_old_and_new_name(tmp_path: Path) -> None:
    both = tmp_path / "both.yaml"
    both.write_text("loss: {paf_weight: 3}\nbottomup: {loss: {paf_weight: 2}}\n")
    with pytest.raises(ConfigError) as error:
        load_config(both)
    message = str(error.value)
    assert "\n" not in message and str(both) in message
    assert "'loss.paf_weight' and 'bottomup.loss.paf_weight' are both given" in message
    # across layers the later one wins: a base file's old key under a file's new one, an
    # override after the file, a later override after an earlier one
    base = tmp_path / "base.yaml"
    base.write_text("loss: {paf_weight: 3, heatmap_weight: 4}\n")
    child = tmp_path / "child.yaml"
    child.write_text("base: base.yaml\nbottomup: {loss: {paf_weight: 2}}\n")
    cfg = load_config(child)
    assert (cfg.bottomup.loss.paf_weight, cfg.bottomup.loss.heatmap_weight) == (2, 4)
    assert load_config(child, ["loss.paf_weight=5"]).bottomup.loss.paf_weight == 5
    words = ["loss.paf_weight=5", "bottomup.loss.paf_weight=6"]
    assert load_config(None, words).bottomup.loss.paf_weight == 6
    assert load_config(None, words[::-1]).bottomup.loss.paf_weight == 5


def test_another_familys_settings_are_refused_naming_the_family() -> None:
    from posekit.config import check_family_sections

    topdown = load_config(None, ["model.name=topdown", "loss.heatmap_weight=5", "targets.sigma=3"])
    with pytest.raises(ConfigError) as error:
        check_family_sections(topdown, "topdown")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(
        "bottomup.targets.sigma (formerly targets.sigma), bottomup.loss.heatmap_weight "
        "(formerly loss.heatmap_weight): setting(s) of the bottomup family"
    )
    assert "model.name 'topdown' is a topdown model" in message
    bottomup = load_config(None, ["detector.loss.l1_weight=3"])
    with pytest.raises(
        ConfigError, match=r"^detector.loss.l1_weight: setting\(s\) of the detector"
    ):
        check_family_sections(bottomup, "bottomup")
    check_family_sections(load_config(None, ["targets.sigma=3"]), "bottomup")  # its own
    check_family_sections(load_config(None, ["model.name=topdown"]), "topdown")  # defaults


def test_config_show_and_train_refuse_another_familys_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from posekit.cli import main

    topdown = str(Path(__file__).resolve().parents[1] / "configs" / "topdown" / "synthetic.yaml")
    assert main(["config", "show", topdown, "targets.sigma=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: bottomup.targets.sigma (formerly targets.sigma)")
    code = main(["train", "--config", topdown, "--work-dir", str(tmp_path / "run"),
                 "bottomup.loss.paf_weight=2"])  # fmt: skip
    assert code == 2
    captured = capsys.readouterr()
    assert "bottomup.loss.paf_weight (formerly loss.paf_weight): setting(s) of the bottomup" in (
        captured.err
    )
    assert not (tmp_path / "run").exists() and "generating" not in captured.out


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["training.optimizer.custom_keys={backbone.: {lr_mul: 0}}"],
         "did you mean 'training.optimizer.custom_keys.backbone..lr_mult'?); valid keys under "
         "training.optimizer.custom_keys.backbone.: ['lr_mult', 'decay_mult']"),
        (["data.train_sets=[{labels: a, imagez: b}]"],
         "did you mean 'data.train_sets.0.images'?"),
    ],
)  # fmt: skip
def test_typos_inside_mappings_and_lists_get_the_valid_keys(
    words: list[str], expected: str
) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(None, words)
    assert expected in str(error.value) and "valid keys under" in str(error.value)
    assert "[]" not in str(error.value)


@pytest.mark.parametrize(
    ("model", "params", "expected"),
    [
        ("lw_openpose", "{num_chanels: 3}", "'num_chanels' (did you mean 'num_channels'?)"),
        ("topdown", "{backbon: resnet18}", "'backbon' (did you mean 'backbone'?)"),
        ("rtdetr", "{hidden_dm: 3}", "'hidden_dm' (did you mean 'hidden_dim'?)"),
    ],
)
def test_model_params_typos_stop_before_any_data_is_made(
    model: str, params: str, expected: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from posekit.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["train", f"model.name={model}", f"model.params={params}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0] and "known: [" in err[0]
    assert list(tmp_path.iterdir()) == []  # no synthetic data generated first
