"""P distinct identities x K images per batch, deterministic per epoch and shardable."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

__all__ = ["IdentitySampler"]


class IdentitySampler(torch.utils.data.Sampler[list[int]]):
    r"""Batch sampler yielding ``ids_per_batch`` (P) distinct identities x ``instances_per_id`` (K).

    Epoch (as torchreid's ``RandomIdentitySampler``, but with distinct ids in every batch and
    no image dropped by chance): each identity's images are shuffled and cut into
    ``c = max(1, n // K)`` chunks of K (the ``n mod K`` left over change every epoch; an
    identity with ``n < K`` images gives one chunk holding all of them plus ``K - n`` drawn
    again with replacement). Every chunk is used exactly once, so every identity appears in
    every epoch, in

    ``B = max(ceil(C / P), max c)`` batches, ``C`` the total number of chunks.

    Each batch takes the identities that must be used now to finish in ``B`` batches, then
    draws the rest without replacement with probabilities proportional to their remaining
    chunks (Gumbel top-k); when fewer than P identities have chunks left, the batch is
    completed with chunks of other identities (re-used images). ``B`` only depends on the
    labels, so every epoch and every rank has the same length.

    Sharding (``DistributedSampler``-style): all ranks build the same epoch from
    ``(seed, epoch)``; it is padded with freshly drawn batches to a multiple of
    ``num_replicas`` (or cut down with ``drop_last=True``), and rank ``r`` takes batches
    ``r, r + R, r + 2R, ...``: disjoint batches, the same count per rank. Each rank's batch
    has P x K images, the global batch ``R x P x K``.

    Args:
        labels: identity of each dataset index (any integers >= 0, need not be contiguous).
        ids_per_batch: P, at most the number of identities.
        instances_per_id: K >= 1.
        seed: base seed; the epoch's draws come from ``numpy.random.default_rng([seed,
            epoch])`` (no global random state is used).
        num_replicas: number of ranks R.
        rank: this rank, in ``0..R-1``.
        drop_last: cut the epoch to a multiple of R batches instead of padding it.

    Yields:
        lists of ``P * K`` dataset indices, id-major: ``[id0 x K, id1 x K, ...]``.

    Example:
        >>> sampler = IdentitySampler([0, 0, 1, 1, 1, 2], ids_per_batch=2, instances_per_id=2)
        >>> len(sampler)
        2
        >>> batches = list(sampler)
        >>> sorted({len({[0, 0, 1, 1, 1, 2][i] for i in batch}) for batch in batches})
        [2]
    """

    def __init__(
        self,
        labels: Sequence[int],
        ids_per_batch: int,
        instances_per_id: int,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = False,
    ) -> None:
        for name, value, low in (
            ("ids_per_batch", ids_per_batch, 1),
            ("instances_per_id", instances_per_id, 1),
            ("num_replicas", num_replicas, 1),
            ("seed", seed, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise TypeError(f"{name} must be an int, got {type(value).__name__}")
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
        if isinstance(rank, bool) or not isinstance(rank, int | np.integer):
            raise TypeError(f"rank must be an int, got {type(rank).__name__}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, num_replicas={num_replicas}), got {rank}")
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.size == 0:
            raise ValueError(
                f"labels must be a non-empty 1-D sequence of ids, got shape {labels.shape}"
            )
        if not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"labels must be integers, got dtype {labels.dtype}")
        if labels.min() < 0:
            raise ValueError(
                "labels must be >= 0; junk images (id -1) must not be trained on: drop them "
                "and relabel the training identities (relabel_ids)"
            )
        ids, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        if ids_per_batch > len(ids):
            raise ValueError(
                f"ids_per_batch={ids_per_batch} exceeds the {len(ids)} identities in labels; "
                "lower ids_per_batch"
            )
        self.ids_per_batch = int(ids_per_batch)
        self.instances_per_id = int(instances_per_id)
        self.seed = int(seed)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.drop_last = drop_last
        self.epoch = 0
        # Dataset indices grouped by identity (stable: index order within an identity).
        self._by_id = np.argsort(inverse, kind="stable")
        self._counts = counts
        self._starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self._chunks_per_id = np.maximum(1, counts // self.instances_per_id)
        total_chunks = int(self._chunks_per_id.sum())
        epoch_batches = max(-(-total_chunks // self.ids_per_batch), int(self._chunks_per_id.max()))
        if drop_last:
            self._total_batches = epoch_batches - epoch_batches % self.num_replicas
            if self._total_batches == 0:
                raise ValueError(
                    f"drop_last=True leaves no batch: an epoch has {epoch_batches} batches for "
                    f"num_replicas={num_replicas}; use drop_last=False"
                )
        else:
            self._total_batches = -(-epoch_batches // self.num_replicas) * self.num_replicas
        self._epoch_batches = epoch_batches

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches the next iteration yields (call it every epoch)."""
        if isinstance(epoch, bool) or not isinstance(epoch, int | np.integer) or epoch < 0:
            raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self._total_batches // self.num_replicas

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._epoch_indices()[self.rank :: self.num_replicas]
        for batch in batches:
            yield batch.tolist()

    def _epoch_indices(self) -> np.ndarray:
        """All ranks' batches of the current epoch, ``(total_batches, P * K)`` indices."""
        rng = np.random.default_rng([self.seed, self.epoch])
        chunks, chunk_starts = self._draw_chunks(rng)
        batch_ids = self._schedule(rng)
        num_ids = len(self._counts)
        # Padding batches (drop_last=False with R not dividing B): P random distinct ids.
        extra = self._total_batches - len(batch_ids)
        if extra > 0:
            keys = rng.random((extra, num_ids))
            padding = np.argpartition(keys, self.ids_per_batch - 1, axis=1)
            batch_ids = np.concatenate([batch_ids, padding[:, : self.ids_per_batch]])
        batch_ids = batch_ids[: self._total_batches]
        # The j-th use of an identity in the epoch takes its j-th chunk; uses past its last
        # chunk (fillers, padding) take a random chunk of it again.
        flat_ids = batch_ids.reshape(-1)
        use = _occurrence_number(flat_ids)
        chunk_count = self._chunks_per_id[flat_ids]
        again = use >= chunk_count
        use[again] = rng.integers(0, chunk_count[again])
        picked = chunks[chunk_starts[flat_ids] + use]
        return picked.reshape(len(batch_ids), self.ids_per_batch * self.instances_per_id)

    def _draw_chunks(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Each identity's shuffled images cut into K-chunks: ``(C, K)`` and each id's first row."""
        k = self.instances_per_id
        num_ids = len(self._counts)
        owner = np.repeat(np.arange(num_ids), self._counts)
        # Shuffle within identities: sort by (id, random key).
        shuffled = self._by_id[np.lexsort((rng.random(len(owner)), owner))]
        position = np.arange(len(owner)) - self._starts[owner]
        used = position < (self._counts[owner] // k) * k
        full = shuffled[used].reshape(-1, k)
        full_owner = owner[used][::k]
        # Identities with n < K: all their images, then K - n drawn again with replacement.
        short = np.flatnonzero(self._counts < k)
        slot = np.arange(k)
        count = self._counts[short][:, None]
        offset = np.where(slot < count, slot, rng.integers(0, count, (len(short), k)))
        padded = shuffled[self._starts[short][:, None] + offset]
        chunks = np.concatenate([full, padded])
        chunk_owner = np.concatenate([full_owner, short])
        order = np.argsort(chunk_owner, kind="stable")
        chunk_starts = np.concatenate([[0], np.cumsum(self._chunks_per_id)[:-1]])
        return chunks[order], chunk_starts

    def _schedule(self, rng: np.random.Generator) -> np.ndarray:
        """The identities of each batch, ``(B, P)``, every chunk scheduled exactly once."""
        p = self.ids_per_batch
        remaining = self._chunks_per_id.astype(np.float64)
        batches = np.empty((self._epoch_batches, p), dtype=np.int64)
        for b in range(self._epoch_batches):
            batches_left = self._epoch_batches - b
            # Gumbel top-k: sampling without replacement proportional to the remaining chunks.
            # Ids that must go now get +inf, ids with nothing left -inf plus a random key,
            # so fillers come last and are drawn uniformly.
            with np.errstate(divide="ignore"):
                keys = np.log(remaining) + rng.gumbel(size=len(remaining))
            keys[remaining >= batches_left] = np.inf
            empty = remaining == 0
            keys[empty] = -1e300 * (1.0 + rng.random(int(empty.sum())))
            chosen = np.argpartition(-keys, p - 1)[:p]
            batches[b] = chosen
            remaining[chosen] = np.maximum(remaining[chosen] - 1, 0)
        return batches


def _occurrence_number(values: np.ndarray) -> np.ndarray:
    """For each element, how many equal elements precede it (0 for the first)."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    run_start = np.repeat(starts, np.diff(np.r_[starts, len(values)]))
    occurrence = np.empty_like(values)
    occurrence[order] = np.arange(len(values)) - run_start
    return occurrence
