"""Batch-hard triplet losses: plain, and grouped by occlusion location (OAMN §3.3, eq. 6)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ._mining import group_slots, mine_hardest
from ._precision import float32_under_autocast
from ._validation import (
    check_choice,
    check_finite,
    check_flag,
    check_float_tensor,
    check_integer_vector,
    check_margin,
)
from .distances import batch_distance_matrix

#: What the triplet losses do when no anchor is valid: ``"raise"`` a ``ValueError`` (default)
#: or return ``"zero"``, a ``0`` still connected to ``features`` (as pytorch-metric-learning).
NO_VALID_ANCHOR: tuple[str, ...] = ("raise", "zero")

__all__ = [
    "NO_VALID_ANCHOR",
    "BatchHardTripletLoss",
    "GroupedTripletLoss",
    "TripletLossDetails",
    "batch_hard_triplet_loss",
    "grouped_triplet_loss",
    "triplet_loss_details",
]


@dataclass(frozen=True)
class TripletLossDetails:
    r"""A batch-hard triplet loss with what its mining found (see :func:`triplet_loss_details`).

    For ``N`` input rows, all tensors on the features' device, in input row order.

    Attributes:
        loss: ``()`` the loss that :func:`batch_hard_triplet_loss` or
            :func:`grouped_triplet_loss` returns.
        anchor_losses: ``(N,)`` hinge ``relu(d(a, p) - d(a, n) + margin)`` of each anchor with
            its hardest positive ``p`` and negative ``n``; ``0`` for excluded anchors.
        valid_anchors: ``(N,)`` bool, ``True`` for the anchors that have a positive (another row
            of their identity) and a negative (a row of another identity), in their group for
            the grouped loss. The others are excluded from the mean.
        positive_index: ``(N,)`` int64, the row of each anchor's farthest positive; ``-1`` for
            excluded anchors.
        negative_index: ``(N,)`` int64, the row of each anchor's nearest negative; ``-1`` for
            excluded anchors.
    """

    loss: Tensor
    anchor_losses: Tensor
    valid_anchors: Tensor
    positive_index: Tensor
    negative_index: Tensor

    @property
    def num_excluded_anchors(self) -> int:
        """Number of anchors left out of the mean for lack of a positive or a negative."""
        return int((~self.valid_anchors).sum())


def batch_hard_triplet_loss(
    features: Tensor,
    labels: Tensor | Sequence[int],
    margin: float = 0.3,
    squared: bool = False,
    normalize: bool = False,
    *,
    no_valid_anchor: str = "raise",
) -> Tensor:
    r"""Batch-hard triplet loss (Hermans et al. 2017): farthest positive, nearest negative.

    For each anchor ``a``: ``relu(d(a, p) - d(a, n) + margin)``, where ``p`` is the farthest row
    of the same identity (never ``a`` itself) and ``n`` the nearest row of another identity. The
    loss is the mean over the *valid* anchors, those that have both; the others (an identity
    with a single row, or a batch of one identity) are excluded.
    :func:`triplet_loss_details` tells which, with the mined rows.

    ``d`` is the Euclidean distance, as in the authors' OAMN code; the paper's eq. (5) writes
    squared distances: pass ``squared=True`` for those. Unlike the open-reid loss the authors
    used, an anchor is never its own positive: there, an identity with a single row got
    ``d(a, p) = 0``; here it is excluded (the two agree whenever each identity has 2+ rows).

    Args:
        features: ``(N, D)`` floating embeddings, any device.
        labels: ``(N,)`` integer identity labels.
        margin: the hinge margin, ``>= 0``.
        squared: use squared Euclidean distances.
        normalize: L2-normalise the features first.
        no_valid_anchor: ``"raise"`` (default) or ``"zero"``: return ``0`` (still connected to
            ``features``, so every parameter gets a zero gradient) when no anchor is valid,
            for samplers that cannot promise two identities of two rows in every batch.

    Returns:
        The ``()`` loss in ``features``' dtype.

    Raises:
        ValueError: when no anchor is valid (one identity only, or no identity with 2 rows)
            and ``no_valid_anchor="raise"``, or when ``features`` holds NaN or inf.

    Example:
        >>> features = torch.tensor([[0.0], [1.0], [3.0], [6.0]])  # 4 points on a line
        >>> batch_hard_triplet_loss(features, torch.tensor([0, 0, 1, 1]), margin=2.5)
        tensor(1.5000)
    """
    return triplet_loss_details(
        features, labels, margin, None, squared, normalize, no_valid_anchor=no_valid_anchor
    ).loss


def grouped_triplet_loss(
    features: Tensor,
    labels: Tensor | Sequence[int],
    groups: Tensor | Sequence[int],
    margin: float = 0.5,
    squared: bool = False,
    normalize: bool = False,
    *,
    no_valid_anchor: str = "raise",
) -> Tensor:
    r"""OAMN's grouped triplet loss (paper eq. 6): batch-hard mining inside each group only.

    Positives and negatives are mined as in :func:`batch_hard_triplet_loss`, but only among the
    rows of the anchor's own group, so no triplet mixes groups. In OAMN the groups are the
    occlusion locations (0 none, 1 top, 2 bottom, 3 left, 4 right): half and quarter occlusions
    of one location share a group.

    Reduction: the mean over each group's valid anchors, then the mean over the groups that
    have at least one valid anchor (a mean of per-group means, so a small group weighs as much
    as a large one). This is the authors' code: five calls of a mean-reduced batch-hard loss,
    divided by 5. Eq. (6) writes ``1/|P'| sum_p sum_i`` with a *sum* over a group's ``n``
    anchors; with every anchor valid it is ``n`` times this loss.

    All groups are mined at once: the rows are laid out as a ``(groups, largest group, D)``
    tensor and the distances are computed block by block with one batched matrix product,
    which costs no more than separate calls per group and avoids the full ``N x N`` matrix.

    Args:
        features: ``(N, D)`` floating embeddings, any device.
        labels: ``(N,)`` integer identity labels.
        groups: ``(N,)`` integer group of each row, any values (e.g. the location codes).
        margin: the hinge margin, ``>= 0``; the paper uses 0.5.
        squared: use squared Euclidean distances (the paper's eq. 5; the authors' code and
            the default use plain distances).
        normalize: L2-normalise the features first.
        no_valid_anchor: ``"raise"`` (default) or ``"zero"``: return ``0`` (still connected to
            ``features``) when no group has a valid anchor, see
            :func:`batch_hard_triplet_loss`.

    Returns:
        The ``()`` loss in ``features``' dtype.

    Raises:
        ValueError: when no group has a valid anchor and ``no_valid_anchor="raise"``, or when
            ``features`` holds NaN or inf.

    Example:
        >>> features = torch.tensor([[0.0], [1.0], [0.2], [1.5], [8.0], [8.5]])
        >>> labels = torch.tensor([0, 0, 1, 1, 1, 1])
        >>> groups = torch.tensor([0, 0, 1, 1, 0, 0])  # row 2 is near row 0, in another group
        >>> grouped_triplet_loss(features, labels, groups, margin=0.5)
        tensor(0.)
        >>> batch_hard_triplet_loss(features, labels, margin=0.5)
        tensor(3.4167)
    """
    return triplet_loss_details(
        features, labels, margin, groups, squared, normalize, no_valid_anchor=no_valid_anchor
    ).loss


@float32_under_autocast
def triplet_loss_details(
    features: Tensor,
    labels: Tensor | Sequence[int],
    margin: float,
    groups: Tensor | Sequence[int] | None = None,
    squared: bool = False,
    normalize: bool = False,
    *,
    no_valid_anchor: str = "raise",
) -> TripletLossDetails:
    r"""A batch-hard triplet loss with what its mining found: valid anchors, mined rows.

    With ``groups=None`` the loss is :func:`batch_hard_triplet_loss`'s, else
    :func:`grouped_triplet_loss`'s; the arguments and errors are theirs. Note that ``margin``
    has no default here (the two losses default to 0.3 and 0.5).

    Returns:
        The :class:`TripletLossDetails`.

    Example:
        >>> features = torch.tensor([[0.0], [1.0], [3.0], [6.0]])
        >>> details = triplet_loss_details(features, [0, 0, 1, 2], margin=0.3)
        >>> details.num_excluded_anchors, details.negative_index.tolist()
        (2, [2, 2, -1, -1])
    """
    margin = check_margin(margin)
    squared, normalize = check_flag(squared, "squared"), check_flag(normalize, "normalize")
    must_have_anchor = check_choice(no_valid_anchor, "no_valid_anchor", NO_VALID_ANCHOR) == "raise"
    check_float_tensor(features, "features", "(N, D)", ndim=2)
    check_finite(features=features)
    labels = check_integer_vector(labels, "labels", len(features), features.device)
    if groups is None:
        return _ungrouped_details(features, labels, margin, squared, normalize, must_have_anchor)
    groups = check_integer_vector(groups, "groups", len(features), features.device)
    return _grouped_details(features, labels, groups, margin, squared, normalize, must_have_anchor)


def _ungrouped_details(
    features: Tensor,
    labels: Tensor,
    margin: float,
    squared: bool,
    normalize: bool,
    must_have_anchor: bool,
) -> TripletLossDetails:
    distances = batch_distance_matrix(features, squared=squared, normalize=normalize)
    not_self = ~torch.eye(len(features), dtype=torch.bool, device=features.device)
    hinge, valid, positive_index, negative_index = mine_hardest(
        distances, labels[:, None] == labels[None, :], not_self, margin
    )
    num_valid = valid.sum()
    if must_have_anchor and not bool(num_valid):
        raise ValueError(_why_no_anchor_is_valid(labels))
    # Without a valid anchor every hinge is 0, so the loss is a 0 connected to the features.
    loss = hinge.sum() / num_valid.clamp_min(1)
    return TripletLossDetails(loss, hinge, valid, positive_index, negative_index)


def _grouped_details(
    features: Tensor,
    labels: Tensor,
    groups: Tensor,
    margin: float,
    squared: bool,
    normalize: bool,
    must_have_anchor: bool,
) -> TripletLossDetails:
    rows, slot_of_row = group_slots(groups)
    in_group = rows >= 0
    some_rows = rows.clamp_min(0)  # padding slots read row 0; the masks below ignore them
    grouped_labels = labels[some_rows]
    # index_select, not features[some_rows]: its backward (index_add) is several times faster.
    grouped_features = features.index_select(0, some_rows.flatten()).view(*rows.shape, -1)
    distances = batch_distance_matrix(grouped_features, squared=squared, normalize=normalize)
    not_self = ~torch.eye(rows.shape[1], dtype=torch.bool, device=features.device)
    candidates = in_group[:, :, None] & in_group[:, None, :] & not_self
    hinge, valid, positive_slot, negative_slot = mine_hardest(
        distances, grouped_labels[:, :, None] == grouped_labels[:, None, :], candidates, margin
    )
    anchors_per_group = valid.sum(-1)
    num_groups = (anchors_per_group > 0).sum()
    if must_have_anchor and not bool(num_groups):
        raise ValueError(
            "no group has a valid anchor: inside its group, an anchor needs another row of its "
            "identity and a row of another identity; check that labels and groups describe the "
            "same rows, or pass no_valid_anchor='zero' to get 0 for such a batch"
        )
    # A group without valid anchors has an all-zero hinge, so it adds 0 to the sum.
    loss = (hinge.sum(-1) / anchors_per_group.clamp_min(1)).sum() / num_groups.clamp_min(1)

    def in_input_order(per_slot: Tensor) -> Tensor:
        return per_slot.flatten()[slot_of_row]

    def input_rows(slots: Tensor) -> Tensor:
        return torch.where(valid, rows.gather(1, slots.clamp_min(0)), -1)

    return TripletLossDetails(
        loss,
        in_input_order(hinge),
        in_input_order(valid),
        in_input_order(input_rows(positive_slot)),
        in_input_order(input_rows(negative_slot)),
    )


class _TripletLoss(nn.Module):
    """Holds and checks the hyper-parameters shared by the triplet loss modules."""

    def __init__(self, margin: float, squared: bool, normalize: bool, no_valid_anchor: str) -> None:
        super().__init__()
        self.margin = check_margin(margin)
        self.squared = check_flag(squared, "squared")
        self.normalize = check_flag(normalize, "normalize")
        self.no_valid_anchor = check_choice(no_valid_anchor, "no_valid_anchor", NO_VALID_ANCHOR)

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, squared={self.squared}, normalize={self.normalize}, "
            f"no_valid_anchor={self.no_valid_anchor!r}"
        )


class BatchHardTripletLoss(_TripletLoss):
    r"""Module form of :func:`batch_hard_triplet_loss`.

    Args:
        margin: the hinge margin, ``>= 0``.
        squared: use squared Euclidean distances.
        normalize: L2-normalise the features first.
        no_valid_anchor: ``"raise"`` (default) or ``"zero"``, see
            :func:`batch_hard_triplet_loss`.

    Shape:
        - features: ``(N, D)`` floating.
        - labels: ``(N,)`` integer.
        - output: ``()``.

    Example:
        >>> criterion = BatchHardTripletLoss(margin=2.5)
        >>> criterion(torch.tensor([[0.0], [1.0], [3.0], [6.0]]), torch.tensor([0, 0, 1, 1]))
        tensor(1.5000)
    """

    def __init__(
        self,
        margin: float = 0.3,
        squared: bool = False,
        normalize: bool = False,
        *,
        no_valid_anchor: str = "raise",
    ) -> None:
        super().__init__(margin, squared, normalize, no_valid_anchor)

    def forward(self, features: Tensor, labels: Tensor | Sequence[int]) -> Tensor:
        """The mean hinge over the valid anchors of a batch.

        Args:
            features: ``(N, D)`` floating embeddings, any device; gradients flow to them.
            labels: ``(N,)`` integer identities (a tensor on any device, or a sequence).

        Returns:
            The ``()`` loss in ``features``' dtype (float32 under autocast), ``>= 0``.
        """
        return batch_hard_triplet_loss(
            features,
            labels,
            self.margin,
            self.squared,
            self.normalize,
            no_valid_anchor=self.no_valid_anchor,
        )


class GroupedTripletLoss(_TripletLoss):
    r"""Module form of :func:`grouped_triplet_loss` (OAMN's ``L_tri-g``).

    Args:
        margin: the hinge margin, ``>= 0``; the paper uses 0.5.
        squared: use squared Euclidean distances.
        normalize: L2-normalise the features first.
        no_valid_anchor: ``"raise"`` (default, a ``ValueError`` that says why) or ``"zero"``
            (return ``0``, as pytorch-metric-learning does), when no group of a batch has a
            valid anchor.

    Shape:
        - features: ``(N, D)`` floating.
        - labels: ``(N,)`` integer.
        - groups: ``(N,)`` integer, e.g. the occlusion location codes 0..4.
        - output: ``()``.

    Example:
        >>> criterion = GroupedTripletLoss()
        >>> features = torch.tensor([[0.0], [1.0], [0.2], [1.5], [8.0], [8.5]])
        >>> criterion(features, [0, 0, 1, 1, 1, 1], groups=[0, 0, 1, 1, 0, 0])
        tensor(0.)
        >>> tolerant = GroupedTripletLoss(no_valid_anchor="zero")
        >>> tolerant(features, [0, 1, 2, 3, 4, 5], groups=[0, 0, 1, 1, 0, 0])  # no positive
        tensor(0.)
    """

    def __init__(
        self,
        margin: float = 0.5,
        squared: bool = False,
        normalize: bool = False,
        *,
        no_valid_anchor: str = "raise",
    ) -> None:
        super().__init__(margin, squared, normalize, no_valid_anchor)

    def forward(
        self,
        features: Tensor,
        labels: Tensor | Sequence[int],
        groups: Tensor | Sequence[int],
    ) -> Tensor:
        """The mean over groups of each group's mean hinge, mining inside each group only.

        Args:
            features: ``(N, D)`` floating embeddings, any device; gradients flow to them.
            labels: ``(N,)`` integer identities.
            groups: ``(N,)`` integer group of each row, any values: OAMN's occlusion locations
                (0 none, 1 top, 2 bottom, 3 left, 4 right; ``OcclusionBatch.location``).

        Returns:
            The ``()`` loss in ``features``' dtype (float32 under autocast), ``>= 0``.
        """
        return grouped_triplet_loss(
            features,
            labels,
            groups,
            self.margin,
            self.squared,
            self.normalize,
            no_valid_anchor=self.no_valid_anchor,
        )


def _why_no_anchor_is_valid(labels: Tensor) -> str:
    if labels.unique().numel() == 1:
        return (
            "no anchor has a negative: labels hold a single identity; the triplet loss needs "
            "at least 2 identities in the batch, or pass no_valid_anchor='zero' to get 0 for such "
            "a batch"
        )
    return (
        "no anchor has a positive: no identity in labels has 2 or more rows; sample several "
        "images per identity (e.g. 32 identities x 2 images), or pass no_valid_anchor='zero' "
        "to get 0 for such a batch"
    )
