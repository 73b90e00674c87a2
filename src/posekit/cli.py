"""Command line: parse arguments, then call one library function per command.

Every user mistake surfaces as a :class:`posekit.errors.UserError`; :func:`main` prints it as
one line on stderr and exits with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from posekit.engine.control import TrainingStopped
from posekit.errors import EXIT_USER_ERROR, UserError, one_line


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that raises a UserError (one line, exit 2) instead of printing usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"posekit {self.prog.split()[-1]}: {message}; see --help")


def _cmd_config(args: argparse.Namespace) -> int:
    from posekit.config import check_family_sections, config_to_yaml, load_config
    from posekit.tasks import family_of

    config_file, overrides = args.config_file, list(args.overrides)
    if config_file is not None and "=" in config_file:  # `config show key=value` (no file)
        config_file, overrides = None, [config_file, *overrides]
    cfg = load_config(config_file, [*overrides, *args.cfg_options])
    check_family_sections(cfg, family_of(cfg.model.name))
    sys.stdout.write(config_to_yaml(cfg))
    return 0


def _cmd_check_data(args: argparse.Namespace) -> int:
    from posekit.data.check import run_check_data

    return run_check_data(
        args.labels,
        args.images,
        args.schema,
        as_json=args.json,
        keypoints_field=args.keypoints_field,
    )


def _cmd_eval(args: argparse.Namespace) -> int:
    from posekit.commands.eval import run_eval

    run_eval(
        args.labels,
        args.results,
        args.images,
        args.schema,
        args.json,
        args.split,
        keypoints_field=args.keypoints_field,
    )
    return 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    from posekit.data.prepared_labels import run_prepare

    return run_prepare(args.labels, args.output_name, net_input_size=args.net_input_size)


def _cmd_synth(args: argparse.Namespace) -> int:
    from posekit.data.synthetic.generate import run_synth

    return run_synth(args.out, args.images, size=args.size, seed=args.seed, val=args.val)


def _cmd_train(args: argparse.Namespace) -> int:
    from posekit.commands.train import train
    from posekit.commands.train_args import train_config

    train(train_config(args))
    return 0


def _cmd_val(args: argparse.Namespace) -> int:
    from posekit.commands.val import run_val

    settings = {
        key: value
        for key, value in (
            ("data.val.labels", args.val_labels),
            ("data.val.images", args.val_images_folder),
            ("data.schema", args.schema),
        )
        if value is not None
    }
    run_val(
        args.weights,
        settings,
        [*args.overrides, *args.cfg_options],
        output_name=args.val_output_name,
        as_json=args.json,
        config=args.config,
    )
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from posekit.commands.predict import run_predict

    run_predict(
        args.source, args.weights, args.out, [*args.overrides, *args.cfg_options],
        detector=args.detector, pose=args.pose, box_threshold=args.box_threshold,
        as_json=args.json,
    )  # fmt: skip
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from posekit.commands.export import run_export

    run_export(args.weights, args.format, args.out)
    return 0


def _cmd_trials(args: argparse.Namespace) -> int:
    from posekit.trials.options import TrialsOptions
    from posekit.trials.run import run_trials

    options = TrialsOptions(
        trials_file=args.trials_file,
        output_dir=args.output_dir,
        base_config=args.base_config,
        budget_epochs=args.budget_epochs,
        budget_subset=args.budget_subset,
        budget_size=args.budget_size,
        early_stop_threshold=args.early_stop_threshold,
        early_stop_warmup=args.early_stop_warmup,
        pruner=args.pruner,
        storage=args.storage,
        study_name=args.study_name,
        workers=args.workers,
        n_trials=args.n_trials,
        overrides=(*args.overrides, *args.cfg_options),
    )
    return run_trials(options, say=lambda line: print(line, flush=True))


def _cmd_convert(args: argparse.Namespace) -> int:
    from posekit.data.ultralytics import run_convert

    return run_convert(
        args.to, args.out, labels=args.labels, images=args.images, data=args.data,
        split=args.split, schema=args.schema, keypoints_field=args.keypoints_field,
    )  # fmt: skip


def version_line() -> str:
    """posekit's version and the PyTorch it runs on (read without importing torch)."""
    from importlib.metadata import PackageNotFoundError, version

    from posekit import __version__

    try:
        torch_version = version("torch")
    except PackageNotFoundError:
        torch_version = "not installed"
    return f"posekit {__version__} (PyTorch {torch_version}, Python {sys.version.split()[0]})"


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog="posekit",
        description="Train, evaluate, run and export human pose models (bottom-up, top-down) "
        "and person detectors on COCO-format data.",
        epilog="`posekit COMMAND --help` shows a command's options; the README has a tour.",
    )
    parser.add_argument("--version", action="version", version=version_line())
    commands = parser.add_subparsers(dest="command", parser_class=_ArgumentParser)

    config = commands.add_parser("config", help="show the resolved config")
    config_verbs = config.add_subparsers(dest="verb", parser_class=_ArgumentParser, required=True)
    show = config_verbs.add_parser("show", help="print the resolved config as YAML")
    show.add_argument(
        "config_file", nargs="?", default=None, help="config YAML (default: built-in)"
    )
    show.add_argument("overrides", nargs="*", default=[], help="key.path=value overrides")
    show.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE")
    show.set_defaults(handler=_cmd_config)

    check = commands.add_parser("check-data", help="find problems in a COCO keypoint data set")
    check.add_argument("--labels", required=True, help="COCO person-keypoints JSON")
    check.add_argument("--images", required=True, help="images root folder")
    check.add_argument("--schema", default="coco17", help="built-in schema name or YAML path")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.add_argument(
        "--keypoints-field", default="keypoints", help="annotation field (e.g. keypoints_21)"
    )
    check.set_defaults(handler=_cmd_check_data)

    prepare = commands.add_parser("prepare", help="prepared training labels (Lightweight OpenPose)")
    prepare.add_argument("--labels", required=True, help="COCO person-keypoints JSON")
    prepare.add_argument(
        "--output-name", default="prepared_train_annotation.json", help="output file (.json)"
    )
    prepare.add_argument(
        "--net-input-size", type=int, default=368, help="scale_provided = box height / this"
    )
    prepare.set_defaults(handler=_cmd_prepare)

    synth = commands.add_parser("synth", help="write the synthetic multi-person data set")
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--images", type=int, required=True, help="training images")
    synth.add_argument("--size", default="256x256", help="image size WxH")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--val", type=int, default=0, help="validation images")
    synth.set_defaults(handler=_cmd_synth)

    from posekit.commands.train_args import add_train_arguments

    train = commands.add_parser("train", help="train a model (default: the synthetic demo)")
    add_train_arguments(train)
    train.set_defaults(handler=_cmd_train)

    val = commands.add_parser("val", help="evaluate weights: COCO keypoint AP")
    val.add_argument("--weights", required=True, help="checkpoint (.pth) or export")
    val.add_argument("--config", help="config YAML (default: the one stored with the weights)")
    val.add_argument("--val-labels", help="COCO keypoint JSON (default: the run's)")
    val.add_argument("--val-images-folder", help="images folder (default: the run's)")
    val.add_argument("--val-output-name", help="also write the COCO results JSON here")
    val.add_argument("--schema", help="keypoint schema (default: the run's)")
    val.add_argument("--json", action="store_true", help="last stdout line: metrics as JSON")
    val.add_argument("overrides", nargs="*", default=[], help="key.path=value overrides")
    val.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE")
    val.set_defaults(handler=_cmd_val)

    predict = commands.add_parser("predict", help="find and draw people in images or a video")
    predict.add_argument("source", help="an image, a folder of images or a video")
    predict.add_argument("--weights", help="checkpoint (.pth) or export (any family)")
    predict.add_argument("--detector", help="a person detector: its boxes go to --pose")
    predict.add_argument("--pose", help="the top-down pose model run in each detected box")
    predict.add_argument(
        "--box-threshold", type=float, default=0.3, help="detector score a box needs (0.3)"
    )
    predict.add_argument("--out", default="predictions", help="output folder")
    predict.add_argument(
        "--json", action="store_true",
        help="print what was found as one JSON object on stdout (messages go to stderr)",
    )  # fmt: skip
    predict.add_argument("overrides", nargs="*", default=[], help="key.path=value overrides")
    predict.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE")
    predict.set_defaults(handler=_cmd_predict)

    export = commands.add_parser("export", help="inference weights: safetensors or ONNX")
    export.add_argument("--weights", required=True, help="a posekit checkpoint (.pth)")
    export.add_argument("--format", default="safetensors", help="safetensors or onnx")
    export.add_argument("--out", help="output file (default: beside the checkpoint)")
    export.set_defaults(handler=_cmd_export)

    trials = commands.add_parser("trials", help="budgeted hyperparameter trials (Optuna)")
    trials.add_argument("--base-config", help="config YAML every trial starts from")
    trials.add_argument(
        "--trials-file", required=True, help="JSON: a list of overrides, or a search space"
    )
    trials.add_argument("--output-dir", required=True, help="trial folders, study, results")
    trials.add_argument("--budget-epochs", type=int, help="training.max_epochs per trial")
    trials.add_argument("--budget-subset", type=int, help="training.subset_size per trial")
    trials.add_argument("--budget-size", type=int, help="data.input_size per trial")
    trials.add_argument(
        "--early-stop-threshold", type=float, help="prune a trial whose metric is below this"
    )
    trials.add_argument(
        "--early-stop-warmup", type=int, default=0, help="epochs before the threshold applies"
    )
    trials.add_argument(
        "--pruner", choices=("successive-halving", "median", "none"), default="median"
    )
    trials.add_argument("--n-trials", type=int, help="trials of a search-space file")
    trials.add_argument(
        "--storage", help="database URL shared by workers (default: a journal file in DIR)"
    )
    trials.add_argument("--study-name", help="default: the output folder's name")
    trials.add_argument("--workers", type=int, default=1, help="local worker processes")
    trials.add_argument("overrides", nargs="*", default=[], help="key.path=value overrides")
    trials.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE")
    trials.set_defaults(handler=_cmd_trials)

    scoring = commands.add_parser(
        "eval", help="score a COCO keypoint results file from any tool (AP, PCKh or PCK)"
    )
    scoring.add_argument("--labels", required=True, help="COCO JSON, YOLO data.yaml or MPII JSON")
    scoring.add_argument("--results", required=True, help="COCO keypoint results JSON")
    scoring.add_argument("--images", help="images root (needed for MPII; default: not read)")
    scoring.add_argument("--schema", help="schema name or YAML (default: from the file's names)")
    scoring.add_argument("--split", default="val", help="the YOLO data set's split (val)")
    scoring.add_argument(
        "--keypoints-field", default="keypoints", help="annotation field (default: the schema's)"
    )
    scoring.add_argument("--json", action="store_true", help="last line: the metrics as JSON")
    scoring.set_defaults(handler=_cmd_eval)

    convert = commands.add_parser("convert", help="COCO keypoint JSON <-> Ultralytics YOLO pose")
    convert.add_argument("--to", required=True, choices=("yolo", "coco"), help="output format")
    convert.add_argument("--out", required=True, help="yolo: output folder; coco: output JSON")
    convert.add_argument("--labels", help="--to yolo: COCO person-keypoints JSON")
    convert.add_argument("--images", help="--to yolo: images root folder")
    convert.add_argument("--data", help="--to coco: the YOLO data.yaml")
    convert.add_argument("--split", help="split name (default: train for yolo, val for coco)")
    convert.add_argument("--schema", help="--to yolo: schema name or YAML (default: coco17)")
    convert.add_argument("--keypoints-field", help="--to yolo: annotation field (keypoints)")
    convert.set_defaults(handler=_cmd_convert)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        # key.path=value words may stand between options (argparse takes one positional run)
        stray = [w for w in extra if w.startswith("-") or "=" not in w]
        if stray or (extra and not hasattr(args, "overrides")):
            parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
        if extra:
            args.overrides = [*args.overrides, *extra]
        handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
        if handler is None:
            parser.print_help()
            return 0
        return handler(args)
    except UserError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_USER_ERROR
    except TrainingStopped as exc:
        print(f"stopped: {one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `posekit predict ... | head -3`: the reader has gone
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout
        return 141  # 128 + SIGPIPE, as a shell reports it


if __name__ == "__main__":
    sys.exit(main())
