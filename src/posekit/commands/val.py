"""``posekit val``: evaluate trained weights on a COCO keypoint data set."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

from posekit.commands.load import load_model
from posekit.config import load_config
from posekit.errors import ConfigError
from posekit.evaluation import format_metrics


def run_val(
    weights: str,
    settings: dict[str, Any],
    overrides: list[str],
    output_name: str | None = None,
    as_json: bool = False,
    out: TextIO | None = None,
    config: str | None = None,
) -> dict[str, float]:
    """Print the AP table (or PCK); with ``as_json`` the last line is the metrics object.

    ``config`` (a config YAML) replaces the config stored with the weights."""
    out = out if out is not None else sys.stdout  # looked up now: stdout may be replaced
    base = load_config(config) if config else None
    loaded = load_model(weights, settings, overrides, base_config=base)
    data = loaded.task.validation_data(loaded.cfg)
    if data is None:
        raise ConfigError(
            "no validation data: give --val-labels and --val-images-folder "
            "(or data.val.labels / data.val.images)"
        )
    results_path = Path(output_name) if output_name else None
    detections = loaded.cfg.data.val.detections
    metrics = loaded.task.evaluate_on(loaded.model, data, results_path, detections)
    print(f"{len(data)} images from {data.labels_path}", file=out)
    print(format_metrics(metrics), file=out)
    if as_json:
        print(json.dumps({k: round(float(v), 6) for k, v in metrics.items()}), file=out)
    return metrics
