"""pairwise_distance and evaluate_features: the chunked path equals the full-matrix path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import oamn.reid_eval.metrics
import oamn.reid_eval.ranking
from oamn.reid_eval import METRICS, evaluate_features, evaluate_rank, pairwise_distance
from oamn.reid_eval.distances import ROW_BLOCK
from tests.conftest import DEVICES

from .reference import random_labels, reference_metrics

#: CUDA sums each query's precisions in float64 with atomic adds (``index_add_``), in no fixed
#: order, so an AP may differ from the CPU's in its last bits (seen: 3.5e-16 relative on an H200).
DEVICE_RTOL = {"cpu": 0.0, "cuda": 1e-14}


def assert_same_metrics(a, b) -> None:
    """Bit-identical results (the same ranking gives the same floating-point operations)."""
    torch.testing.assert_close(a.cmc, b.cmc, rtol=0, atol=0)
    torch.testing.assert_close(a.ap, b.ap, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(a.inp, b.inp, rtol=0, atol=0, equal_nan=True)
    assert (a.mAP, a.mINP, a.num_valid_queries) == (b.mAP, b.mINP, b.num_valid_queries)


def features_case(
    seed: int, num_q: int = 150, num_g: int = 260, dim: int = 24, integer: bool = False
):
    """Features with identity structure (class centre + noise), or small integers (exact GEMM)."""
    rng = np.random.default_rng(seed)
    q_pids, g_pids, q_cams, g_cams = random_labels(rng, num_q, num_g, 20, 4)
    if integer:
        q = rng.integers(-2, 3, (num_q, dim)).astype(np.float32)
        g = rng.integers(-2, 3, (num_g, dim)).astype(np.float32)
    else:
        centres = rng.normal(size=(30, dim))
        q = (centres[q_pids % 30] + rng.normal(size=(num_q, dim))).astype(np.float32)
        g = (centres[g_pids % 30] + rng.normal(size=(num_g, dim))).astype(np.float32)
    return torch.from_numpy(q), torch.from_numpy(g), q_pids, g_pids, q_cams, g_cams


def test_pairwise_distance_definitions() -> None:
    q, g, *_ = features_case(0, 40, 70)
    q, g = q.double(), g.double()
    euclidean = torch.cdist(q, g)
    torch.testing.assert_close(pairwise_distance(q, g), euclidean)
    torch.testing.assert_close(pairwise_distance(q, g, "sqeuclidean"), euclidean**2)
    cosine = 1 - F.cosine_similarity(q[:, None], g[None], dim=2)
    torch.testing.assert_close(pairwise_distance(q, g, "cosine"), cosine)
    # Identical rows are at distance exactly 0, never a tiny negative or NaN.
    assert torch.equal(
        pairwise_distance(g[:3], g[:3]).diagonal(), torch.zeros(3, dtype=torch.float64)
    )


def test_pairwise_distance_rows_do_not_depend_on_the_rest_of_the_queries() -> None:
    # BLAS results for a row depend on the matrix shapes (with MKL at D = 2048, a product of
    # 1000 rows and one of 256 differ in the last bits): rows are computed in aligned blocks.
    q, g, *_ = features_case(1, 4 * ROW_BLOCK - 24, 300, dim=2048)
    full = pairwise_distance(q, g)
    starts = range(0, len(q), ROW_BLOCK)
    blocks = torch.cat([pairwise_distance(q[s : s + ROW_BLOCK], g) for s in starts])
    assert torch.equal(full, blocks)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("integer", [False, True])
def test_features_equal_rank_of_the_full_matrix(metric: str, integer: bool) -> None:
    q, g, q_pids, g_pids, q_cams, g_cams = features_case(2, integer=integer)
    full = evaluate_rank(pairwise_distance(q, g, metric), q_pids, g_pids, q_cams, g_cams, 30)
    for chunk_size in (1, ROW_BLOCK, ROW_BLOCK + 1, 2 * ROW_BLOCK, 5000):
        chunked = evaluate_features(q, g, q_pids, g_pids, q_cams, g_cams, metric, 30, chunk_size)
        assert_same_metrics(chunked, full)


def test_chunks_ranked_in_several_steps(monkeypatch) -> None:
    q, g, q_pids, g_pids, q_cams, g_cams = features_case(6)
    full = evaluate_rank(pairwise_distance(q, g), q_pids, g_pids, q_cams, g_cams, 30)
    monkeypatch.setattr(oamn.reid_eval.metrics, "_ENTRIES_PER_STEP", 3 * g.shape[0] + 1)
    chunked = evaluate_features(q, g, q_pids, g_pids, q_cams, g_cams, max_rank=30, chunk_size=128)
    assert_same_metrics(chunked, full)


def test_features_pass_ap_and_junk_options() -> None:
    q, g, q_pids, g_pids, q_cams, g_cams = features_case(3)
    distmat = pairwise_distance(q, g, "cosine")
    for kwargs in ({"ap": "trapezoid"}, {"junk_pids": ()}, {"junk_pids": (-1, 0)}):
        expected = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, 10, **kwargs)
        got = evaluate_features(q, g, q_pids, g_pids, q_cams, g_cams, "cosine", 10, **kwargs)
        assert_same_metrics(got, expected)


@pytest.mark.parametrize("device", DEVICES)
def test_numpy_float64_and_device_inputs(device: str) -> None:
    q, g, q_pids, g_pids, q_cams, g_cams = features_case(4, integer=True)
    expected = evaluate_features(q, g, q_pids, g_pids, q_cams, g_cams, "sqeuclidean")
    from_numpy = evaluate_features(
        q.double().numpy(), g.double().numpy(), q_pids, g_pids, q_cams, g_cams, "sqeuclidean"
    )
    assert_same_metrics(from_numpy, expected)
    labels = [torch.from_numpy(a).to(device) for a in (q_pids, g_pids, q_cams, g_cams)]
    on_device = evaluate_features(q.to(device), g.to(device), *labels, "sqeuclidean")
    assert on_device.ap.device.type == device
    torch.testing.assert_close(
        on_device.ap.cpu(), expected.ap, rtol=DEVICE_RTOL[device], atol=0, equal_nan=True
    )


def test_identity_structure_is_found() -> None:
    # Sanity check of the whole path: well-separated identities are retrieved perfectly.
    q, g, q_pids, g_pids, q_cams, g_cams = features_case(5)
    centres = torch.randn(40, 24, generator=torch.Generator().manual_seed(0)) * 10
    q = centres[torch.from_numpy(q_pids) % 40] + 0.01 * q
    g = centres[torch.from_numpy(g_pids) % 40] + 0.01 * g
    m = evaluate_features(q, g, q_pids, g_pids, q_cams, g_cams, junk_pids=())
    assert m.mAP == 1.0
    assert m.mINP == 1.0
    assert torch.all(m.cmc == 1.0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_16_bit_features_are_compared_in_float32(dtype: torch.dtype) -> None:
    # Norms of about 300 in D = 2048: the squared norms (9e4) overflow float16 (max 65504),
    # which once turned every distance into inf and rank-1 from 1.0 into chance.
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(40, 2048, generator=generator) * 6.6
    g_feats = (centres + 0.3 * torch.randn(40, 2048, generator=generator)).to(dtype)
    q_feats = (centres + 0.3 * torch.randn(40, 2048, generator=generator)).to(dtype)
    assert float(q_feats.float().norm(dim=1).min()) > 256
    ids, q_cams, g_cams = torch.arange(40), torch.zeros(40), torch.ones(40)
    distances = pairwise_distance(q_feats, g_feats)
    assert distances.dtype == torch.float32
    torch.testing.assert_close(distances, pairwise_distance(q_feats.float(), g_feats.float()))
    for metric in METRICS:
        m = evaluate_features(q_feats, g_feats, ids, ids, q_cams.long(), g_cams.long(), metric)
        assert m.cmc[0].item() == 1.0
        assert m.mAP == 1.0


@pytest.mark.parametrize("metric", METRICS)
def test_distances_and_metrics_are_unchanged_under_autocast(metric: str) -> None:
    # Autocast lowers matrix products to bfloat16; the evaluator's stay float32 (out= products),
    # so evaluating inside a model's autocast block changes no bit of any distance or metric.
    generator = torch.Generator().manual_seed(0)
    q_feats, g_feats = torch.randn(300, 64, generator=generator), torch.randn(500, 64)
    q_pids, g_pids = torch.randint(20, (300,)), torch.randint(20, (500,))
    q_cams, g_cams = torch.zeros(300, dtype=torch.long), torch.ones(500, dtype=torch.long)
    expected = pairwise_distance(q_feats, g_feats, metric)
    metrics = evaluate_features(q_feats, g_feats, q_pids, g_pids, q_cams, g_cams, metric)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert (q_feats @ g_feats.T).dtype == torch.bfloat16
        distances = pairwise_distance(q_feats, g_feats, metric)
        under_autocast = evaluate_features(
            q_feats, g_feats, q_pids, g_pids, q_cams, g_cams, metric, chunk_size=256
        )
    assert distances.dtype == torch.float32
    assert torch.equal(distances, expected)
    assert_same_metrics(under_autocast, metrics)


def test_progress_reports_every_chunk(capsys) -> None:
    q, g, *labels = features_case(3, num_q=600)
    calls = []
    evaluate_features(q, g, *labels, chunk_size=256, progress=lambda *args: calls.append(args))
    assert calls == [(256, 600), (512, 600), (600, 600)]
    evaluate_features(q, g, *labels, progress=True)
    line = capsys.readouterr().err.split("\r")[-1]
    assert line.startswith("reid_eval: 600/600 queries ranked (100%), ")
    assert line.endswith(" s\n")


def test_default_settings_choose_each_ranking_path(monkeypatch) -> None:
    # No path forced: a good model's few candidates are keyed, a weak model's rows sorted,
    # integer distances counted; each gives the reference's metrics.
    calls = []
    for name in ("_items_before_by_row_sort", "_items_before_by_counting"):
        original = getattr(oamn.reid_eval.ranking, name)
        spy = lambda *args, name=name, original=original: calls.append(name) or original(*args)  # noqa: E731
        monkeypatch.setattr(oamn.reid_eval.ranking, name, spy)
    rng = np.random.default_rng(11)
    q_pids, g_pids, q_cams, g_cams = random_labels(rng, 40, 600, 15, 4)
    same = q_pids[:, None] == g_pids
    good = np.where(same, 0.0, 1.0) + rng.random((40, 600))  # matches first
    weak = rng.random((40, 600))
    for distmat, expected in (
        (good, []),
        (weak, ["_items_before_by_row_sort"]),
        (np.floor(weak * 20), ["_items_before_by_counting"]),
    ):
        calls.clear()
        m = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams)
        assert set(calls) == set(expected)  # once per step of rows
        ref = reference_metrics(distmat, q_pids, g_pids, q_cams, g_cams, 50)
        np.testing.assert_allclose(m.ap.numpy(), ref.ap, rtol=1e-12)
        np.testing.assert_allclose(m.cmc.numpy(), ref.cmc, rtol=1e-12)
