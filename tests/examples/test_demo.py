"""python -m examples.oamn.demo: --quick runs end to end, on the synthetic set and a real layout."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from examples.oamn import comparison, demo
from examples.oamn.checkpoint import checkpoint_digest, load_checkpoint
from examples.oamn.config import TrainConfig
from examples.oamn.data import load_dataset
from examples.oamn.synthetic import COMPLETE_MARKER
from tests.examples.helpers_eval import HEIGHT, UNIFIED, WIDTH, ColourModel, write_colour_market

METRICS = ("R1", "R5", "R10", "mAP", "mINP")
#: (model, queries, setting) of every row on the synthetic benchmark, in table order.
#: OAMN's unified rows: one- and two-sided, under the grader's, the located and the manifest's
#: true types.
SYNTHETIC_ROWS = [
    ("baseline", "occluded", "no unification"),
    ("baseline", "holistic", "no unification"),
    ("OAMN", "occluded", "no unification"),
    *(
        ("OAMN", "occluded", f"unified, {bank} bank{sides}{types}")
        for bank in ("mask swap", "feature")
        for types in ("", ", located types", ", true types")
        for sides in ("", ", two-sided")
    ),
    ("OAMN", "holistic", "no unification"),
]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[Path, dict]:
    """The --quick demo on the generated tiny synthetic benchmark: (its folder, its result)."""
    output = tmp_path_factory.mktemp("demo")
    argv = ["--quick", "--output-dir", str(output), "--no-progress"]
    return output, demo.main([*argv, "--strategies", "mask_swap,feature"])


def test_quick_run_writes_results_figure_and_checkpoints(quick_run):
    output, result = quick_run
    written = json.loads((output / "results.json").read_text())
    assert written == result
    assert written["command"].startswith("python -m examples.oamn.demo --quick")
    figure = Image.open(output / "demo.png")
    assert figure.format == "PNG"
    # 4 query rows and the bars: taller than wide would mean a missing block of columns.
    assert figure.width > 1000
    assert figure.height > 800
    assert Image.open(output / "awareness.png").format == "PNG"
    assert written["figures"] == [str(output / "demo.png"), str(output / "awareness.png")]
    # OAMN's awareness only (the baseline has no mask), with the synthetic queries' occluders.
    assert list(written["awareness"]) == ["oamn"]
    assert list(written["awareness"]["oamn"]) == ["augmented", "synthetic_queries"]
    queries = written["awareness"]["oamn"]["synthetic_queries"]
    assert queries["grader"]["count"] == written["dataset"]["num_query"]
    assert queries["grader"]["occluded_count"] == written["dataset"]["num_query"]
    for name in comparison.MODELS:
        state = load_checkpoint(output / name / "checkpoint_last.pt")
        assert state.epoch == 1
        assert state.history[0]["steps"] == 2
    assert (Path(written["dataset"]["root"]) / COMPLETE_MARKER).is_file()
    assert set(written["seconds"]) == {
        "data", "train_baseline", "train_oamn", "evaluate", "figure", "total",
    }  # fmt: skip


def test_quick_run_rows_and_metrics(quick_run):
    _, result = quick_run
    rows = result["rows"]
    assert [(r["model"], r["queries"], r["setting"]) for r in rows] == SYNTHETIC_ROWS
    num_query = result["dataset"]["num_query"]
    for row in rows:
        values = [row[name] for name in METRICS]
        assert all(0.0 <= value <= 1.0 for value in values), row
        assert row["R1"] <= row["R5"] <= row["R10"]
        assert row["num_valid_queries"] == num_query
    table = result["table"].splitlines()
    assert len(table) == 1 + len(rows)
    assert table[3].split()[-5:] == [f"{100 * rows[2][m]:.1f}" for m in METRICS]


def test_quick_run_configs_differ_only_by_the_method_switches(quick_run):
    _, result = quick_run
    baseline, oamn = result["configs"]["baseline"], result["configs"]["oamn"]
    differing = {key for key in oamn if oamn[key] != baseline[key]}
    # Table 6's baseline: holistic images only, no mask, plain batch-hard triplet.
    switches = {"occlusion", "mask_module", "loss_mask", "grouped_triplet", "loss_score"}
    assert differing == {*switches, "output_dir"}
    assert all(oamn[key] for key in switches)
    assert not any(baseline[key] for key in switches)
    assert oamn["backbone"] == comparison.DEMO_SETTINGS["backbone"]
    assert oamn["max_steps_per_epoch"] == 2


def test_holistic_twins_are_the_same_shots_without_occluder(quick_run):
    _, result = quick_run
    dataset = load_dataset("market1501", result["dataset"]["root"])
    twins = comparison.holistic_queries(dataset)
    assert [(t.pid, t.camid, t.path.name) for t in twins] == [
        (q.pid, q.camid, q.path.name) for q in dataset.query
    ]
    assert all(t.path.parent.name == "query_holistic" for t in twins)
    occluded, holistic = (
        np.asarray(Image.open(item.path)) for item in (dataset.query[0], twins[0])
    )
    assert occluded.shape == holistic.shape
    assert not np.array_equal(occluded, holistic)


def test_real_layout_has_no_holistic_rows(tiny_market, tmp_path):
    result = demo.main(
        ["--quick", "--data-root", str(tiny_market), "--output-dir", str(tmp_path), "--no-progress"]
    )
    # The default strategies: the band bank only, one- and two-sided, under the grader's and
    # the located types; no manifest, so no true-type rows and the awareness of the
    # augmentation bands only.
    assert comparison.DEFAULT_STRATEGIES == ("band",)
    assert [(r["model"], r["queries"], r["setting"]) for r in result["rows"]] == [
        ("baseline", "occluded", "no unification"),
        ("OAMN", "occluded", "no unification"),
        ("OAMN", "occluded", "unified, band bank"),
        ("OAMN", "occluded", "unified, band bank, two-sided"),
        ("OAMN", "occluded", "unified, band bank, located types"),
        ("OAMN", "occluded", "unified, band bank, two-sided, located types"),
    ]
    assert "data" not in result["seconds"]
    assert not (tmp_path / "data").exists()
    assert (tmp_path / "demo.png").is_file()
    assert (tmp_path / "awareness.png").is_file()
    assert list(result["awareness"]["oamn"]) == ["augmented"]


def test_evaluate_models_returns_rows_features_and_awareness(tmp_path):
    dataset = load_dataset("market1501", write_colour_market(tmp_path / "colour"))
    models = {"baseline": ColourModel(), "oamn": ColourModel()}
    size = {"height": HEIGHT, "width": WIDTH, "device": "cpu"}
    rows, features, awareness = comparison.evaluate_models(
        models, dataset, **size, strategies=("mask_swap",), progress=False
    )
    assert [(r["model"], r["queries"], r["setting"]) for r in rows] == [
        ("baseline", "occluded", "no unification"),
        ("OAMN", "occluded", "no unification"),
        ("OAMN", "occluded", "unified, mask swap bank"),
        ("OAMN", "occluded", "unified, mask swap bank, two-sided"),
        ("OAMN", "occluded", "unified, mask swap bank, located types"),
        ("OAMN", "occluded", "unified, mask swap bank, two-sided, located types"),
    ]
    assert rows[2]["mAP"] == pytest.approx(UNIFIED["mAP"], abs=1e-12)
    assert rows[4]["mAP"] == pytest.approx(1.0, abs=1e-12)  # every query located half top
    assert all(row["num_valid_queries"] == 3 for row in rows)
    assert list(features) == ["baseline", "oamn"]
    assert features["baseline"].banks == {}
    assert features["baseline"].query_banks == {}
    assert list(features["oamn"].banks) == list(features["oamn"].query_banks) == ["mask_swap"]
    # The awareness of OAMN only, on the 3 queries (no manifest: the augmentation bands only).
    assert list(awareness) == ["oamn"]
    assert list(awareness["oamn"]) == ["augmented"]
    assert awareness["oamn"]["augmented"]["images"] == 3


def test_demo_configs_keep_the_demo_settings():
    configs = comparison.demo_configs("root", "out", epochs=3, backbone="mobilenet_v2")
    for name, config in configs.items():
        assert config.output_dir == str(Path("out") / name)
        assert config.epochs == 3
        assert config.backbone == "mobilenet_v2"
        assert config.lr_mult_backbone == comparison.DEMO_SETTINGS["lr_mult_backbone"]
    assert not configs["baseline"].mask_module
    assert configs["oamn"].mask_module


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--epochs", "0"], r"--epochs must be >= 1"),
        (["--data-root", "/no/such/folder"], r"--data-root /no/such/folder: no such folder"),
    ],
)
def test_bad_arguments_exit_with_a_message(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit):
        demo.main([*argv, "--output-dir", str(tmp_path)])
    assert message.replace("\\", "") in capsys.readouterr().err


def test_a_second_run_reuses_the_trained_models(quick_run, capsys):
    output, result = quick_run
    checkpoints = [output / name / "checkpoint_last.pt" for name in comparison.MODELS]
    before = [path.stat().st_mtime_ns for path in checkpoints]
    again = demo.main(
        [
            "--quick",
            "--output-dir",
            str(output),
            "--no-progress",
            "--strategies",
            "mask_swap,feature",
        ]
    )
    assert [path.stat().st_mtime_ns for path in checkpoints] == before
    assert "reusing the trained baseline" in capsys.readouterr().err
    assert again["rows"] == result["rows"]


def test_trained_checkpoint_compares_the_settings_that_change_the_weights(quick_run):
    output, result = quick_run
    config = TrainConfig.from_dict(result["configs"]["oamn"])
    checkpoint = output / "oamn" / "checkpoint_last.pt"
    assert comparison.trained_checkpoint(checkpoint, config)
    cosmetic = dataclasses.replace(config, output_dir="elsewhere", progress=not config.progress)
    assert comparison.trained_checkpoint(checkpoint, cosmetic)
    assert not comparison.trained_checkpoint(
        checkpoint, dataclasses.replace(config, lr=config.lr / 2)
    )
    assert not comparison.trained_checkpoint(checkpoint, dataclasses.replace(config, epochs=2))
    assert not comparison.trained_checkpoint(output / "missing.pt", config)


def test_trained_checkpoint_refuses_an_unfinished_run(quick_run, tmp_path):
    output, result = quick_run
    config = TrainConfig.from_dict(result["configs"]["oamn"])
    state = torch.load(output / "oamn" / "checkpoint_last.pt", weights_only=True)
    state["epoch"] = 0  # as if interrupted before the end of the last epoch
    state["digest"] = checkpoint_digest(state)  # an intact checkpoint of that run
    torch.save(state, tmp_path / "checkpoint_last.pt")
    assert not comparison.trained_checkpoint(tmp_path / "checkpoint_last.pt", config)
