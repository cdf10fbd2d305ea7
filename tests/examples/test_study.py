"""study: the summary over seeds, its markdown, the variant option and --collect (no training)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from examples.oamn import study
from examples.oamn.study import VARIANTS, build_parser
from examples.oamn.study_report import format_markdown, summarise


def report(
    plain: float,
    band: float | None = None,
    mask_mean: float | None = None,
    ratio: float | None = None,
) -> dict:
    """A hand-written evaluation report holding only the numbers given."""
    rows = {"plain": {"R1": plain, "mAP": plain / 2}}
    if band is not None:
        rows["unified_band"] = {"R1": band, "mAP": band / 2}
    result: dict = {"rows": rows}
    if mask_mean is not None:
        mask = {"all": {"mask_mean": mask_mean}, "occluded": {"band_to_visible": ratio}}
        result["awareness"] = {"augmented": {"mask": mask}}
    return result


def test_summarise_mean_sample_sd_count_and_values() -> None:
    runs = {
        "paper": {
            "0": report(0.5, band=0.6, mask_mean=0.3, ratio=None),
            "1": report(0.7, band=0.8),
            "2": report(0.9, band=0.7, mask_mean=0.5, ratio=0.8),
        },
        "remedies": {"0": report(0.4)},
    }
    summary = summarise(runs)
    assert list(summary) == ["paper", "remedies"]
    paper = summary["paper"]
    assert paper["R1 plain"] == {"mean": 0.7, "sd": 0.2, "n": 3, "values": [0.5, 0.7, 0.9]}
    assert paper["mAP plain"] == {"mean": 0.35, "sd": 0.1, "n": 3, "values": [0.25, 0.35, 0.45]}
    assert paper["R1 band"]["mean"] == 0.7
    assert paper["R1 band"]["sd"] == 0.1  # sqrt((0.01 + 0.01 + 0) / 2)
    # A number missing from a seed (no awareness in seed 1) is left out of its count ...
    assert paper["mask mean"] == {
        "mean": 0.4,
        "sd": round(math.sqrt(0.02), 4),
        "n": 2,
        "values": [0.3, 0.5],
    }
    # ... and so is a None (no occluded image in seed 0); one value has no sd.
    assert paper["band/visible (augmented)"] == {"mean": 0.8, "sd": None, "n": 1, "values": [0.8]}
    # Numbers missing from every seed are absent.
    assert "R1 feature" not in paper
    assert "band/visible (real occluders)" not in paper
    assert set(summary["remedies"]) == {"R1 plain", "mAP plain"}
    assert summary["remedies"]["R1 plain"] == {"mean": 0.4, "sd": None, "n": 1, "values": [0.4]}


def test_summarise_gains_per_seed() -> None:
    runs = {
        "paper": {
            "0": report(0.5, band=0.7),
            "1": report(0.6, band=0.65),
            "2": report(0.8),  # no band row: no gain for this seed
        }
    }
    gain = summarise(runs)["paper"]["gain band"]
    assert gain["values"] == pytest.approx([0.2, 0.05])
    assert gain["n"] == 2
    assert gain["mean"] == pytest.approx(0.125)
    assert gain["sd"] == pytest.approx(round(math.sqrt(2 * 0.075**2), 4))
    assert "gain feature" not in summarise(runs)["paper"]


def test_format_markdown_by_hand() -> None:
    summary = {
        "paper": {
            "band/visible (augmented)": {"mean": 0.8123, "sd": None, "n": 1},
            "R1 plain": {"mean": 0.6, "sd": 0.1, "n": 2},
        },
        "remedies": {"R1 plain": {"mean": 0.55, "sd": 0.05, "n": 2}},
    }
    assert format_markdown(summary).splitlines() == [
        "| number | paper | remedies |",
        "|---|---|---|",
        # In SUMMARY's order; R1 in %, the mask ratio as a fraction; "-" where missing.
        "| R1 plain | 60.0 ± 10.0 (2) | 55.0 ± 5.0 (2) |",
        "| band/visible (augmented) | 0.812 (1) | - |",
    ]


def test_parser_validates_the_variants(capsys) -> None:
    parser = build_parser()
    args, rest = parser.parse_known_args(["--variants", "remedies, paper", "--epochs", "2"])
    assert args.variants == ("remedies", "paper")
    assert rest == ["--epochs", "2"]
    assert parser.parse_args([]).variants == tuple(VARIANTS)
    assert parser.parse_args(["--seeds", "4,7"]).seeds == (4, 7)
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--variants", "paper,nonsense"])
    assert exit_info.value.code == 2
    assert "unknown variants ['nonsense']" in capsys.readouterr().err


def write_evaluation(out: Path, variant: str, seed: int, evaluation: dict) -> None:
    folder = out / variant / f"seed{seed}"
    folder.mkdir(parents=True)
    (folder / "evaluation.json").write_text(json.dumps(evaluation))


def test_collect_summarises_the_evaluations_without_training(tmp_path, monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("--collect must not train or generate data")

    monkeypatch.setattr(study, "train_or_resume", refuse)
    monkeypatch.setattr(study, "generate_synthetic_reid", refuse)
    out = tmp_path / "study"
    write_evaluation(out, "paper", 0, report(0.5, band=0.6))
    write_evaluation(out, "paper", 1, report(0.7, band=0.9))
    write_evaluation(out, "remedies", 1, report(0.8))
    write_evaluation(out, "baseline", 0, report(0.1))  # not a requested variant
    argv = ["--output-dir", str(out), "--collect", "--variants", "paper,remedies"]
    results = study.main([*argv, "--seeds", "0,1,2"])
    assert list(results["runs"]) == ["paper", "remedies"]
    assert list(results["runs"]["paper"]) == ["0", "1"]
    assert list(results["runs"]["remedies"]) == ["1"]
    assert results["runs"]["paper"]["1"] == report(0.7, band=0.9)
    assert results["summary"]["paper"]["R1 plain"] == {
        "mean": 0.6,
        "sd": round(math.sqrt(0.02), 4),
        "n": 2,
        "values": [0.5, 0.7],
    }
    assert results["summary"]["paper"]["R1 band"]["mean"] == 0.75
    assert results["summary"]["remedies"]["R1 plain"]["n"] == 1
    assert results["command"].startswith("python -m examples.oamn.study --output-dir")
    written = json.loads((out / "results.json").read_text())
    assert written == json.loads(json.dumps(results))  # the settings' tuples as lists
    table = (out / "results.md").read_text().splitlines()
    assert table[0] == "| number | paper | remedies |"
    assert "| R1 plain | 60.0 ± 14.1 (2) | 80.0 (1) |" in table
    assert "| R1 band | 75.0 ± 21.2 (2) | - |" in table
    # The gains, per seed then summarised: 0.6 - 0.5 and 0.9 - 0.7.
    assert results["summary"]["paper"]["gain band"] == {
        "mean": 0.15,
        "sd": round(math.sqrt(2 * 0.05**2), 4),
        "n": 2,
        "values": [0.1, 0.2],
    }
    assert "gain band" not in results["summary"]["remedies"]
    assert "| gain band | 15.0 ± 7.1 (2) | - |" in table
    assert sorted(path.name for path in out.iterdir()) == [
        ".lock",  # the study's lock, released (empty)
        "baseline",
        "paper",
        "remedies",
        "results.json",
        "results.md",
    ]
