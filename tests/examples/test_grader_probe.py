"""grader_probe end to end on a tiny run: graders fitted per occluder style, scored on labels."""

from __future__ import annotations

import json
from pathlib import Path

from examples.oamn.config import TrainConfig
from examples.oamn.data import load_dataset
from examples.oamn.grader_probe import main
from examples.oamn.training import train
from examples.oamn.validation import training_split
from tests.examples.helpers_train import tiny_config


def test_probe_scores_each_style_on_the_labelled_validation_images(tiny_market, tmp_path):
    run_dir = tmp_path / "run"
    overrides = {"val_ids": 2, "grader": "feature_profiles", "grader_head": "types"}
    train(tiny_config(tiny_market, run_dir, **overrides))
    config = TrainConfig.load(run_dir / "config.json")
    _, val_query, val_gallery = training_split(
        load_dataset("market1501", tiny_market).train, config
    )
    names = sorted(Path(item.path).name for item in (*val_query, *val_gallery))
    labels = ["bottom_half", "left_quarter", "none", "unclear"]
    csv = tmp_path / "labels.csv"
    csv.write_text("image,label\n" + "".join(f"{n},{labels[i % 4]}\n" for i, n in enumerate(names)))
    output = tmp_path / "probe.json"
    main(
        [
            "--checkpoint", str(run_dir / "checkpoint_last.pt"), "--data-root", str(tiny_market),
            "--dataset", "market1501", "--labels", str(csv), "--styles", "bands,unscaled",
            "--images", "8", "--epochs", "1", "--none-weights", "1,0.5", "--output", str(output),
        ]
    )  # fmt: skip
    results = json.loads(output.read_text())
    assert list(results) == ["bands", "bands, none x 0.5", "unscaled", "unscaled, none x 0.5"]
    sided = sum(1 for i in range(len(names)) if i % 4 < 2)
    for report in results.values():
        assert report["labelled"] == len(names)
        assert report["sided"] == sided
        assert 0.0 <= report["location_accuracy"] <= 1.0
    # A lower weight of "none" can only move images from "none" to an occluded type.
    assert results["bands, none x 0.5"]["none_rate"] <= results["bands"]["none_rate"]
