"""evaluate_model / metrics_report: hand-computed metrics, unification routing and the report."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from examples.oamn.data import IMAGENET_MEAN, IMAGENET_STD, load_dataset
from examples.oamn.evaluation import evaluate_model
from examples.oamn.extraction import EvaluationFeatures, FeatureSet, extract_for_evaluation
from examples.oamn.reporting import metrics_report
from oamn.occlusion_aug import OCCLUSION_TYPES
from oamn.reid_eval import evaluate_rank, evaluate_unified, predict_occlusion_type, rerank
from tests.examples.helpers_eval import (
    COLOUR_INPUT,
    DEFAULT_ROWS,
    HALF_TOP_SCORES,
    PLAIN,
    UNIFIED,
    ColourModel,
    colour_settings,
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
    return EvaluationFeatures(query, gallery, banks, seconds={"mask_swap": 2.5, "feature": 0.5})


def two_sided_features() -> EvaluationFeatures:
    """colour_features with the queries' "mask_swap" bank ColourModel gives (type 1 rolls the
    colour back), and no query bank for "feature"."""
    features = colour_features()
    plain = features.query.features
    query_bank = plain.expand(9, -1, -1).clone()
    query_bank[1] = plain.roll(-1, dims=1)
    return dataclasses.replace(features, query_banks={"mask_swap": query_bank})


#: All three queries graded half top (type 1), where ColourModel grades the blue one "none".
TRUE_TYPES = torch.tensor([1, 1, 1])


def assert_metrics(row: dict, expected: dict) -> None:
    for name in METRICS:
        assert row[name] == pytest.approx(expected[name], abs=1e-12), name


def test_hand_computed_rows() -> None:
    report = metrics_report(colour_features())
    rows = report["rows"]
    assert list(rows) == [
        "plain",
        "unified_mask_swap",
        "unified_mask_swap_located",
        "unified_feature",
        "unified_feature_located",
    ]
    assert_metrics(rows["plain"], PLAIN)
    assert_metrics(rows["unified_mask_swap"], UNIFIED)
    assert_metrics(rows["unified_feature"], PLAIN)
    # Located: every query at its largest score, the top column (the blue query's uniform
    # scores tie there), as a half band: all of type 1, where the un-rolled gallery is perfect.
    assert rows["unified_mask_swap_located"]["name"] == "unified, mask swap bank, located types"
    assert_metrics(rows["unified_mask_swap_located"], dict.fromkeys(METRICS, 1.0))
    assert_metrics(rows["unified_feature_located"], PLAIN)
    assert rows["plain"]["bank_seconds"] is None
    assert rows["unified_mask_swap"]["bank_seconds"] == 2.5
    assert rows["unified_feature"]["name"] == "unified, feature bank"
    assert rows["plain"]["num_valid_queries"] == 3
    assert len(rows["plain"]["cmc"]) == 6  # max_rank 50, cut at the gallery's 6 items
    assert rows["plain"]["cmc"][:6] == pytest.approx([0, 0, 2 / 3, 2 / 3, 1, 1])


def test_two_sided_and_true_type_rows() -> None:
    report = metrics_report(two_sided_features(), true_types=TRUE_TYPES)
    rows = report["rows"]
    # Per bank: one-sided, two-sided (only with a query bank), then both under the located
    # and under the true types.
    assert list(rows) == [
        "plain",
        "unified_mask_swap",
        "unified_mask_swap_two_sided",
        "unified_mask_swap_located",
        "unified_mask_swap_two_sided_located",
        "unified_mask_swap_true",
        "unified_mask_swap_two_sided_true",
        "unified_feature",
        "unified_feature_located",
        "unified_feature_true",
    ]
    assert [row["name"] for row in rows.values()] == [
        "no unification",
        "unified, mask swap bank",
        "unified, mask swap bank, two-sided",
        "unified, mask swap bank, located types",
        "unified, mask swap bank, two-sided, located types",
        "unified, mask swap bank, true types",
        "unified, mask swap bank, two-sided, true types",
        "unified, feature bank",
        "unified, feature bank, located types",
        "unified, feature bank, true types",
    ]
    # Without the located rows, the same keys less those.
    focused = metrics_report(two_sided_features(), true_types=TRUE_TYPES, located=False)
    assert list(focused["rows"]) == [key for key in rows if not key.endswith("_located")]
    assert_metrics(rows["plain"], PLAIN)
    assert_metrics(rows["unified_mask_swap"], UNIFIED)
    # Two-sided, the half-top queries are rolled back too: the plain distances (helpers_eval).
    assert_metrics(rows["unified_mask_swap_two_sided"], PLAIN)
    # True types: the blue query is half top too, and the un-rolled gallery matches it first.
    assert_metrics(rows["unified_mask_swap_true"], dict.fromkeys(METRICS, 1.0))
    # ... two-sided it becomes green (identity 2's colour): ranks 5, 6 as without unification.
    assert_metrics(rows["unified_mask_swap_two_sided_true"], PLAIN)
    # The located types are those true types here (test_hand_computed_rows).
    assert_metrics(rows["unified_mask_swap_located"], dict.fromkeys(METRICS, 1.0))
    assert_metrics(rows["unified_mask_swap_two_sided_located"], PLAIN)
    assert_metrics(rows["unified_feature"], PLAIN)
    assert_metrics(rows["unified_feature_true"], PLAIN)
    # Every unified row times its gallery bank; the predicted types are still the reported ones.
    assert {rows[k]["bank_seconds"] for k in rows if k.startswith("unified_mask_swap")} == {2.5}
    assert {rows[k]["bank_seconds"] for k in rows if k.startswith("unified_feature")} == {0.5}
    assert report["query_types"]["half_top"] == 2
    assert report["query_types"]["none"] == 1


def test_two_sided_and_true_type_rows_equal_evaluate_unified() -> None:
    features = two_sided_features()
    query, gallery = features.query, features.gallery
    labels = (query.pids, gallery.pids, query.camids, gallery.camids)
    predicted = torch.tensor([1, 1, 0])  # ColourModel's grades (HALF_TOP_SCORES, uniform)
    bank, query_bank = features.banks["mask_swap"], features.query_banks["mask_swap"]
    rows = metrics_report(features, true_types=TRUE_TYPES)["rows"]
    for key, queries, types in (
        ("unified_mask_swap", query.features, predicted),
        ("unified_mask_swap_two_sided", query_bank, predicted),
        ("unified_mask_swap_true", query.features, TRUE_TYPES),
        ("unified_mask_swap_two_sided_true", query_bank, TRUE_TYPES),
        ("unified_feature_true", query.features, TRUE_TYPES),
    ):
        strategy = "feature" if "feature" in key else "mask_swap"
        expected = evaluate_unified(queries, types, features.banks[strategy], *labels)
        assert rows[key]["mAP"] == pytest.approx(expected.mAP, abs=1e-12), key
        assert rows[key]["mINP"] == pytest.approx(expected.mINP, abs=1e-12), key
        assert rows[key]["cmc"] == pytest.approx(expected.cmc.tolist(), abs=1e-12), key
        assert rows[key]["ap"] == pytest.approx(expected.ap.tolist(), abs=1e-12), key
    # The two-sided row takes each query's own feature under its type: query_bank[types, i].
    own = query_bank[predicted, torch.arange(3)]
    expected = evaluate_unified(own, predicted, bank, *labels)
    assert rows["unified_mask_swap_two_sided"]["ap"] == pytest.approx(expected.ap.tolist())


def test_no_two_sided_or_true_rows_unless_given() -> None:
    plain = metrics_report(colour_features(), true_types=None, located=False)["rows"]
    assert list(plain) == ["plain", "unified_mask_swap", "unified_feature"]
    without_types = metrics_report(two_sided_features(), located=False)["rows"]
    assert list(without_types) == [
        "plain",
        "unified_mask_swap",
        "unified_mask_swap_two_sided",
        "unified_feature",
    ]
    assert not any(key.endswith("_true") for key in without_types)
    # Without banks there is nothing to unify, whatever the true types.
    no_banks = dataclasses.replace(colour_features(), banks={})
    assert list(metrics_report(no_banks, true_types=TRUE_TYPES)["rows"]) == ["plain"]
    # The located rows need no query bank, and come without the two-sided ones.
    located = metrics_report(colour_features())["rows"]
    assert not any(key.endswith(("_two_sided", "_two_sided_located")) for key in located)


def test_query_types_and_bank_check() -> None:
    report = metrics_report(colour_features())
    assert list(report["query_types"]) == list(OCCLUSION_TYPES)
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
    # The located types ignore the thresholds: every query still half top there.
    assert_metrics(report["rows"]["unified_mask_swap_located"], dict.fromkeys(METRICS, 1.0))
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


def test_reported_ranks_are_the_cmc_at_1_5_10() -> None:
    # Query i sits at (100 i, 0) with 12 gallery items at distances 1..12 on its own lane
    # (the other lanes are >= 88 away); its only match is at rank 2, 6 or 11.
    first_hits = (2, 6, 11)
    distances = torch.arange(1.0, 13.0)
    lanes = torch.arange(3.0).repeat_interleave(12) * 100
    gallery_pids = torch.full((36,), 99)
    for lane, rank in enumerate(first_hits):
        gallery_pids[12 * lane + rank - 1] = lane
    scores = torch.full((36, 4), 0.25)
    gallery = FeatureSet(
        torch.stack([lanes + distances.repeat(3), torch.zeros(36)], dim=1),
        scores,
        gallery_pids,
        torch.ones(36, dtype=torch.int64),
    )
    query = FeatureSet(
        torch.stack([torch.arange(3.0) * 100, torch.zeros(3)], dim=1),
        scores[:3],
        torch.arange(3),
        torch.zeros(3, dtype=torch.int64),
    )
    row = metrics_report(EvaluationFeatures(query, gallery))["rows"]["plain"]
    assert (row["R1"], row["R5"], row["R10"]) == pytest.approx((0, 1 / 3, 2 / 3))
    assert row["mAP"] == pytest.approx((1 / 2 + 1 / 6 + 1 / 11) / 3)


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
        **COLOUR_INPUT,
        settings=colour_settings(batch_size=4),
    )
    assert_metrics(report["rows"]["plain"], PLAIN)
    assert_metrics(report["rows"]["unified_mask_swap"], UNIFIED)
    assert_metrics(report["rows"]["unified_feature"], PLAIN)
    assert report["query_types"]["half_top"] == 2
    # The query and gallery features are extracted once each, whatever the strategies.
    assert sum(model.batch_sizes) == 3 + 6
    # Each bank got the normalised black as its box fill.
    black = torch.tensor([-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)])
    # Per strategy (three): two batches of the 6 gallery images and one of the 3 queries.
    assert len(model.fills) == 3 * (2 + 1)
    for fill in model.fills:
        torch.testing.assert_close(fill, black)
    assert set(report["seconds"]) == {
        "query", "gallery", "mask_swap", "feature", "band",
        "mask_swap_query", "feature_query", "band_query",
    }  # fmt: skip
    assert report["rows"]["unified_feature"]["bank_seconds"] == report["seconds"]["feature"]
    # The default strategies, each one- and two-sided, under the grader's then the located
    # types (see helpers_eval and test_hand_computed_rows for the figures).
    assert list(report["rows"]) == DEFAULT_ROWS
    assert_metrics(report["rows"]["unified_mask_swap_located"], dict.fromkeys(METRICS, 1.0))
    for key, row in report["rows"].items():
        if key not in ("unified_mask_swap", "unified_mask_swap_located"):
            assert_metrics(row, PLAIN)


@pytest.mark.parametrize(
    ("kwargs", "rows"),
    [
        ({"strategies": (), "two_sided": False}, ["plain"]),
        ({"strategies": ()}, ["plain"]),
        ({"strategies": ("feature",)}, ["plain", "unified_feature", "unified_feature_two_sided"]),
        ({"strategies": ("feature",), "two_sided": False}, ["plain", "unified_feature"]),
        (
            {"strategies": ("feature", "mask_swap"), "two_sided": False},
            ["plain", "unified_feature", "unified_mask_swap"],
        ),
        (
            {"strategies": ("band", "mask_swap")},
            [
                "plain",
                "unified_band",
                "unified_band_two_sided",
                "unified_mask_swap",
                "unified_mask_swap_two_sided",
            ],
        ),
    ],
)
def test_strategy_selection(colour_market, kwargs, rows) -> None:
    features = extract_for_evaluation(
        ColourModel(),
        colour_market.query,
        colour_market.gallery,
        **COLOUR_INPUT,
        settings=colour_settings(batch_size=8, **kwargs),
    )
    assert list(metrics_report(features, located=False)["rows"]) == rows
    two_sided = [r.removeprefix("unified_") for r in rows if r.endswith("_two_sided")]
    assert list(features.query_banks) == [r.removesuffix("_two_sided") for r in two_sided]
    for bank in features.query_banks.values():
        assert bank.shape == (9, 3, 3)  # 9 types x 3 queries x 3 colour features


def test_query_banks_are_the_queries_banks(colour_market) -> None:
    features = extract_for_evaluation(
        ColourModel(),
        colour_market.query,
        colour_market.gallery,
        **COLOUR_INPUT,
        settings=colour_settings(batch_size=8, strategies=("mask_swap",)),
    )
    expected = two_sided_features()  # built by hand from ColourModel's bank
    torch.testing.assert_close(features.query_banks["mask_swap"], expected.query_banks["mask_swap"])
    torch.testing.assert_close(features.banks["mask_swap"], expected.banks["mask_swap"])
    assert set(features.seconds) == {"query", "gallery", "mask_swap", "mask_swap_query"}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"strategies": ("mask_swap", "pixels")}, r"unknown bank strategies \['pixels'\]"),
        ({"strategies": ("feature", "feature")}, "strategies must not repeat"),
        ({"amp": "int8"}, r"amp \(--amp\) must be one of .*auto.*"),
        ({"query_items": ()}, "query_items is empty"),
        ({"gallery_items": []}, "gallery_items is empty"),
    ],
)
def test_bad_arguments(colour_market, kwargs, match) -> None:
    arguments = {"query_items": colour_market.query, "gallery_items": colour_market.gallery}
    settings = {name: value for name, value in kwargs.items() if name not in arguments}
    arguments.update({name: value for name, value in kwargs.items() if name in arguments})
    model = ColourModel()
    with pytest.raises(ValueError, match=match):  # the settings' errors on their construction
        evaluate_model(
            model, **arguments, **COLOUR_INPUT, settings=colour_settings(batch_size=4, **settings)
        )
    assert model.batch_sizes == []  # refused before any extraction


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"max_rank": 5}, "max_rank must be an int >= 10"), ({"ap": "auc"}, "ap must be one of")],
)
def test_bad_report_arguments(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        metrics_report(colour_features(), **kwargs)


def test_reranked_rows_rank_the_reranked_distances() -> None:
    features = two_sided_features()
    report = metrics_report(features, located=False, rerank=(2, 1, 0.5))
    rows = report["rows"]
    assert list(rows) == [
        "plain",
        "plain_reranked",
        "unified_mask_swap",
        "unified_mask_swap_reranked",
        "unified_mask_swap_two_sided",
        "unified_mask_swap_two_sided_reranked",
        "unified_feature",
        "unified_feature_reranked",
    ]
    assert report["settings"]["rerank"] == [2, 1, 0.5]
    query, gallery = features.query, features.gallery
    labels = (query.pids, gallery.pids, query.camids, gallery.camids)
    types = predict_occlusion_type(query.grader_scores, (0.5, 0.75), "paper")
    expected = {
        "plain_reranked": rerank(query.features, gallery.features, 2, 1, 0.5),
        "unified_mask_swap_reranked": rerank(
            query.features, features.banks["mask_swap"], 2, 1, 0.5, q_types=types
        ),
        "unified_mask_swap_two_sided_reranked": rerank(
            features.query_banks["mask_swap"], features.banks["mask_swap"], 2, 1, 0.5, q_types=types
        ),
    }
    for key, distances in expected.items():
        metrics = evaluate_rank(distances, *labels)
        assert rows[key]["mAP"] == pytest.approx(metrics.mAP, abs=1e-12), key
        assert rows[key]["R1"] == pytest.approx(float(metrics.cmc[0]), abs=1e-12), key
    assert rows["unified_mask_swap_reranked"]["name"] == "unified, mask swap bank, re-ranked"
    assert rows["unified_mask_swap_reranked"]["bank_seconds"] == 2.5
    # Without rerank, the same report has none of these rows.
    assert not any("reranked" in key for key in metrics_report(features)["rows"])
