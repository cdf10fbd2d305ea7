"""IdentitySampler: P distinct ids x K images, whole epochs, determinism and sharding."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest
import torch

from examples.oamn.data import IdentitySampler

# Identity sizes chosen to exercise every case: n < K, n == K, n not a multiple of K, large n.
SIZES = [1, 2, 3, 4, 5, 9, 2, 1, 14, 6, 7, 3]


def _labels(sizes=SIZES, offset=100) -> np.ndarray:
    # Non-contiguous ids, interleaved in the dataset order.
    labels = np.repeat(np.arange(len(sizes)) * 3 + offset, sizes)
    return np.random.default_rng(1).permutation(labels)


def _epoch(sampler: IdentitySampler, epoch: int = 0) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return list(sampler)


@pytest.mark.parametrize(("p", "k"), [(4, 2), (3, 4), (12, 1), (5, 3)])
def test_batches_hold_p_distinct_ids_times_k(p: int, k: int) -> None:
    labels = _labels()
    sampler = IdentitySampler(labels, ids_per_batch=p, instances_per_id=k, seed=3)
    for epoch in range(3):
        batches = _epoch(sampler, epoch)
        assert len(batches) == len(sampler)
        for batch in batches:
            ids = labels[np.array(batch)].reshape(p, k)
            # id-major layout: each row of K shares one id, and the P rows are distinct ids.
            assert (ids == ids[:, :1]).all()
            assert len(set(ids[:, 0])) == p


@pytest.mark.parametrize(("p", "k"), [(4, 2), (3, 4), (5, 3)])
def test_every_chunk_used_once_per_epoch(p: int, k: int) -> None:
    labels = _labels()
    sampler = IdentitySampler(labels, ids_per_batch=p, instances_per_id=k, seed=0)
    ids, counts = np.unique(labels, return_counts=True)
    chunks = np.maximum(1, counts // k)
    # B = max(ceil(C / P), max chunks): the epoch length written out by hand.
    expected_batches = max(-(-chunks.sum() // p), chunks.max())
    assert len(sampler) == expected_batches
    for epoch in range(3):
        batches = np.array(_epoch(sampler, epoch))
        uses = Counter(labels[batches[:, ::k]].ravel().tolist())
        for pid, count, chunk_count in zip(ids.tolist(), counts, chunks, strict=True):
            # Every id appears; each of its chunks once, more only as a filler.
            assert uses[pid] >= chunk_count
            taken = batches.ravel()[labels[batches.ravel()] == pid]
            if count >= k:
                # Its first c*K draws are distinct images (no image repeated within its chunks).
                assert len(set(taken[: chunk_count * k].tolist())) == chunk_count * k
            else:
                assert set(taken.tolist()) == set(np.flatnonzero(labels == pid).tolist())


def test_short_ids_are_resampled_with_replacement() -> None:
    # Id 0 has 2 images for K = 5: its chunk holds both, plus 3 draws with replacement.
    labels = np.array([0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2])
    sampler = IdentitySampler(labels, ids_per_batch=2, instances_per_id=5, seed=0)
    splits = set()
    for epoch in range(30):
        rows = np.array(_epoch(sampler, epoch)).reshape(-1, 5)
        for row in rows[labels[rows[:, 0]] == 0]:
            counts = np.bincount(row, minlength=2)
            assert counts[0] >= 1
            assert counts[1] >= 1
            splits.add(tuple(sorted(counts[:2].tolist())))
    # Both (1, 4) and (2, 3) occur: the extra draws are random, not a repeated image.
    assert splits == {(1, 4), (2, 3)}


def test_deterministic_in_seed_and_epoch() -> None:
    labels = _labels()
    first = IdentitySampler(labels, 4, 2, seed=7)
    second = IdentitySampler(labels.tolist(), 4, 2, seed=7)
    assert _epoch(first, 5) == _epoch(second, 5)
    assert _epoch(first, 5) == _epoch(first, 5)
    assert _epoch(first, 5) != _epoch(first, 6)
    assert _epoch(first, 5) != _epoch(IdentitySampler(labels, 4, 2, seed=8), 5)


@pytest.mark.parametrize("replicas", [2, 3, 5])
@pytest.mark.parametrize("drop_last", [False, True])
def test_shards_are_disjoint_and_equal(replicas: int, drop_last: bool) -> None:
    labels = _labels()
    single = IdentitySampler(labels, 4, 2, seed=2)
    shards = [
        IdentitySampler(labels, 4, 2, seed=2, num_replicas=replicas, rank=r, drop_last=drop_last)
        for r in range(replicas)
    ]
    per_rank = [_epoch(shard, 4) for shard in shards]
    lengths = {len(batches) for batches in per_rank}
    assert lengths == {len(shards[0])}
    epoch = _epoch(single, 4)
    whole = len(epoch) // replicas if drop_last else -(-len(epoch) // replicas)
    assert len(shards[0]) == whole
    # Rank r holds global batches r, r + R, ...: interleaving the ranks gives back the epoch.
    interleaved = [per_rank[i % replicas][i // replicas] for i in range(replicas * whole)]
    assert interleaved[: len(epoch)] == epoch[: replicas * whole]
    # Padding batches (not in the single-process epoch) are valid P x K batches too.
    for batch in interleaved[len(epoch) :]:
        ids = labels[np.array(batch)].reshape(4, 2)
        assert len(set(ids[:, 0])) == 4
        assert (ids == ids[:, :1]).all()


def test_independent_of_global_random_state() -> None:
    labels = _labels()
    # The legacy global states are perturbed on purpose: the sampler must not read them.
    np.random.seed(0)  # noqa: NPY002
    random.seed(0)
    torch.manual_seed(0)
    before = _epoch(IdentitySampler(labels, 4, 2, seed=1))
    np.random.seed(123)  # noqa: NPY002
    random.seed(123)
    torch.manual_seed(123)
    assert _epoch(IdentitySampler(labels, 4, 2, seed=1)) == before


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"ids_per_batch": 13}, ValueError, "ids_per_batch=13 exceeds the 12 identities"),
        ({"ids_per_batch": 0}, ValueError, "ids_per_batch must be >= 1"),
        ({"instances_per_id": 0}, ValueError, "instances_per_id must be >= 1"),
        ({"instances_per_id": 2.0}, TypeError, "instances_per_id must be an int"),
        ({"num_replicas": 0}, ValueError, "num_replicas must be >= 1"),
        ({"rank": 2, "num_replicas": 2}, ValueError, r"rank must be in \[0, num_replicas=2\)"),
        ({"seed": -1}, ValueError, "seed must be >= 0"),
        ({"labels": []}, ValueError, "labels must be a non-empty 1-D sequence"),
        ({"labels": [[0, 1]]}, ValueError, "labels must be a non-empty 1-D sequence"),
        ({"labels": [0.0, 1.0]}, TypeError, "labels must be integers"),
        ({"labels": [-1, 0, 1]}, ValueError, "junk images"),
        (
            {"labels": [0, 1], "ids_per_batch": 2, "num_replicas": 2, "drop_last": True},
            ValueError,
            "drop_last=True leaves no batch",
        ),
    ],
)
def test_errors(kwargs, error, match) -> None:
    arguments = {"labels": _labels(), "ids_per_batch": 4, "instances_per_id": 2, **kwargs}
    with pytest.raises(error, match=match):
        IdentitySampler(**arguments)


def test_bad_epoch() -> None:
    with pytest.raises(ValueError, match="epoch must be an int >= 0"):
        IdentitySampler([0, 1], 2, 1).set_epoch(-1)


def test_market_sized_epoch_is_fast() -> None:
    import time

    labels = np.repeat(np.arange(751), np.random.default_rng(0).integers(2, 40, 751))
    sampler = IdentitySampler(labels, 32, 2, seed=0)
    start = time.perf_counter()
    batches = list(sampler)
    assert time.perf_counter() - start < 1.0
    assert len({labels[i] for batch in batches for i in batch}) == 751
