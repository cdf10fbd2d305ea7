"""rerank: k-reciprocal re-ranking against an item-by-item reference of the published algorithm,
torchreid's own re_ranking when it is installed, and its invariants."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from oamn.reid_eval import evaluate_rank, pairwise_distance, rerank
from tests.conftest import DEVICES

#: float32 rounding of distances, weights and sums; a wrong neighbour set moves values by ~1e-2.
ATOL = 1e-5


pytestmark = pytest.mark.usefixtures("one_thread")


def reference_rerank(
    q: np.ndarray, g: np.ndarray, metric: str, k1: int, k2: int, lambda_value: float
) -> np.ndarray:
    """The published algorithm item by item, in float64, with sets as Python sets."""
    items = np.concatenate([q, g]).astype(np.float64)
    num_items, num_query = len(items), len(q)
    if metric in ("euclidean", "sqeuclidean"):
        distance = ((items[:, None] - items[None]) ** 2).sum(2)
        distance = np.sqrt(distance) if metric == "euclidean" else distance
    else:
        unit = items / np.linalg.norm(items, axis=1, keepdims=True)
        distance = 1 - unit @ unit.T
    normalised = distance**2 / (distance**2).max(1, keepdims=True)
    ranking = np.argsort(normalised, axis=1, kind="stable")

    def reciprocal_set(i: int, k: int) -> set[int]:
        """Those of the k + 1 nearest items of i that have i among their own k + 1 nearest."""
        return {int(j) for j in ranking[i, : k + 1] if i in ranking[j, : k + 1]}

    half = int(np.round(k1 / 2))  # numpy rounds half to even: 1.5 -> 2, 2.5 -> 2
    half_sets = [reciprocal_set(i, half) for i in range(num_items)]
    encoding = np.zeros((num_items, num_items))
    for i in range(num_items):
        core = reciprocal_set(i, k1)
        expanded = set(core)
        for candidate in core:
            candidate_set = half_sets[candidate]
            if len(candidate_set & core) > 2 / 3 * len(candidate_set):
                expanded |= candidate_set
        members = sorted(expanded)
        weights = np.exp(-normalised[i, members])
        encoding[i, members] = weights / weights.sum()
    if k2 > 1:
        encoding = np.stack([encoding[ranking[i, :k2]].mean(0) for i in range(num_items)])
    jaccard = np.empty((num_query, num_items - num_query))
    for i in range(num_query):
        for j in range(num_query, num_items):
            overlap = np.minimum(encoding[i], encoding[j]).sum()
            jaccard[i, j - num_query] = 1 - overlap / (2 - overlap)
    return (1 - lambda_value) * jaccard + lambda_value * normalised[:num_query, num_query:]


def random_features(seed: int, num_q: int = 15, num_g: int = 45, dim: int = 8):
    """Gaussian features around a few identity centres, so that neighbour sets overlap."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(6, dim)) * 2
    q = centres[rng.integers(0, 6, num_q)] + rng.normal(size=(num_q, dim))
    g = centres[rng.integers(0, 6, num_g)] + rng.normal(size=(num_g, dim))
    return torch.from_numpy(q.astype(np.float32)), torch.from_numpy(g.astype(np.float32))


#: (k1, k2, lambda_value): the paper's; k1 / 2 rounded half to even (1.5 -> 2, 2.5 -> 2,
#: 3.5 -> 4); no query expansion (k2 = 1) and more of it than the k1 + 1 neighbours; lambda 0
#: and 1; k1 = 1; k1 + 1 and k2 beyond the 60 items.
SETTINGS = [
    (20, 6, 0.3),
    (3, 1, 0.0),
    (5, 3, 0.3),
    (7, 2, 0.5),
    (2, 6, 0.3),
    (1, 1, 0.3),
    (9, 2, 1.0),
    (80, 70, 0.3),
]


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine"])
@pytest.mark.parametrize(("k1", "k2", "lambda_value"), SETTINGS)
@pytest.mark.parametrize("seed", range(3))
def test_equals_the_reference(seed: int, k1: int, k2: int, lambda_value: float, metric: str):
    q, g = random_features(seed)
    got = rerank(q, g, k1, k2, lambda_value, metric)
    assert got.dtype == torch.float32
    expected = reference_rerank(q.numpy(), g.numpy(), metric, k1, k2, lambda_value)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=ATOL)


@pytest.mark.parametrize(
    ("dtype", "out_dtype", "atol"),
    [
        (torch.float64, torch.float64, 1e-12),  # float64 throughout
        (torch.float16, torch.float32, ATOL),  # computed in float32 from the exact values
        (torch.bfloat16, torch.float32, ATOL),
    ],
)
def test_dtypes(dtype: torch.dtype, out_dtype: torch.dtype, atol: float) -> None:
    q, g = (f.to(dtype) for f in random_features(3))
    got = rerank(q, g)
    assert got.dtype == out_dtype
    expected = reference_rerank(q.double().numpy(), g.double().numpy(), "euclidean", 20, 6, 0.3)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=atol)


@pytest.mark.parametrize("device", DEVICES)
def test_devices_and_input_kinds(device: str) -> None:
    q, g = random_features(4)
    expected = reference_rerank(q.numpy(), g.numpy(), "cosine", 6, 3, 0.3)
    got = rerank(q.to(device), g.to(device), 6, 3, 0.3, "cosine")
    assert got.device.type == device
    np.testing.assert_allclose(got.cpu().numpy(), expected, rtol=0, atol=ATOL)
    if device == "cpu":
        assert torch.equal(rerank(q.numpy(), g.numpy(), 6, 3, 0.3, "cosine"), got)
        from_lists = rerank(q.tolist(), g.tolist(), 6, 3, 0.3, "cosine")  # Python floats: float64
        np.testing.assert_allclose(from_lists.numpy(), expected, rtol=0, atol=1e-12)


def test_chunk_size_does_not_change_a_bit() -> None:
    # 700 items: three chunks of 256 (sizes 1 and 7 round up to it), two of 512, or one.
    q, g = random_features(5, num_q=200, num_g=500, dim=16)
    expected = rerank(q, g)
    for chunk_size in (1, 7, 300, 5000):
        assert torch.equal(rerank(q, g, chunk_size=chunk_size), expected)


def test_terms_and_their_ranges() -> None:
    q, g = random_features(6)
    items = torch.cat([q, g])
    squared = pairwise_distance(items, items)[: len(q)] ** 2
    normalised = squared[:, len(q) :] / squared.amax(1, keepdim=True)
    # lambda = 1: the normalised squared distances, bit for bit.
    assert torch.equal(rerank(q, g, lambda_value=1.0), normalised)
    # lambda = 0: the Jaccard distance, in [0, 1]; 1 exactly where two encodings are disjoint.
    jaccard = rerank(q, g, lambda_value=0.0)
    assert float(jaccard.min()) >= 0
    assert float(jaccard.max()) == 1.0
    blended = rerank(q, g, lambda_value=0.3)
    torch.testing.assert_close(blended, 0.7 * jaccard + 0.3 * normalised, rtol=0, atol=1e-6)
    assert float(blended.min()) >= 0
    assert float(blended.max()) <= 1


def test_reranked_distances_evaluate() -> None:
    # Two tight identities; the re-ranked distances rank every true match first.
    q, g = random_features(7, num_q=4, num_g=12)
    centres = torch.tensor([[5.0] * 8, [-5.0] * 8])
    q_pids, g_pids = torch.tensor([0, 1, 0, 1]), torch.arange(12) % 2
    q, g = centres[q_pids] + 0.1 * q, centres[g_pids] + 0.1 * g
    metrics = evaluate_rank(rerank(q, g, k1=5, k2=2), q_pids, g_pids, q_pids * 0, g_pids + 1)
    assert metrics.mAP == 1.0


def test_empty_sets() -> None:
    q, g = random_features(8)
    assert rerank(q[:0], g).shape == (0, len(g))
    assert rerank(q, g[:0]).shape == (len(q), 0)


def gallery_bank(g: torch.Tensor, num_types: int = 3) -> torch.Tensor:
    """(T, G, D): slice 0 is ``g``, slice t zeroes feature t - 1 and shifts the others."""
    slices = [g]
    for t in range(1, num_types):
        occluded = g + 0.3 * t
        occluded[:, t - 1] = 0
        slices.append(occluded)
    return torch.stack(slices)


def test_unified_with_one_type_is_the_plain_rerank() -> None:
    q, g = random_features(9)
    bank = gallery_bank(g)
    for t in range(3):
        types = torch.full((len(q),), t)
        assert torch.equal(rerank(q, bank, q_types=types), rerank(q, bank[t]))


def test_unified_reranks_each_type_with_its_own_queries() -> None:
    q, g = random_features(10)
    bank = gallery_bank(g)
    types = torch.from_numpy(np.random.default_rng(0).integers(0, 3, len(q)))
    got = rerank(q, bank, 8, 3, q_types=types)
    expected = torch.empty(len(q), len(g))
    for t in range(3):
        index = torch.nonzero(types == t).squeeze(1)
        expected[index] = rerank(q[index], bank[t], 8, 3)
    assert torch.equal(got, expected)
    # The groups matter: the queries of other types are not in a group's neighbour sets.
    assert not torch.allclose(got, rerank(q, g, 8, 3))


def test_unified_two_sided_query_bank() -> None:
    q, g = random_features(11)
    bank, q_bank = gallery_bank(g), gallery_bank(q)
    types = torch.from_numpy(np.random.default_rng(1).integers(0, 3, len(q)))
    got = rerank(q_bank, bank, q_types=types.tolist())
    for t in range(3):
        index = torch.nonzero(types == t).squeeze(1)
        assert torch.equal(got[index], rerank(q_bank[t, index], bank[t]))


Q, G = random_features(12)
NAN_Q = Q.clone()
NAN_Q[2, 3] = float("nan")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"k1": 0}, ValueError, "k1 must be >= 1"),
        ({"k1": 20.0}, TypeError, "k1 must be an int"),
        ({"k2": True}, TypeError, "k2 must be an int"),
        ({"k2": -1}, ValueError, "k2 must be >= 1"),
        ({"lambda_value": 1.5}, ValueError, r"lambda_value must be in \[0, 1\]"),
        ({"lambda_value": -0.1}, ValueError, r"lambda_value must be in \[0, 1\]"),
        ({"lambda_value": float("nan")}, ValueError, r"lambda_value must be in \[0, 1\]"),
        ({"lambda_value": "0.3"}, TypeError, "lambda_value must be a number"),
        ({"metric": "manhattan"}, ValueError, "metric must be one of"),
        ({"chunk_size": 0}, ValueError, "chunk_size must be >= 1"),
        ({"q_feats": NAN_Q}, ValueError, "q_feats contains NaN"),
        ({"g_feats": G[:, :5]}, ValueError, "last dimension must be the feature size D = 8"),
        ({"g_feats": G.double()}, TypeError, "g_feats is torch.float64 but q_feats"),
        ({"q_feats": Q.long()}, TypeError, "q_feats must be a floating"),
        ({"q_types": torch.zeros(len(Q), dtype=torch.long)}, ValueError, r"\(T, G, D\)"),
    ],
)
def test_rejects(kwargs, error, match) -> None:
    args = {"q_feats": Q, "g_feats": G, **kwargs}
    with pytest.raises(error, match=match):
        rerank(**args)


@pytest.mark.parametrize(
    ("q_types", "error", "match"),
    [
        (torch.tensor([0] * 14 + [3]), ValueError, r"q_types must be in \[0, 3\)"),
        (torch.zeros(4, dtype=torch.long), ValueError, "q_types has 4 entries, expected 15"),
        (torch.zeros(15), TypeError, "q_types must hold integers"),
    ],
)
def test_rejects_bad_types(q_types, error, match) -> None:
    with pytest.raises(error, match=match):
        rerank(Q, gallery_bank(G), q_types=q_types)


def published_re_ranking():
    """torchreid's re_ranking, from its single file (its package's imports need far more)."""
    spec = importlib.util.find_spec("torchreid")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("torchreid is not installed: pip install --no-deps torchreid==0.2.5")
    path = Path(next(iter(spec.submodule_search_locations)), "reid", "utils", "rerank.py")
    if not path.is_file():
        pytest.skip(f"this torchreid has no {path}")
    module_spec = importlib.util.spec_from_file_location("torchreid_rerank", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.re_ranking


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize(("k1", "k2", "lambda_value"), SETTINGS[:4])
def test_equals_torchreid(k1: int, k2: int, lambda_value: float, metric: str) -> None:
    re_ranking = published_re_ranking()
    q, g = random_features(13, num_q=40, num_g=120, dim=16)
    matrices = [pairwise_distance(a, b, metric).numpy() for a, b in ((q, g), (q, q), (g, g))]
    expected = re_ranking(*matrices, k1=k1, k2=k2, lambda_value=lambda_value)
    got = rerank(q, g, k1, k2, lambda_value, metric)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=ATOL)


def test_torchreids_euclidean_is_sqeuclidean_here() -> None:
    q, g = random_features(21, num_q=30, num_g=90, dim=16)
    # torchreid's compute_distance_matrix(q, g, "euclidean"), written out: no square root.
    torchreid_euclidean = (
        q.square().sum(1, keepdim=True) + g.square().sum(1)[None] - 2 * q @ g.T
    ).clamp_min(0)
    torch.testing.assert_close(
        pairwise_distance(q, g, "sqeuclidean"), torchreid_euclidean, rtol=1e-6, atol=1e-5
    )
    # The published re-ranking of those matrices is rerank's "sqeuclidean", not "euclidean".
    expected = reference_rerank(q.numpy(), g.numpy(), "sqeuclidean", 20, 6, 0.3)
    np.testing.assert_allclose(rerank(q, g, metric="sqeuclidean").numpy(), expected, atol=ATOL)
    plain = rerank(q, g, metric="euclidean").numpy()
    assert np.abs(plain - expected).max() > 0.01
