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
