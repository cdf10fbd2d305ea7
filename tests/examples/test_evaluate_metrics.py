"""evaluate_model / metrics_report: hand-computed metrics, unification routing and the report."""

from __future__ import annotations

import pytest
import torch

from examples.oamn.data import IMAGENET_MEAN, IMAGENET_STD, load_dataset
from examples.oamn.inference import (
    EvaluationFeatures,
    FeatureSet,
    evaluate_model,
    extract_for_evaluation,
    metrics_report,
    occlusion_type_names,
)
from tests.examples.helpers_eval import (
    HALF_TOP_SCORES,
    HEIGHT,
    PLAIN,
    UNIFIED,
    WIDTH,
    ColourModel,
    write_colour_market,
)

METRICS = ("R1", "R5", "R10", "mAP", "mINP")


@pytest.fixture(scope="module")
def colour_market(tmp_path_factory):
    return load_dataset("market1501", write_colour_market(tmp_path_factory.mktemp("colour")))


def one_hot(channels: list[int]) -> torch.Tensor:
    return torch.eye(3)[channels]


def colour_features() -> EvaluationFeatures:
    """The features ColourModel gives the colour market (see helpers_eval), built by hand."""
    uniform = torch.full((4,), 0.25)
    half_top = torch.tensor(HALF_TOP_SCORES)
    query = FeatureSet(
        one_hot([0, 1, 2]),
        torch.stack([half_top, half_top, uniform]),
        torch.tensor([1, 2, 3]),
        torch.tensor([0, 0, 0]),
    )
    rolled = one_hot([1, 1, 2, 2, 0, 0])
    gallery = FeatureSet(
        rolled, uniform.expand(6, 4), torch.tensor([1, 1, 2, 2, 3, 3]), torch.tensor([1, 2] * 3)
    )
    unrolled = one_hot([0, 0, 1, 1, 2, 2])
    mask_swap = rolled.expand(9, -1, -1).clone()
    mask_swap[1] = unrolled
    banks = {"mask_swap": mask_swap, "feature": rolled.expand(9, -1, -1)}
    return EvaluationFeatures(query, gallery, banks, {"mask_swap": 2.5, "feature": 0.5})


def assert_metrics(row: dict, expected: dict) -> None:
    for name in METRICS:
        assert row[name] == pytest.approx(expected[name], abs=1e-12), name


def test_hand_computed_rows() -> None:
    report = metrics_report(colour_features())
    rows = report["rows"]
    assert list(rows) == ["plain", "unified_mask_swap", "unified_feature"]
    assert_metrics(rows["plain"], PLAIN)
    assert_metrics(rows["unified_mask_swap"], UNIFIED)
    assert_metrics(rows["unified_feature"], PLAIN)
    assert rows["plain"]["bank_seconds"] is None
    assert rows["unified_mask_swap"]["bank_seconds"] == 2.5
    assert rows["unified_feature"]["name"] == "unified, feature bank"
    assert rows["plain"]["num_valid_queries"] == 3
    assert len(rows["plain"]["cmc"]) == 50
    assert rows["plain"]["cmc"][:6] == pytest.approx([0, 0, 2 / 3, 2 / 3, 1, 1])


def test_query_types_and_bank_check() -> None:
    report = metrics_report(colour_features())
    assert list(report["query_types"]) == list(occlusion_type_names())
    assert report["query_types"]["half_top"] == 2
    assert report["query_types"]["none"] == 1
    assert sum(report["query_types"].values()) == 3
    assert report["bank_type0_max_abs_diff"] == {"mask_swap": 0.0, "feature": 0.0}
    assert report["num_query"] == 3
    assert report["num_gallery"] == 6


def test_type_thresholds_are_passed_on() -> None:
    # With a threshold above 0.9 the half-top queries are graded "none": everything is plain.
    report = metrics_report(colour_features(), thresholds=(0.95, 0.99))
    assert report["query_types"]["none"] == 3
    assert_metrics(report["rows"]["unified_mask_swap"], PLAIN)
    assert report["settings"]["thresholds"] == [0.95, 0.99]
    # At 0.5 <= 0.9 < 0.95 they are quarter-top (type 5): the bank's slice 5 is the plain one.
    quarter = metrics_report(colour_features(), thresholds=(0.5, 0.95))
    assert quarter["query_types"]["quarter_top"] == 2
    assert_metrics(quarter["rows"]["unified_mask_swap"], PLAIN)


def test_perfect_features_score_one() -> None:
    ids = torch.tensor([5, 6, 7])
    features = torch.eye(3)
    scores = torch.full((3, 4), 0.25)
    query = FeatureSet(features, scores, ids, torch.zeros(3, dtype=torch.int64))
    gallery = FeatureSet(
        features.repeat(2, 1), scores.repeat(2, 1), ids.repeat(2), torch.ones(6, dtype=torch.int64)
    )
    row = metrics_report(EvaluationFeatures(query, gallery))["rows"]["plain"]
    assert_metrics(row, dict.fromkeys(METRICS, 1.0))


def test_trapezoid_ap() -> None:
    # Matches at ranks 3, 4: ((0 + 1/3) / 2 + (1/3 + 2/4) / 2) / 2 = 7/24 (queries 1 and 2);
    # at ranks 5, 6: ((0 + 1/5) / 2 + (1/5 + 2/6) / 2) / 2 = 11/60 (query 3).
    row = metrics_report(colour_features(), ap="trapezoid")["rows"]["plain"]
    assert row["mAP"] == pytest.approx((2 * 7 / 24 + 11 / 60) / 3, abs=1e-12)
    assert row["R1"] == PLAIN["R1"]


def test_evaluate_model_end_to_end(colour_market) -> None:
    model = ColourModel()
    report = evaluate_model(
        model,
        colour_market.query,
        colour_market.gallery,
        height=HEIGHT,
        width=WIDTH,
        device="cpu",
        batch_size=4,
        workers=0,
        progress=False,
    )
    assert_metrics(report["rows"]["plain"], PLAIN)
    assert_metrics(report["rows"]["unified_mask_swap"], UNIFIED)
    assert_metrics(report["rows"]["unified_feature"], PLAIN)
    assert report["query_types"]["half_top"] == 2
    # The query and gallery features are extracted once each, whatever the strategies.
    assert sum(model.batch_sizes) == 3 + 6
    # Each bank got the normalised black as its box fill.
    black = torch.tensor([-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)])
    assert len(model.fills) == 2 * 2  # two batches of the 6 gallery images, two strategies
    for fill in model.fills:
        torch.testing.assert_close(fill, black)
    assert set(report["seconds"]) == {"query", "gallery", "mask_swap", "feature"}
    assert report["rows"]["unified_feature"]["bank_seconds"] == report["seconds"]["feature"]


@pytest.mark.parametrize(
    ("kwargs", "rows"),
    [
        ({"unify": False}, ["plain"]),
        ({"strategies": ()}, ["plain"]),
        ({"strategies": ("feature",)}, ["plain", "unified_feature"]),
        (
            {"strategies": ("feature", "mask_swap")},
            ["plain", "unified_feature", "unified_mask_swap"],
        ),
    ],
)
def test_strategy_selection(colour_market, kwargs, rows) -> None:
    features = extract_for_evaluation(
        ColourModel(),
        colour_market.query,
        colour_market.gallery,
        height=HEIGHT,
        width=WIDTH,
        device="cpu",
        batch_size=8,
        workers=0,
        progress=False,
        **kwargs,
    )
    assert list(metrics_report(features)["rows"]) == rows


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"strategies": ("mask_swap", "pixels")}, r"unknown bank strategies \['pixels'\]"),
        ({"strategies": ("feature", "feature")}, "strategies must not repeat"),
        ({"amp": "int8"}, "amp must be None, .none. or one of"),
        ({"query_items": ()}, "query_items is empty"),
        ({"gallery_items": []}, "gallery_items is empty"),
    ],
)
def test_bad_arguments(colour_market, kwargs, match) -> None:
    arguments = {"query_items": colour_market.query, "gallery_items": colour_market.gallery}
    arguments.update(kwargs)
    model = ColourModel()
    with pytest.raises(ValueError, match=match):
        evaluate_model(
            model, height=HEIGHT, width=WIDTH, device="cpu", batch_size=4, workers=0, **arguments
        )
    assert model.batch_sizes == []  # refused before any extraction


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"max_rank": 5}, "max_rank must be an int >= 10"), ({"ap": "auc"}, "ap must be one of")],
)
def test_bad_report_arguments(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        metrics_report(colour_features(), **kwargs)


def test_type_names_follow_the_convention() -> None:
    assert occlusion_type_names() == (
        "none",
        "half_top",
        "half_bottom",
        "half_left",
        "half_right",
        "quarter_top",
        "quarter_bottom",
        "quarter_left",
        "quarter_right",
    )
