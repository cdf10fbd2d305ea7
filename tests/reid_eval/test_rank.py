"""evaluate_rank: hand-computed values, and equality with the per-query numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import oamn.reid_eval.metrics
import oamn.reid_eval.ranking
from oamn.reid_eval import RankMetrics, evaluate_rank
from oamn.reid_eval.ranking import GalleryLabels, rank_matches
from tests.conftest import DEVICES

from .reference import random_labels, reference_metrics, relevance_metrics


@pytest.fixture(
    autouse=True,
    params=[
        (kernels, path)
        for kernels in ("numpy", "torch")
        for path in ("keys", "row sort", "counting")
    ],
    ids=lambda p: "-".join(p),
)
def ranking_path(request, monkeypatch) -> tuple[str, str]:
    """Run every test through each way reid_eval.ranking can count the items before a match:
    numpy's CPU kernels or the torch code of other devices, and the candidates' sorted keys,
    the sorted rows, or the histogram of integer distances (chosen by the fraction of
    candidates and the distances, forced here; counting applies where the distances are
    integers, the row sort elsewhere)."""
    kernels, path = request.param
    monkeypatch.setattr(oamn.reid_eval.ranking, "NUMPY_ON_CPU", kernels == "numpy")
    monkeypatch.setattr(oamn.reid_eval.ranking, "DENSE_FRACTION", 2.0 if path == "keys" else -1.0)
    levels = oamn.reid_eval.ranking.MAX_COUNTED_LEVELS if path == "counting" else 0
    monkeypatch.setattr(oamn.reid_eval.ranking, "MAX_COUNTED_LEVELS", levels)
    monkeypatch.setattr(oamn.reid_eval.ranking, "_COUNTING_BLOCK", 4)  # several blocks a row
    return request.param


def single_query(relevance: list[int]) -> tuple[np.ndarray, ...]:
    """One query whose gallery, sorted by distance, has the given relevance vector."""
    relevant = np.array(relevance, dtype=bool)
    g_pids = np.where(relevant, 5, np.arange(10, 10 + len(relevance)))
    return np.arange(len(relevance), dtype=np.float64)[None], np.array([5]), g_pids


@pytest.mark.parametrize(
    ("relevance", "step", "trapezoid", "inp"),
    [
        ([1, 0, 1, 0, 0, 1], 0.722222, 0.677778, 0.5),  # docs/METHOD.md §6
        ([1, 0, 1], 0.833333, 0.791667, 2 / 3),
        ([0, 1], 0.5, 0.25, 0.5),  # first hit below the top: the curve starts at precision 0
        ([1, 1, 1], 1.0, 1.0, 1.0),
    ],
)
def test_method_test_vectors(relevance, step, trapezoid, inp) -> None:
    distmat, q_pids, g_pids = single_query(relevance)
    q_cams, g_cams = np.zeros(1, dtype=int), np.ones(len(relevance), dtype=int)
    steps = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=3)
    trap = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=3, ap="trapezoid")
    assert steps.mAP == pytest.approx(step, abs=1e-6)
    assert trap.mAP == pytest.approx(trapezoid, abs=1e-6)
    assert steps.mINP == pytest.approx(inp)
    assert trap.mINP == pytest.approx(inp)
    # The independent reference agrees on the same vectors.
    assert relevance_metrics(np.array(relevance, dtype=bool)) == pytest.approx(
        (step, trapezoid, inp), abs=1e-6
    )


def test_hand_computed_protocol() -> None:
    # Query 0 (id 1, camera 0) against 6 items in distance order:
    #   g0 id 1 cam 0 -> junk (same camera), g1 id 0 -> distractor (negative), g2 id -1 -> junk,
    #   g3 id 1 cam 1 -> match, g4 id 2 -> negative, g5 id 1 cam 2 -> match.
    # Valid ranking: g1, g3, g4, g5 -> matches at ranks 2 and 4.
    # Query 1 (id 2, camera 1): g4 (id 2, cam 1) is junk, no other id 2 -> skipped.
    # Query 2 (id 0, camera 0): g1 (id 0, cam 1) is a match at rank 1 (distractors are ordinary).
    distmat = np.array([[0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0], [5, 0, 1, 2, 3, 4]], dtype=float)
    g_pids = np.array([1, 0, -1, 1, 2, 1])
    g_cams = np.array([0, 1, 1, 1, 1, 2])
    m = evaluate_rank(distmat, np.array([1, 2, 0]), g_pids, np.array([0, 1, 0]), g_cams, 5)
    assert isinstance(m, RankMetrics)
    assert m.num_valid_queries == 2
    torch.testing.assert_close(m.cmc, torch.tensor([0.5, 1, 1, 1, 1], dtype=torch.float64))
    torch.testing.assert_close(
        m.ap, torch.tensor([(1 / 2 + 2 / 4) / 2, torch.nan, 1.0]), equal_nan=True, check_dtype=False
    )
    torch.testing.assert_close(
        m.inp, torch.tensor([2 / 4, torch.nan, 1.0]), equal_nan=True, check_dtype=False
    )
    assert m.mAP == pytest.approx((0.5 + 1.0) / 2)
    assert m.mINP == pytest.approx((0.5 + 1.0) / 2)
    # Without junk identities, g2 (id -1) becomes a negative before query 0's first match.
    m = evaluate_rank(
        distmat, np.array([1, 2, 0]), g_pids, np.array([0, 1, 0]), g_cams, 5, junk_pids=()
    )
    assert m.ap[0].item() == pytest.approx((1 / 3 + 2 / 5) / 2)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_ties_keep_gallery_order(dtype) -> None:
    # All distances equal: the ranking is the gallery order, matches at ranks 2 and 3.
    g_pids, q_cams, g_cams = np.array([9, 4, 4, 9]), np.array([0]), np.ones(4, int)
    m = evaluate_rank(np.zeros((1, 4), dtype), np.array([4]), g_pids, q_cams, g_cams, 4)
    assert m.ap.item() == pytest.approx((1 / 2 + 2 / 3) / 2)
    torch.testing.assert_close(m.cmc, torch.tensor([0.0, 1, 1, 1], dtype=torch.float64))
    # -0.0 and +0.0 are the same distance, so they tie too.
    distmat = np.array([[0.0, 0.0, -0.0, -0.0]], dtype)
    signed = evaluate_rank(distmat, np.array([4]), g_pids, q_cams, g_cams, 4)
    assert signed.ap.item() == m.ap.item()


def test_cmc_is_padded_after_the_last_valid_item_and_stops_at_the_gallery_size() -> None:
    distmat, q_pids, g_pids = single_query([0, 1, 1, 0])
    g_cams = np.array([1, 1, 0, 1])  # the third item is same-camera junk: 3 valid items
    m = evaluate_rank(distmat, q_pids, g_pids, np.zeros(1, int), g_cams, max_rank=6)
    torch.testing.assert_close(m.cmc, torch.tensor([0.0, 1, 1, 1], dtype=torch.float64))


def reference_case(seed: int) -> tuple[np.ndarray, ...]:
    """A random small problem; three in four have heavy ties, ±0.0 or ±inf distances."""
    rng = np.random.default_rng(seed)
    num_q, num_g = int(rng.integers(1, 40)), int(rng.integers(1, 90))
    num_cams = 1 if seed % 10 == 9 else int(rng.integers(2, 5))  # one camera: all matches junk
    labels = random_labels(rng, num_q, num_g, int(rng.integers(1, 10)), num_cams)
    kind = seed % 4
    if kind == 0:
        distmat = rng.random((num_q, num_g))
    elif kind == 1:  # integer-valued: many ties between matches and negatives
        distmat = rng.integers(0, 4, (num_q, num_g)).astype(np.float32)
    elif kind == 2:
        distmat = rng.choice([-0.0, 0.0, 1.0, np.inf, -np.inf], (num_q, num_g)).astype(np.float32)
    else:
        distmat = rng.integers(0, 3, (num_q, num_g)).astype(np.float16)
    return (distmat, *labels)


def assert_matches_reference(m: RankMetrics, ref, trapezoid: bool = False) -> None:
    assert m.num_valid_queries == ref.num_valid
    # The CMC stops at G (at most the reference's max_rank), where it has reached 1.
    np.testing.assert_allclose(m.cmc.cpu().numpy(), ref.cmc[: m.cmc.numel()], rtol=1e-12)
    np.testing.assert_array_equal(ref.cmc[m.cmc.numel() :], 1.0)
    expected_ap = ref.trapezoid_ap if trapezoid else ref.ap
    np.testing.assert_allclose(m.ap.cpu().numpy(), expected_ap, rtol=1e-12)
    np.testing.assert_allclose(m.inp.cpu().numpy(), ref.inp, rtol=1e-12)
    valid = ~np.isnan(ref.ap)
    assert m.mAP == pytest.approx(expected_ap[valid].mean(), rel=1e-12)
    assert m.mINP == pytest.approx(ref.inp[valid].mean(), rel=1e-12)


@pytest.mark.parametrize("seed", range(120))
def test_equals_reference_on_random_problems(seed: int) -> None:
    distmat, q_pids, g_pids, q_cams, g_cams = reference_case(seed)
    max_rank = 1 + seed % 100  # often longer than the valid gallery
    ref = reference_metrics(distmat, q_pids, g_pids, q_cams, g_cams, max_rank)
    if ref.num_valid == 0:
        with pytest.raises(ValueError, match="no query has a valid match"):
            evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, max_rank)
        return
    assert_matches_reference(evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, max_rank), ref)
    trap = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, max_rank, ap="trapezoid")
    assert_matches_reference(trap, ref, trapezoid=True)


@pytest.mark.parametrize("seed", range(0, 120, 7))
def test_match_ranks_equal_the_stable_argsort(seed: int) -> None:
    distmat, q_pids, g_pids, q_cams, g_cams = reference_case(seed)
    ref = reference_metrics(distmat, q_pids, g_pids, q_cams, g_cams, 1, junk_pids=(-1, 0))
    gallery = GalleryLabels.build(torch.from_numpy(g_pids), torch.from_numpy(g_cams), (-1, 0))
    ranks = rank_matches(
        torch.from_numpy(distmat), torch.from_numpy(q_pids), torch.from_numpy(q_cams), gallery
    )
    for i, expected in enumerate(ref.ranks):
        mine = ranks.rank[ranks.row == i]
        np.testing.assert_array_equal(mine.numpy(), expected)
        np.testing.assert_array_equal(
            ranks.order[ranks.row == i].numpy(), np.arange(1, len(expected) + 1)
        )
        assert ranks.num_matches[i].item() == len(expected)


def test_market_sized_ties_against_reference(monkeypatch) -> None:
    # Few distinct distances over a wide gallery: every match ties with hundreds of negatives.
    monkeypatch.setattr(oamn.reid_eval.ranking, "_TIE_ENTRIES_PER_STEP", 7 * 3000)  # 7 rows a step
    rng = np.random.default_rng(7)
    q_pids, g_pids, q_cams, g_cams = random_labels(rng, 60, 3000, 40, 6)
    distmat = rng.integers(0, 20, (60, 3000)).astype(np.float32)
    ref = reference_metrics(distmat, q_pids, g_pids, q_cams, g_cams, 50)
    assert_matches_reference(evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams), ref)


@pytest.mark.parametrize("offset", [-1000.0, 0.0, 7.0])
def test_integer_distances_far_from_zero(offset: float) -> None:
    # Hamming-like distances of a wide range around an offset: more levels than columns per
    # block, several blocks a row, negative and positive lowest levels.
    rng = np.random.default_rng(int(offset) % 97)
    q_pids, g_pids, q_cams, g_cams = random_labels(rng, 30, 400, 12, 4)
    distmat = (offset + rng.integers(0, 65, (30, 400))).astype(np.float32)
    ref = reference_metrics(distmat, q_pids, g_pids, q_cams, g_cams, 50)
    assert_matches_reference(evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams), ref)


def test_max_rank_beyond_the_gallery_is_sized_by_the_gallery() -> None:
    distmat, q_pids, g_pids, q_cams, g_cams = reference_case(4)
    m = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=10**12)
    assert m.cmc.numel() == distmat.shape[1]
    assert float(m.cmc[-1]) == 1.0


@pytest.mark.parametrize("threads", [1, 3])
def test_row_steps_do_not_change_the_result(monkeypatch, threads: int) -> None:
    # Several steps of 2 rows; with 3 threads, 3 steps are ranked at once (CPU only).
    distmat, q_pids, g_pids, q_cams, g_cams = reference_case(5)  # float32 with ties
    whole = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, 20)
    monkeypatch.setattr(oamn.reid_eval.metrics, "_ENTRIES_PER_STEP", 2 * distmat.shape[1] + 1)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        stepped = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, 20)
    finally:
        torch.set_num_threads(previous)
    torch.testing.assert_close(stepped.ap, whole.ap, equal_nan=True, rtol=0, atol=0)
    torch.testing.assert_close(stepped.cmc, whole.cmc, rtol=0, atol=0)
    assert torch.equal(stepped.first_match, whole.first_match)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_torch_and_numpy_inputs_agree(device: str, dtype: torch.dtype) -> None:
    distmat, q_pids, g_pids, q_cams, g_cams = reference_case(
        1
    )  # integer distances: exact in any dtype
    from_numpy = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, 10)
    as_torch = [torch.from_numpy(a).to(device) for a in (distmat, q_pids, g_pids, q_cams, g_cams)]
    m = evaluate_rank(as_torch[0].to(dtype), *as_torch[1:], 10)
    assert m.cmc.device.type == device
    assert m.ap.device.type == device
    assert m.cmc.dtype == torch.float64
    torch.testing.assert_close(m.ap.cpu(), from_numpy.ap, equal_nan=True, rtol=0, atol=0)
    torch.testing.assert_close(m.cmc.cpu(), from_numpy.cmc, rtol=0, atol=0)
    assert (m.mAP, m.mINP, m.num_valid_queries) == (
        from_numpy.mAP,
        from_numpy.mINP,
        from_numpy.num_valid_queries,
    )


def test_other_integer_label_dtypes_and_read_only_arrays() -> None:
    distmat, q_pids, g_pids, q_cams, g_cams = reference_case(4)
    expected = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, 10)
    distmat = distmat.copy()
    distmat.flags.writeable = False
    m = evaluate_rank(
        distmat,
        q_pids.astype(np.int16),
        g_pids.astype(np.int32),
        q_cams.astype(np.uint8),
        torch.from_numpy(g_cams).int(),
        10,
    )
    torch.testing.assert_close(m.ap, expected.ap, equal_nan=True, rtol=0, atol=0)


@pytest.mark.parametrize("layout", ["transposed tensor", "Fortran-ordered array"])
def test_any_memory_layout_gives_the_same_ranks_without_a_copy_warning(monkeypatch, layout):
    # A transposed or Fortran-ordered matrix (scipy.io.loadmat returns those) once reached
    # torch.searchsorted as non-contiguous sorted rows: torch copied them and warned once per
    # process (so a warning filter alone cannot see it after the first time).
    searchsorted = torch.searchsorted

    def contiguous_only(sorted_sequence, *args, **kwargs):
        assert sorted_sequence.is_contiguous()
        return searchsorted(sorted_sequence, *args, **kwargs)

    monkeypatch.setattr(torch, "searchsorted", contiguous_only)
    for seed in (0, 1, 2, 5):  # float, integer, ±0/±inf and integer distances
        distmat, q_pids, g_pids, q_cams, g_cams = reference_case(seed)
        if layout == "transposed tensor":
            strided = torch.from_numpy(np.ascontiguousarray(distmat.T)).T
        else:
            strided = np.asfortranarray(distmat)
        m = evaluate_rank(strided, q_pids, g_pids, q_cams, g_cams)
        assert_matches_reference(m, reference_metrics(distmat, q_pids, g_pids, q_cams, g_cams, 50))


def test_gradients_are_not_needed_in_the_ranking_threads(monkeypatch) -> None:
    # no_grad does not reach worker threads: a distmat that requires grad once failed there.
    distmat, q_pids, g_pids, q_cams, g_cams = reference_case(8)
    monkeypatch.setattr(oamn.reid_eval.metrics, "_ENTRIES_PER_STEP", 2 * distmat.shape[1])
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        m = evaluate_rank(
            torch.from_numpy(distmat).requires_grad_(), q_pids, g_pids, q_cams, g_cams
        )
    finally:
        torch.set_num_threads(previous)
    assert_matches_reference(m, reference_metrics(distmat, q_pids, g_pids, q_cams, g_cams, 50))


def test_huge_integer_distances_are_ranked_exactly() -> None:
    # Every float32 from 2**24 on is an integer; their levels would not be exact bin indices.
    rng = np.random.default_rng(3)
    q_pids, g_pids, q_cams, g_cams = random_labels(rng, 5, 300, 6, 3)
    for value in (2.0**55, 1e19):
        distmat = np.full((5, 300), value, np.float32)  # one level: all ties, by gallery index
        ref = reference_metrics(distmat, q_pids, g_pids, q_cams, g_cams, 50)
        assert_matches_reference(evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams), ref)


def test_does_not_modify_or_need_gradients() -> None:
    distmat = torch.tensor([[0.3, -0.0, 0.1]], requires_grad=True)
    before = distmat.detach().clone()
    m = evaluate_rank(
        distmat,
        torch.tensor([1]),
        torch.tensor([1, 2, 1]),
        torch.tensor([0]),
        torch.tensor([1, 1, 1]),
        3,
    )
    assert not m.ap.requires_grad
    assert torch.equal(distmat.detach(), before)
    assert torch.signbit(distmat.detach()[0, 1])


def test_first_match_by_hand() -> None:
    # test_hand_computed_protocol's problem: query 0's valid ranking g1, g3, g4, g5 has its first
    # match at rank 2, query 1 has no valid match, query 2's first item g1 is a match.
    distmat = np.array([[0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0], [5, 0, 1, 2, 3, 4]], dtype=float)
    labels = (np.array([1, 2, 0]), np.array([1, 0, -1, 1, 2, 1]))
    cams = (np.array([0, 1, 0]), np.array([0, 1, 1, 1, 1, 2]))
    m = evaluate_rank(distmat, labels[0], labels[1], cams[0], cams[1], 5)
    assert m.first_match.dtype == torch.int64
    assert m.first_match.tolist() == [2, 0, 1]
    # Ranks count after junk removal: without junk identities g2 (id -1) is a negative, and
    # query 0's first match (g3) moves to rank 3.
    m = evaluate_rank(distmat, labels[0], labels[1], cams[0], cams[1], 5, junk_pids=())
    assert m.first_match.tolist() == [3, 0, 1]
    # Beyond max_rank, still the true rank.
    distmat, q_pids, g_pids = single_query([0, 0, 0, 0, 1])
    m = evaluate_rank(distmat, q_pids, g_pids, np.zeros(1, int), np.ones(5, int), max_rank=2)
    assert m.first_match.tolist() == [5]
    torch.testing.assert_close(m.cmc, torch.zeros(2, dtype=torch.float64))


@pytest.mark.parametrize("seed", range(0, 120, 9))
def test_first_match_agrees_with_the_cmc_and_the_reference(seed: int) -> None:
    distmat, q_pids, g_pids, q_cams, g_cams = reference_case(seed)
    max_rank = 1 + seed % 30
    ref = reference_metrics(distmat, q_pids, g_pids, q_cams, g_cams, max_rank)
    if ref.num_valid == 0:
        return
    m = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, max_rank)
    first = m.first_match
    assert first.shape == (len(q_pids),)
    assert first.dtype == torch.int64
    expected = [int(ranks[0]) if len(ranks) else 0 for ranks in ref.ranks]
    assert first.tolist() == expected
    valid = ~m.ap.isnan()
    assert torch.equal(first > 0, valid)  # 0 exactly for the invalid queries
    assert int(valid.sum()) == m.num_valid_queries
    hits = first[valid]
    assert float((hits == 1).double().mean()) == m.cmc[0].item()
    assert m.cmc.numel() == min(max_rank, distmat.shape[1])
    for k in range(1, m.cmc.numel() + 1):
        assert float((hits <= k).double().mean()) == m.cmc[k - 1].item()
