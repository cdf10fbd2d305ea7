"""RankMetrics' str / repr / to_dict, and Python lists accepted wherever arrays are."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from oamn.reid_eval import (
    RankMetrics,
    evaluate_features,
    evaluate_rank,
    evaluate_unified,
    pairwise_distance,
    predict_occlusion_type,
)

from .reference import random_labels


def market_sized(max_rank: int, num_queries: int = 3368, num_valid: int = 3368) -> RankMetrics:
    """Metrics of Market-1501's size with R1 85.2, R5 93.1, R10 95.0 %, mAP 70.3, mINP 40.1."""
    cmc = torch.linspace(0.5, 1.0, max_rank, dtype=torch.float64)
    for rank, value in {1: 0.852, 5: 0.931, 10: 0.95}.items():
        if rank <= max_rank:
            cmc[rank - 1] = value
    ap = torch.full((num_queries,), 0.703, dtype=torch.float64)
    ap[num_valid:] = torch.nan
    inp = torch.where(ap.isnan(), ap, 0.401)
    return RankMetrics(cmc, 0.703, 0.401, ap, inp, num_valid)


def test_str_is_one_line_of_percentages() -> None:
    expected = "R1 85.2 R5 93.1 R10 95.0 mAP 70.3 mINP 40.1 (3,368/3,368 valid queries)"
    assert str(market_sized(50)) == expected
    assert str(market_sized(10)) == expected
    assert str(market_sized(50, num_queries=3400)).endswith("(3,368/3,400 valid queries)")


@pytest.mark.parametrize(
    ("max_rank", "ranks"),
    [(1, "R1 85.2"), (3, "R1 85.2 R3 100.0"), (5, "R1 85.2 R5 93.1"), (7, "R1 85.2 R5 93.1 R7")],
)
def test_str_with_a_short_cmc_shows_its_last_rank(max_rank: int, ranks: str) -> None:
    assert str(market_sized(max_rank)).startswith(ranks + " ")


def test_repr_is_short_and_hides_the_per_query_tensors() -> None:
    m = market_sized(1000, num_queries=20_000, num_valid=19_000)
    text = repr(m)
    assert text == (
        "RankMetrics(R1=0.8520, R5=0.9310, R10=0.9500, mAP=0.7030, mINP=0.4010, "
        "num_valid_queries=19000, num_queries=20000, max_rank=1000)"
    )
    assert len(text) < 160
    # The attributes are unchanged underneath.
    assert m.cmc[0] == 0.852
    assert m.ap.shape == (20_000,)


def test_to_dict_is_plain_python_and_round_trips_through_json() -> None:
    m = market_sized(20, num_queries=5, num_valid=3)
    summary = m.to_dict()
    assert set(summary) == {"cmc", "mAP", "mINP", "num_valid_queries", "num_queries"}
    assert summary["cmc"] == m.cmc.tolist()
    assert (summary["mAP"], summary["mINP"]) == (0.703, 0.401)
    assert (summary["num_valid_queries"], summary["num_queries"]) == (3, 5)
    full = m.to_dict(per_query=True)
    assert full["ap"] == [0.703, 0.703, 0.703, None, None]
    assert full["inp"] == [0.401, 0.401, 0.401, None, None]
    for result in (summary, full):
        assert json.loads(json.dumps(result, allow_nan=False)) == result


def test_to_dict_of_a_real_evaluation_is_json_safe() -> None:
    rng = np.random.default_rng(0)
    q_pids, g_pids, q_cams, g_cams = random_labels(rng, 30, 80, 8, 3)
    m = evaluate_rank(rng.random((30, 80)), q_pids, g_pids, q_cams, g_cams, 20)
    assert m.num_valid_queries < m.num_queries == 30  # some queries are skipped: NaN in ap
    full = json.loads(json.dumps(m.to_dict(per_query=True), allow_nan=False))
    assert full["mAP"] == m.mAP
    assert full["cmc"] == m.cmc.tolist()
    np.testing.assert_array_equal(np.array(full["ap"], dtype=float), m.ap.numpy())
    assert sum(value is None for value in full["inp"]) == 30 - m.num_valid_queries


def labelled_problem(seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    q_feats, g_feats = rng.standard_normal((12, 5)), rng.standard_normal((40, 5))
    return (q_feats, g_feats, *random_labels(rng, 12, 40, 6, 3))


def assert_same_metrics(mine: RankMetrics, expected: RankMetrics) -> None:
    torch.testing.assert_close(mine.cmc, expected.cmc, rtol=0, atol=0)
    torch.testing.assert_close(mine.ap, expected.ap, rtol=0, atol=0, equal_nan=True)
    assert (mine.mAP, mine.mINP) == (expected.mAP, expected.mINP)


@pytest.mark.parametrize("container", [list, tuple])
def test_lists_give_the_numpy_results(container) -> None:
    def as_container(array: np.ndarray):  # Python numbers, nested for 2-D
        values = array.tolist()
        return container(map(container, values)) if array.ndim == 2 else container(values)

    q_feats, g_feats, q_pids, g_pids, q_cams, g_cams = labelled_problem(1)
    labels = (q_pids, g_pids, q_cams, g_cams)
    listed = [as_container(a) for a in labels]
    distmat = pairwise_distance(q_feats, g_feats)
    listed_distmat = pairwise_distance(as_container(q_feats), as_container(g_feats))
    torch.testing.assert_close(listed_distmat, distmat, rtol=0, atol=0)  # float64 both
    expected = evaluate_rank(distmat, *labels, 10)
    assert_same_metrics(evaluate_rank(as_container(distmat.numpy()), *listed, 10), expected)
    assert_same_metrics(
        evaluate_features(as_container(q_feats), as_container(g_feats), *listed, max_rank=10),
        evaluate_features(q_feats, g_feats, *labels, max_rank=10),
    )
    types = np.arange(12) % 2
    bank = np.stack([g_feats, g_feats[::-1]])
    assert_same_metrics(
        evaluate_unified(q_feats, as_container(types), bank, *listed, max_rank=10),
        evaluate_unified(q_feats, types, bank, *labels, max_rank=10),
    )
    scores = [[0.1, 0.8, 0.05, 0.05], [0.4, 0.4, 0.1, 0.1]]
    assert predict_occlusion_type(container(scores)).tolist() == [2, 0]


def test_to_dict_per_query_gives_the_first_matches() -> None:
    distmat = np.array([[0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0], [5, 0, 1, 2, 3, 4]], dtype=float)
    g_pids, g_cams = np.array([1, 0, -1, 1, 2, 1]), np.array([0, 1, 1, 1, 1, 2])
    m = evaluate_rank(distmat, np.array([1, 2, 0]), g_pids, np.array([0, 1, 0]), g_cams, 5)
    assert "first_match" not in m.to_dict()
    full = m.to_dict(per_query=True)
    assert full["first_match"] == [2, 0, 1]
    assert all(type(rank) is int for rank in full["first_match"])
    assert full["ap"][1] is None  # the query with first match 0 is the skipped one
    assert json.loads(json.dumps(full, allow_nan=False)) == full
    # Metrics built by hand without first matches leave the key out.
    assert market_sized(5).first_match is None
    assert "first_match" not in market_sized(5).to_dict(per_query=True)


def test_feature_and_unified_evaluations_fill_the_first_matches() -> None:
    q_feats, g_feats, q_pids, g_pids, q_cams, g_cams = labelled_problem(3)
    labels = (q_pids, g_pids, q_cams, g_cams)
    expected = evaluate_rank(pairwise_distance(q_feats, g_feats), *labels, 10).first_match
    assert (expected == 0).any()  # a non-trivial case: skipped queries,
    assert (expected > 1).any()  # and first matches below the top
    for chunk_size in (1, 5, 100):
        got = evaluate_features(q_feats, g_feats, *labels, max_rank=10, chunk_size=chunk_size)
        assert torch.equal(got.first_match, expected)
    # Unified: each query ranked against its type's slice of the bank.
    bank = np.stack([g_feats, g_feats[::-1] * 2.0, -g_feats])
    types = np.arange(12) % 3
    unified = evaluate_unified(q_feats, types, bank, *labels, max_rank=10, chunk_size=4)
    assert unified.first_match.shape == (12,)
    for t in range(3):
        alone = evaluate_rank(pairwise_distance(q_feats, bank[t]), *labels, 10).first_match
        assert torch.equal(unified.first_match[types == t], alone[types == t])
    valid = unified.first_match > 0
    assert torch.equal(valid, ~unified.ap.isnan())
    assert float((unified.first_match[valid] == 1).double().mean()) == unified.cmc[0].item()
