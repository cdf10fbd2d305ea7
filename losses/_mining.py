"""Batch-hard mining: the hardest positive and negative of each anchor, and the group layout
that lets all groups be mined in one batched call."""

from __future__ import annotations

import torch
from torch import Tensor


def mine_hardest(
    distances: Tensor, same_label: Tensor, candidates: Tensor, margin: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Batch-hard mining over the last dimension of ``(..., L, L)`` distances.

    ``candidates`` marks the pairs mining may use (not the anchor itself, same group). Returns
    the hinge of each anchor (0 where excluded), its validity, and the positions of its hardest
    positive and negative (-1 where excluded).
    """
    positives = same_label & candidates
    negatives = ~same_label & candidates
    # +-inf keep excluded pairs out of the max/min; a row with no candidate yields an infinite
    # difference, which the where() below replaces before it can reach the mean.
    positive_distance, positive_index = torch.where(positives, distances, -torch.inf).max(-1)
    negative_distance, negative_index = torch.where(negatives, distances, torch.inf).min(-1)
    valid = positives.any(-1) & negatives.any(-1)
    hinge = torch.where(valid, torch.relu(positive_distance - negative_distance + margin), 0)
    return (
        hinge,
        valid,
        torch.where(valid, positive_index, -1),
        torch.where(valid, negative_index, -1),
    )


def group_slots(groups: Tensor) -> tuple[Tensor, Tensor]:
    """Lay the rows out in a ``(G, L)`` grid: one line per distinct group, ``L`` its largest size.

    Returns ``rows``, the input row in each slot (``-1`` for padding), and ``slot_of_row``, the
    flat slot index of each input row. Rows keep their input order inside a group.
    """
    order = torch.argsort(groups, stable=True)
    _, sizes = torch.unique_consecutive(groups[order], return_counts=True)
    num_groups, width = sizes.numel(), int(sizes.max())
    group_of_sorted = torch.repeat_interleave(torch.arange(num_groups, device=groups.device), sizes)
    first_of_group = torch.cumsum(sizes, 0) - sizes
    position = torch.arange(len(groups), device=groups.device) - first_of_group[group_of_sorted]
    slot_of_sorted = group_of_sorted * width + position
    rows = torch.full((num_groups * width,), -1, dtype=torch.int64, device=groups.device)
    rows[slot_of_sorted] = order
    slot_of_row = torch.empty_like(order)
    slot_of_row[order] = slot_of_sorted
    return rows.view(num_groups, width), slot_of_row
