"""EvaluationSettings: its checks, the evaluate command line generated from it, rank reading."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from examples.oamn import evaluate
from examples.oamn.config import TrainConfig
from examples.oamn.dataclass_cli import command_line_fields, field_values
from examples.oamn.evaluation_settings import DEFAULT_RERANK, EvaluationSettings
from examples.oamn.reporting import TABLE_COLUMNS, rank_accuracies
from oamn.reid_eval import BANK_STRATEGIES, REPORTED_RANKS


def parse(*argv: str) -> EvaluationSettings:
    """The settings ``python -m examples.oamn.evaluate --checkpoint x.pt *argv`` evaluates with
    (before the checkpoint fills what it leaves open)."""
    args = evaluate.build_parser().parse_args(["--checkpoint", "x.pt", *argv])
    return EvaluationSettings(**field_values(args, EvaluationSettings))


def test_the_command_line_defaults_are_the_settings_defaults() -> None:
    assert parse() == EvaluationSettings()
    settings = EvaluationSettings()
    assert settings.strategies == BANK_STRATEGIES
    assert (settings.two_sided, settings.awareness, settings.progress) == (True, True, True)
    assert (settings.awareness_seed, settings.batch_size, settings.workers) == (0, 128, None)
    assert (settings.amp, settings.ap, settings.boundary) == ("auto", "step", "paper")
    assert (settings.rerank, settings.num_figures) == (None, 6)
    assert (settings.metric, settings.max_rank, settings.thresholds) == (
        "euclidean",
        50,
        (0.5, 0.75),
    )
    assert settings.none_weight == 1.0


def test_the_options_of_the_evaluate_command() -> None:
    flags = {flag for action in evaluate.build_parser()._actions for flag in action.option_strings}
    expected = {
        "--checkpoint", "--dataset", "--data-root", "--output", "--figures", "--device",
        "--strategies", "--no-two-sided", "--no-awareness", "--awareness-seed", "--batch-size",
        "--workers", "--amp", "--ap", "--boundary", "--rerank", "--num-figures", "--no-progress",
    }  # fmt: skip
    assert expected <= flags
    # The settings without an option: the checkpoint's, or the paper's.
    options = {spec.name for spec in command_line_fields(EvaluationSettings)}
    hidden = {spec.name for spec in dataclasses.fields(EvaluationSettings)} - options
    assert hidden == {"metric", "max_rank", "thresholds", "none_weight"}


@pytest.mark.parametrize(
    ("argv", "changes"),
    [
        (["--strategies", "none"], {"strategies": ()}),
        (["--strategies", "band, feature"], {"strategies": ("band", "feature")}),
        (["--no-two-sided", "--no-awareness"], {"two_sided": False, "awareness": False}),
        (["--no-progress", "--awareness-seed", "3"], {"progress": False, "awareness_seed": 3}),
        (["--rerank"], {"rerank": DEFAULT_RERANK}),
        (["--rerank", "10,3,0.5"], {"rerank": (10, 3, 0.5)}),
        (["--workers", "2", "--batch-size", "16"], {"workers": 2, "batch_size": 16}),
        (["--workers", "none"], {"workers": None}),
        (["--amp", "bf16", "--ap", "trapezoid"], {"amp": "bf16", "ap": "trapezoid"}),
        (
            ["--boundary", "official", "--num-figures", "2"],
            {"boundary": "official", "num_figures": 2},
        ),
    ],
)
def test_options_set_their_settings(argv, changes) -> None:
    assert parse(*argv) == EvaluationSettings(**changes)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"batch_size": 0}, r"batch_size \(--batch-size\) must be an int >= 1, got 0"),
        ({"workers": -1}, r"workers \(--workers\) must be an int >= 0, got -1"),
        ({"num_figures": 0}, r"num_figures \(--num-figures\) must be an int >= 1"),
        ({"awareness_seed": 0.5}, r"awareness_seed \(--awareness-seed\) must be an int"),
        ({"two_sided": 1}, r"two_sided \(--two-sided\) must be True or False"),
        ({"amp": "fp8"}, r"amp \(--amp\) must be one of \('auto', 'none', 'bf16', 'fp16'\)"),
        ({"boundary": "strict"}, r"boundary \(--boundary\) must be one of"),
        ({"strategies": ("pixels",)}, r"strategies \(--strategies\): unknown bank strategies"),
        ({"strategies": ("band", "band")}, r"strategies \(--strategies\): strategies must not"),
        ({"strategies": "band"}, r"strategies \(--strategies\) must be a list of names"),
        ({"rerank": (20, 0, 0.3)}, r"rerank \(--rerank\) must be \(k1, k2, lambda\)"),
        ({"rerank": (20, 6, 1.5)}, r"rerank \(--rerank\) must be \(k1, k2, lambda\)"),
        ({"metric": "manhattan"}, r"^metric must be one of"),
        ({"max_rank": 5}, rf"^max_rank must be an int >= {max(REPORTED_RANKS)}, got 5"),
        ({"thresholds": (0.5,)}, r"^thresholds must be a \(low, high\) pair"),
        ({"thresholds": (0.5, float("nan"))}, r"^thresholds must be a \(low, high\) pair"),
        ({"thresholds": (0.75, 0.5)}, r"^thresholds must have low <= high"),
        ({"none_weight": 0}, r"^none_weight must be a finite number > 0, got 0.0"),
    ],
)
def test_bad_settings_are_refused_naming_the_option(changes, message) -> None:
    with pytest.raises(ValueError, match=message):
        EvaluationSettings(**changes)


def test_lists_become_tuples_and_the_settings_are_frozen() -> None:
    settings = EvaluationSettings(strategies=["feature"], thresholds=[0.4, 0.8], none_weight=2)
    assert settings.strategies == ("feature",)
    assert settings.thresholds == (0.4, 0.8)
    assert settings.none_weight == 2.0
    assert isinstance(settings.none_weight, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.batch_size = 4  # type: ignore[misc]


def test_the_checkpoint_fills_workers_and_the_none_weight() -> None:
    config = TrainConfig(workers=3, grader_none_weight=0.25)
    filled = EvaluationSettings().for_checkpoint(config)
    assert (filled.workers, filled.loader_workers, filled.none_weight) == (3, 3, 0.25)
    given = EvaluationSettings(workers=0, batch_size=8).for_checkpoint(config)
    assert (given.workers, given.batch_size, given.none_weight) == (0, 8, 0.25)
    assert EvaluationSettings().loader_workers == 0  # no checkpoint: the main process


def test_rank_accuracies_read_the_reported_ranks() -> None:
    cmc = torch.linspace(0.1, 1.0, 10, dtype=torch.float64)
    assert rank_accuracies(cmc) == pytest.approx({"R1": 0.1, "R5": 0.5, "R10": 1.0})
    assert list(rank_accuracies(cmc)) == list(TABLE_COLUMNS[: len(REPORTED_RANKS)])
    # A gallery of 3: R5 and R10 are the last rank, where every valid query has matched.
    assert rank_accuracies(torch.tensor([0.5, 0.75, 1.0])) == {"R1": 0.5, "R5": 1.0, "R10": 1.0}
    assert rank_accuracies(cmc, (2,)) == pytest.approx({"R2": 0.2})
