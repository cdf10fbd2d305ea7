"""evaluate_rank_torchreid: torchreid's (cmc, mAP) on hand-computed cases and against an
independent per-query reference of torchreid's Market-1501 loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from oamn.reid_eval import evaluate_rank, evaluate_rank_torchreid

from .reference import random_labels


def torchreid_reference(
    distmat: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    max_rank: int,
) -> tuple[np.ndarray, float]:
    """torchreid's Market-1501 evaluation, one query at a time, as its documentation reads:
    sort the row, drop the same-identity-same-camera items, first-hit CMC cut at
    min(max_rank, G), step AP; queries without a match skipped. Only defined when every valid
    query keeps at least min(max_rank, G) gallery items (torchreid's own loop fails otherwise)."""
    max_rank = min(max_rank, distmat.shape[1])
    curves, aps = [], []
    for i in range(distmat.shape[0]):
        order = np.argsort(distmat[i])  # the test data has no ties: any sort gives this order
        kept = ~((g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i]))
        relevant = g_pids[order][kept] == q_pids[i]
        if not relevant.any():
            continue
        hits = np.cumsum(relevant)
        curves.append(np.minimum(hits, 1)[:max_rank])
        aps.append(np.mean(hits[relevant] / (np.flatnonzero(relevant) + 1)))
    assert curves, "no valid query: torchreid asserts here"
    cmc = np.asarray(curves).astype(np.float32).sum(0) / float(len(curves))
    return cmc, float(np.mean(aps))


def tie_free_case(seed: int, dtype: type) -> tuple[np.ndarray, ...]:
    """Random labels with Market-1501's quirks (identities -1 and 0 in the gallery, absent
    query identities) and distances without a tie in any row."""
    rng = np.random.default_rng(seed)
    num_q, num_g = int(rng.integers(5, 40)), int(rng.integers(20, 120))
    labels = random_labels(rng, num_q, num_g, int(rng.integers(3, 12)), int(rng.integers(2, 5)))
    # Each row a permutation of 0..G-1: distinct values, exact in float32 and float64 alike.
    distmat = rng.permuted(np.tile(np.arange(num_g), (num_q, 1)), axis=1).astype(dtype)
    return (distmat, *labels)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(40))
def test_equals_the_torchreid_reference(seed: int, dtype: type) -> None:
    distmat, q_pids, g_pids, q_cams, g_cams = tie_free_case(seed, dtype)
    # The reference is defined while every query keeps max_rank items: at most G minus the
    # largest number of same-identity-same-camera items removed for one query.
    removed = (q_pids[:, None] == g_pids) & (q_cams[:, None] == g_cams)
    max_rank = min(1 + seed * 3, distmat.shape[1] - int(removed.sum(1).max()))
    expected_cmc, expected_map = torchreid_reference(
        distmat, q_pids, g_pids, q_cams, g_cams, max_rank
    )
    cmc, mAP = evaluate_rank_torchreid(distmat, q_pids, g_pids, q_cams, g_cams, max_rank)
    assert cmc.dtype == np.float32
    np.testing.assert_array_equal(cmc, expected_cmc)
    assert type(mAP) is float
    assert mAP == pytest.approx(expected_map, rel=1e-12)


def test_max_rank_beyond_the_gallery_gives_g_values() -> None:
    distmat, q_pids, g_pids, q_cams, g_cams = tie_free_case(3, np.float64)
    q_cams = np.full_like(q_cams, 99)  # no gallery camera: nothing is removed, G items kept
    expected = torchreid_reference(distmat, q_pids, g_pids, q_cams, g_cams, 10_000)
    cmc, mAP = evaluate_rank_torchreid(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=10_000)
    assert cmc.shape == (distmat.shape[1],)
    np.testing.assert_array_equal(cmc, expected[0])
    assert mAP == pytest.approx(expected[1], rel=1e-12)


DISTMAT = np.array(
    [[0.1, 0.2, 0.3, 0.4, 0.5], [0.5, 0.4, 0.3, 0.2, 0.1], [0.3, 0.1, 0.2, 0.5, 0.4]]
)
G_PIDS, G_CAMS = np.array([1, 2, 1, -1, 2]), np.array([0, 1, 1, 1, 2])
Q_PIDS, Q_CAMS = np.array([1, 2, 9]), np.array([0, 1, 0])


def test_hand_computed_market_protocol() -> None:
    # Query 0 (id 1, camera 0), gallery in distance order g0..g4: g0 (id 1, camera 0) removed,
    #   then g1 (2), g2 (1) hit at rank 2, g3 (-1, an ordinary negative), g4 (2): AP 1/2.
    # Query 1 (id 2, camera 1), order g4..g0: g4 (2, camera 2) hit at rank 1, g1 (2, camera 1)
    #   removed: AP 1. Query 2 (id 9) has no match and is skipped.
    cmc, mAP = evaluate_rank_torchreid(DISTMAT, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, max_rank=3)
    np.testing.assert_array_equal(cmc, np.array([0.5, 1.0, 1.0], dtype=np.float32))
    assert mAP == 0.75
    # Query 0 keeps 4 items of 5: its curve stays at 1 up to min(max_rank, G) = 5.
    cmc, _ = evaluate_rank_torchreid(DISTMAT, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS)
    np.testing.assert_array_equal(cmc, np.array([0.5, 1, 1, 1, 1], dtype=np.float32))


def test_identity_minus_one_is_not_junk() -> None:
    # Gallery in distance order: g1 (id 3), g0 (id -1, another camera). torchreid matches a
    # query of identity -1 with it at rank 2; evaluate_rank drops -1 as Market-1501's junk.
    args = (np.array([[0.2, 0.1]]), np.array([-1]), np.array([-1, 3]), np.array([0]))
    cmc, mAP = evaluate_rank_torchreid(*args, np.array([1, 1]))
    np.testing.assert_array_equal(cmc, np.array([0.0, 1.0], dtype=np.float32))
    assert mAP == 0.5
    with pytest.raises(ValueError, match="no query has a valid match"):
        evaluate_rank(*args, np.array([1, 1]))


def test_dropping_identity_minus_one_gives_evaluate_rank() -> None:
    # What torchreid's Market-1501 loader does before evaluating: then both functions agree.
    distmat, q_pids, g_pids, q_cams, g_cams = tie_free_case(11, np.float64)
    kept = g_pids != -1
    assert not kept.all()
    cmc, mAP = evaluate_rank_torchreid(distmat[:, kept], q_pids, g_pids[kept], q_cams, g_cams[kept])
    m = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=len(cmc))
    np.testing.assert_array_equal(cmc, m.cmc.numpy().astype(np.float32))
    assert mAP == m.mAP


def test_torch_and_list_inputs_and_use_cython_give_the_same() -> None:
    expected_cmc, expected_map = evaluate_rank_torchreid(DISTMAT, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS)
    tensors = [torch.from_numpy(a) for a in (DISTMAT, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS)]
    lists = [a.tolist() for a in (DISTMAT, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS)]
    for args in (tensors, lists):
        for use_cython in (True, False):
            cmc, mAP = evaluate_rank_torchreid(*args, 50, False, use_cython)
            np.testing.assert_array_equal(cmc, expected_cmc)
            assert mAP == expected_map


def test_cuhk03_protocol_is_refused_with_directions() -> None:
    with pytest.raises(NotImplementedError, match=r"single-gallery-shot .* use torchreid itself"):
        evaluate_rank_torchreid(DISTMAT, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, use_metric_cuhk03=True)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"use_metric_cuhk03": 1}, TypeError, "use_metric_cuhk03 must be a bool"),
        ({"use_cython": "yes"}, TypeError, "use_cython must be a bool"),
        ({"max_rank": 0}, ValueError, "max_rank must be >= 1"),
        ({"max_rank": 2.0}, TypeError, "max_rank must be an int"),
        ({"distmat": DISTMAT[0]}, ValueError, r"distmat must have shape \(Q, G\)"),
        ({"g_pids": G_PIDS[:4]}, ValueError, "g_pids has 4 entries, expected 5"),
        ({"q_pids": np.array([7, 8, 9])}, ValueError, "no query has a valid match"),
    ],
)
def test_rejects(kwargs, error, match) -> None:
    args = {
        "distmat": DISTMAT,
        "q_pids": Q_PIDS,
        "g_pids": G_PIDS,
        "q_camids": Q_CAMS,
        "g_camids": G_CAMS,
    }
    with pytest.raises(error, match=match):
        evaluate_rank_torchreid(**{**args, **kwargs})
