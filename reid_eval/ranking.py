r"""Ranks of each query's true matches, found without sorting the whole gallery.

Protocol (Market-1501 / DukeMTMC, as in torchreid and fast-reid). For a query with identity
``pid`` and camera ``cam``, a gallery item is

* **junk** (removed from the ranking) if it has the same identity *and* the same camera, or if
  its identity is one of ``junk_pids`` (Market-1501 labels its junk detections ``-1``);
* a **match** if it has the same identity from another camera;
* a negative otherwise. Market-1501's distractors (identity ``0``) are ordinary negatives.

The ranking is the *stable* order of the valid (non-junk) gallery items by distance: equal
distances keep gallery order, exactly as ``np.argsort(kind="stable")`` after removing the junk.

Only the ranks of the matches matter for CMC, AP and INP, and they depend only on the gallery
items that sort before each query's last match: every query keeps the items whose distance is at
most its largest match distance, and only those are sorted. For a trained model this is a small
fraction of the gallery, so the cost is one comparison pass over the distances plus a sort of a
few per cent of them, instead of a full row-wise sort (at worst, for a random model, a full sort).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ._inputs import check_no_nan


@dataclass(frozen=True)
class GalleryLabels:
    """The gallery's identities and cameras, indexed once for all queries.

    Attributes:
        pids: ``(G,)`` int64 identities.
        camids: ``(G,)`` int64 camera ids.
        junk: ``(G,)`` bool, ``True`` where the identity is one of the junk identities.
        pid_order: ``(G,)`` int64 gallery indices sorted by identity (stable).
        sorted_pids: ``(G,)`` int64, ``pids[pid_order]``.
    """

    pids: Tensor
    camids: Tensor
    junk: Tensor
    pid_order: Tensor
    sorted_pids: Tensor

    @classmethod
    def build(cls, pids: Tensor, camids: Tensor, junk_pids: Sequence[int]) -> GalleryLabels:
        """Index ``(G,)`` int64 ``pids`` / ``camids``; ``junk_pids`` are removed for every query."""
        junk = torch.isin(pids, torch.tensor(junk_pids, dtype=pids.dtype, device=pids.device))
        sorted_pids, pid_order = torch.sort(pids, stable=True)
        return cls(pids, camids, junk, pid_order, sorted_pids)


@dataclass(frozen=True)
class MatchRanks:
    """The ranks of the valid matches of a block of ``C`` queries.

    Attributes:
        row: ``(M,)`` int64 query row in the block, non-decreasing.
        order: ``(M,)`` int64, ``k`` for the ``k``-th match of its query (1-based).
        rank: ``(M,)`` int64 rank of that match among the query's valid gallery items (1-based),
            increasing with ``order`` within a row.
        num_matches: ``(C,)`` int64 number of valid matches of each query (0: no valid match).
    """

    row: Tensor
    order: Tensor
    rank: Tensor
    num_matches: Tensor


def rank_matches(
    distances: Tensor, q_pids: Tensor, q_camids: Tensor, gallery: GalleryLabels
) -> MatchRanks:
    r"""Rank every valid match of ``C`` queries among their valid gallery items.

    Args:
        distances: ``(C, G)`` floating distances, smaller = more similar; ``±inf`` allowed.
        q_pids: ``(C,)`` int64 query identities.
        q_camids: ``(C,)`` int64 query cameras.
        gallery: the gallery's labels, see :class:`GalleryLabels`.

    Returns:
        The ranks, see :class:`MatchRanks`; everything on ``distances``' device.

    Raises:
        ValueError: if ``distances`` holds a NaN.
    """
    num_queries, num_gallery = distances.shape
    device = distances.device
    check_no_nan(distances, "distmat")
    match_rows, match_cols = _match_pairs(q_pids, q_camids, gallery)
    match_distances = torch.take(distances, match_rows * num_gallery + match_cols)
    last_match = torch.full((num_queries,), -torch.inf, dtype=distances.dtype, device=device)
    last_match.scatter_reduce_(0, match_rows, match_distances, "amax")
    rows, cols = distances.le(last_match[:, None]).nonzero(as_tuple=True)
    values = torch.take(distances, rows * num_gallery + cols) + 0.0  # turns -0.0 into +0.0
    order = _stable_row_order(rows, values)
    rows, cols = rows.index_select(0, order), cols.index_select(0, order)

    same_pid = gallery.pids.index_select(0, cols) == q_pids.index_select(0, rows)
    same_cam = gallery.camids.index_select(0, cols) == q_camids.index_select(0, rows)
    valid = ~(gallery.junk.index_select(0, cols) | (same_pid & same_cam))
    valid_seen = torch.cumsum(valid, 0)  # valid items up to and including each position
    row_sizes = torch.bincount(rows, minlength=num_queries)
    row_start = torch.cumsum(row_sizes, 0) - row_sizes
    position = (same_pid & valid).nonzero().squeeze(1)
    row = rows.index_select(0, position)
    start = row_start.index_select(0, row)
    before_row = valid_seen.index_select(0, start) - valid.index_select(0, start).long()
    rank = valid_seen.index_select(0, position) - before_row

    num_matches = torch.bincount(match_rows, minlength=num_queries)
    first_of_row = torch.cumsum(num_matches, 0) - num_matches
    order_in_row = torch.arange(1, row.numel() + 1, device=device) - first_of_row.index_select(
        0, row
    )
    return MatchRanks(row, order_in_row, rank, num_matches)


def _match_pairs(q_pids: Tensor, q_camids: Tensor, gallery: GalleryLabels) -> tuple[Tensor, Tensor]:
    """``(rows, cols)`` of every (query, valid match) pair, found through the identity index."""
    first = torch.searchsorted(gallery.sorted_pids, q_pids, side="left")
    counts = torch.searchsorted(gallery.sorted_pids, q_pids, side="right") - first
    rows = torch.repeat_interleave(torch.arange(q_pids.numel(), device=q_pids.device), counts)
    offset = (
        torch.arange(rows.numel(), device=rows.device) - (torch.cumsum(counts, 0) - counts)[rows]
    )
    cols = gallery.pid_order[first[rows] + offset]
    is_match = ~gallery.junk[cols] & (gallery.camids[cols] != q_camids[rows])
    return rows[is_match], cols[is_match]


def _stable_row_order(rows: Tensor, values: Tensor) -> Tensor:
    """Permutation sorting ``(rows, values)`` lexicographically, ties kept in input order.

    ``values`` must hold no NaN and no -0.0 (whose bit pattern would sort before +0.0).
    """
    if values.element_size() <= 4:
        # One sort of a (row, order-preserving 32-bit distance code) int64 key; float32 holds
        # float16/bfloat16 exactly.
        bits = values.float().view(torch.int32)
        code = (bits ^ ((bits >> 31) & 0x7FFFFFFF)).long() + 2**31
        return torch.sort(rows * 2**32 + code, stable=True).indices
    by_value = torch.sort(values, stable=True).indices
    return by_value[torch.sort(rows[by_value], stable=True).indices]
