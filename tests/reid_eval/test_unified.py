"""evaluate_unified: each query is ranked against the gallery slice of its occlusion type."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from oamn.reid_eval import evaluate_features, evaluate_rank, evaluate_unified, pairwise_distance
from tests.conftest import DEVICES

from .test_features import DEVICE_RTOL, assert_same_metrics, features_case

NUM_TYPES = 9


def gallery_bank(g: torch.Tensor, seed: int, integer: bool = False) -> torch.Tensor:
    """(9, G, D): slice 0 is ``g``, the others differ from it (zeroed bands, noise)."""
    rng = torch.Generator().manual_seed(seed)
    slices = [g]
    for t in range(1, NUM_TYPES):
        noise = (
            torch.randint(-1, 2, g.shape, generator=rng)
            if integer
            else torch.randn(g.shape, generator=rng)
        )
        occluded = g + noise.to(g.dtype)
        occluded[:, (t - 1) % g.shape[1] :: 4] = 0
        slices.append(occluded)
    return torch.stack(slices)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_all_unoccluded_queries_equal_the_plain_evaluation(metric: str) -> None:
    q, g, q_pids, g_pids, q_cams, g_cams = features_case(10)
    bank = gallery_bank(g, 0)
    types = torch.zeros(len(q), dtype=torch.long)
    plain = evaluate_features(q, g, q_pids, g_pids, q_cams, g_cams, metric, 20, 256)
    unified = evaluate_unified(q, types, bank, q_pids, g_pids, q_cams, g_cams, metric, 20, 256)
    assert_same_metrics(unified, plain)
    # Likewise for any single type t against its own slice.
    plain = evaluate_features(q, bank[5], q_pids, g_pids, q_cams, g_cams, metric, 20, 256)
    unified = evaluate_unified(q, types + 5, bank, q_pids, g_pids, q_cams, g_cams, metric, 20, 256)
    assert_same_metrics(unified, plain)


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean"])
def test_each_query_is_ranked_against_its_own_slice(metric: str) -> None:
    # Integer features make every distance exact, so a row computed alone and a row computed in
    # a group give the same bits; the reference builds the authors' per-type matrices.
    q, g, q_pids, g_pids, q_cams, g_cams = features_case(11, integer=True)
    bank = gallery_bank(g, 1, integer=True)
    types = torch.from_numpy(np.random.default_rng(0).integers(0, NUM_TYPES, len(q)))
    per_type = torch.stack([pairwise_distance(q, bank[t], metric) for t in range(NUM_TYPES)])
    distmat = per_type[types, torch.arange(len(q))]
    expected = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, 25)
    for chunk_size in (1, 256, 1000):
        got = evaluate_unified(
            q, types, bank, q_pids, g_pids, q_cams, g_cams, metric, 25, chunk_size
        )
        assert_same_metrics(got, expected)
    # The slices matter: ranking every query against slice 0 gives other results.
    plain = evaluate_features(q, g, q_pids, g_pids, q_cams, g_cams, metric, 25)
    assert not torch.equal(plain.ap.nan_to_num(), expected.ap.nan_to_num())


def test_groups_equal_plain_evaluations_of_their_queries() -> None:
    q, g, q_pids, g_pids, q_cams, g_cams = features_case(12)
    bank = gallery_bank(g, 2)
    types = torch.from_numpy(np.random.default_rng(1).integers(0, NUM_TYPES, len(q)))
    unified = evaluate_unified(q, types, bank, q_pids, g_pids, q_cams, g_cams, max_rank=10)
    for t in range(NUM_TYPES):
        index = torch.nonzero(types == t).squeeze(1).numpy()
        labels = (q_pids[index], g_pids, q_cams[index], g_cams)
        if np.isnan(unified.ap[index].numpy()).all():
            continue
        alone = evaluate_features(q[index], bank[t], *labels, max_rank=10)
        torch.testing.assert_close(unified.ap[index], alone.ap, rtol=0, atol=0, equal_nan=True)
        torch.testing.assert_close(unified.inp[index], alone.inp, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("device", DEVICES)
def test_numpy_and_device_inputs(device: str) -> None:
    q, g, q_pids, g_pids, q_cams, g_cams = features_case(13, integer=True)
    bank = gallery_bank(g, 3, integer=True)
    types = np.random.default_rng(2).integers(0, NUM_TYPES, len(q))
    expected = evaluate_unified(q.numpy(), types, bank.numpy(), q_pids, g_pids, q_cams, g_cams)
    labels = [torch.from_numpy(a).to(device) for a in (types, q_pids, g_pids, q_cams, g_cams)]
    got = evaluate_unified(q.to(device), labels[0], bank.to(device), *labels[1:])
    assert got.ap.device.type == device
    torch.testing.assert_close(
        got.ap.cpu(), expected.ap, rtol=DEVICE_RTOL[device], atol=0, equal_nan=True
    )


# Two-sided unification: q_feats given as the queries' own (T, Q, D) bank.


def two_sided_case(seed: int):
    """Integer features (exact distances), a query bank and a gallery bank, random query types."""
    q, g, q_pids, g_pids, q_cams, g_cams = features_case(seed, integer=True)
    q_bank = gallery_bank(q, 100 + seed, integer=True)
    g_bank = gallery_bank(g, 200 + seed, integer=True)
    types = torch.from_numpy(np.random.default_rng(seed).integers(0, NUM_TYPES, len(q)))
    return q_bank, types, g_bank, (q_pids, g_pids, q_cams, g_cams)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_two_sided_takes_each_query_under_its_own_type(metric: str) -> None:
    q_bank, types, g_bank, labels = two_sided_case(14)
    chosen = q_bank[types, torch.arange(q_bank.shape[1])]
    expected = evaluate_unified(chosen, types, g_bank, *labels, metric, 20)
    for chunk_size in (1, 256, 1000):
        got = evaluate_unified(q_bank, types, g_bank, *labels, metric, 20, chunk_size)
        assert_same_metrics(got, expected)
    # The query's type matters: the unoccluded queries (one-sided) rank otherwise.
    one_sided = evaluate_unified(q_bank[0], types, g_bank, *labels, metric, 20)
    assert not torch.equal(one_sided.ap.nan_to_num(), expected.ap.nan_to_num())


def test_two_sided_equals_the_per_type_distance_matrices() -> None:
    q_bank, types, g_bank, labels = two_sided_case(15)
    per_type = torch.stack(
        [pairwise_distance(q_bank[t], g_bank[t], "sqeuclidean") for t in range(NUM_TYPES)]
    )
    distmat = per_type[types, torch.arange(len(types))]
    expected = evaluate_rank(distmat, *labels, 25)
    got = evaluate_unified(q_bank, types, g_bank, *labels, "sqeuclidean", 25)
    assert_same_metrics(got, expected)


def test_two_sided_with_the_same_query_under_every_type_is_one_sided() -> None:
    q_bank, types, g_bank, labels = two_sided_case(16)
    q = q_bank[0]
    assert_same_metrics(
        evaluate_unified(q.expand(NUM_TYPES, -1, -1), types, g_bank, *labels),
        evaluate_unified(q, types, g_bank, *labels),
    )


def test_two_sided_by_hand() -> None:
    # Gallery A (id 1) and B (id 2); under type 1 their features swap. Query 0 (id 1, type 1) is
    # [1, 0] unoccluded but [0, 1] under type 1; query 1 (id 2, type 0) is [0, 1].
    # One-sided: query 0 = [1, 0] is at 0 from B = [1, 0] and sqrt(2) from A = [0, 1]: its match
    # comes second, AP 1/2. Two-sided: query 0 = [0, 1] is at 0 from A: AP 1. Query 1 is
    # unoccluded either way: [0, 1] against A = [1, 0], B = [0, 1]: AP 1.
    g_bank = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]])
    q_bank = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]])
    types = torch.tensor([1, 0])
    labels = ([1, 2], [1, 2], [0, 0], [1, 1])
    one_sided = evaluate_unified(q_bank[0], types, g_bank, *labels, max_rank=2)
    two_sided = evaluate_unified(q_bank, types, g_bank, *labels, max_rank=2)
    torch.testing.assert_close(one_sided.ap, torch.tensor([0.5, 1.0], dtype=torch.float64))
    torch.testing.assert_close(one_sided.cmc, torch.tensor([0.5, 1.0], dtype=torch.float64))
    assert one_sided.mAP == pytest.approx(0.75)
    torch.testing.assert_close(two_sided.ap, torch.tensor([1.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(two_sided.cmc, torch.tensor([1.0, 1.0], dtype=torch.float64))
    assert two_sided.mAP == pytest.approx(1.0)
    # Query 1 under type 1 ([1, 0]) is not used: changing it changes nothing.
    changed = q_bank.clone()
    changed[1, 1] = torch.tensor([5.0, -3.0])
    assert_same_metrics(evaluate_unified(changed, types, g_bank, *labels, max_rank=2), two_sided)


def test_two_sided_numpy_and_list_banks() -> None:
    q_bank, types, g_bank, labels = two_sided_case(17)
    expected = evaluate_unified(q_bank, types, g_bank, *labels)
    assert_same_metrics(
        evaluate_unified(q_bank.numpy(), types.numpy(), g_bank.numpy(), *labels), expected
    )
    # Lists go through numpy as float64; the gallery must then be float64 too.
    got = evaluate_unified(q_bank.tolist(), types.tolist(), g_bank.double(), *labels)
    assert_same_metrics(got, expected)


@pytest.mark.parametrize(
    ("q_bank", "q_types", "error", "match"),
    [
        (
            torch.zeros(3, 4, 5),
            [0, 1, 2, 0],
            ValueError,
            r"q_feats as a query bank must have g_bank's 9 types first, got shape \(3, 4, 5\)",
        ),
        (torch.zeros(10, 4, 5), [0, 1, 2, 0], ValueError, "q_feats as a query bank"),
        (torch.zeros(9, 4, 6), [0, 1, 2, 0], ValueError, "feature size D = 6 of q_feats"),
        (
            torch.zeros(9, 4, 5, dtype=torch.float64),
            [0, 1, 2, 0],
            TypeError,
            "g_bank is torch.float32",
        ),
        (
            torch.zeros(9, 4, 5, dtype=torch.long),
            [0, 1, 2, 0],
            TypeError,
            "q_feats must be a floating",
        ),
        (torch.zeros(9, 4, 5), [0, 1, 2], ValueError, "q_types has 3 entries, expected 4"),
        (torch.zeros(9, 4, 5), [0, 1, 9, 0], ValueError, r"q_types must be in \[0, 9\)"),
        (
            torch.zeros(9, 4, 5).index_fill(2, torch.tensor([3]), torch.nan),
            [0, 1, 2, 0],
            ValueError,
            "q_feats contains NaN",
        ),
    ],
)
def test_two_sided_rejects(q_bank, q_types, error, match) -> None:
    g_bank = torch.zeros(NUM_TYPES, 6, 5)
    labels = (np.arange(4), np.arange(6), np.zeros(4, int), np.ones(6, int))
    with pytest.raises(error, match=match):
        evaluate_unified(q_bank, q_types, g_bank, *labels)
