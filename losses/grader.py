"""The occlusion grader's targets and loss ``L_score`` (OAMN §3.4, eq. 7).

The grader outputs 4 scores per image, one per occlusion location, in the columns
``top, bottom, left, right``: location code ``k`` in ``1..4`` is column ``k - 1``. (The authors'
grader orders its outputs left, right, bottom, top; ``theirs[:, [3, 2, 0, 1]]`` is ours.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._precision import float32_under_autocast
from ._validation import (
    check_choice,
    check_finite,
    check_float_tensor,
    check_integer_vector,
    to_tensor,
)

__all__ = ["GraderLoss", "grader_loss", "grader_targets"]

_CONVENTIONS = ("paper", "official", "distribution")
# The quarter row of "distribution": the simplex point nearest to the paper's (0.5, 0, 0, 0).
_QUARTER_TOP, _QUARTER_REST = 0.625, 0.125
_NUM_LOCATIONS = 4
_AREAS = (0.0, 0.25, 0.5)
_LOG_FLOOR = 1e-12
#: How far a row of scores may stray from the probability simplex (16-bit softmax rounding).
_SIMPLEX_TOLERANCE = 0.02


def grader_targets(
    location: Tensor | Sequence[int],
    area: Tensor | Sequence[float],
    convention: str = "paper",
) -> Tensor:
    r"""Targets of the grader's scores, one row per image, columns top, bottom, left, right.

    Conventions:

    * ``"paper"`` (default, §3.4): ``s^p = 2 * a`` in the column of the occluded location ``p``
      (1 for a half, 0.5 for a quarter), 0 in the other columns; holistic rows are all 0.
    * ``"official"`` (the authors' code): one score per row is supervised; the other entries
      are NaN ("not supervised"). An occluded row's target is in its location's column: 1 for a
      half; for a quarter, 0.5 at top/bottom but 0 at left/right (most likely a slip in their
      code, kept here to reproduce it). A holistic row's *largest* score is pulled to 0.25,
      i.e. towards the uniform softmax; the row holds 0.25 in every column since which column
      is supervised depends on the scores (see :func:`grader_loss`).

    * ``"distribution"``: the paper's targets moved onto the simplex, i.e. the softmax rows
      nearest to them (what the paper's squared error converges to at best): a half row is
      one-hot (1 at its location), a quarter row 0.625 at its location and 0.125 elsewhere, a
      holistic row uniform (0.25). Eq. 8 reads each as its own type (``>= 0.75``; in
      ``[0.5, 0.75)``; ``< 0.5``). :func:`grader_loss` fits them by KL divergence.

    With a softmax grader, whose rows sum to 1, the paper's targets of holistic rows (sum 0) and
    of quarter rows (sum 0.5) cannot be reached; the squared error still ranks the right
    location first, which is all the test-time rule (eq. 8) reads. Supervising single entries,
    as the authors' code does, avoids the unreachable targets.

    Args:
        location: ``(N,)`` integer location codes: 0 none, 1 top, 2 bottom, 3 left, 4 right.
        area: ``(N,)`` occluded areas: 0 with location 0, else 0.25 or 0.5.
        convention: ``"paper"``, ``"official"`` or ``"distribution"``.

    Returns:
        ``(N, 4)`` float32 targets on ``location``'s device.

    Example:
        >>> location, area = torch.tensor([0, 1, 3, 4]), torch.tensor([0.0, 0.5, 0.25, 0.5])
        >>> grader_targets(location, area)
        tensor([[0.0000, 0.0000, 0.0000, 0.0000],
                [1.0000, 0.0000, 0.0000, 0.0000],
                [0.0000, 0.0000, 0.5000, 0.0000],
                [0.0000, 0.0000, 0.0000, 1.0000]])
        >>> grader_targets(location, area, convention="official")
        tensor([[0.2500, 0.2500, 0.2500, 0.2500],
                [1.0000,    nan,    nan,    nan],
                [   nan,    nan, 0.0000,    nan],
                [   nan,    nan,    nan, 1.0000]])
    """
    check_choice(convention, "convention", _CONVENTIONS)
    location, area = _check_occlusion_labels(location, area, None, None)
    occluded = location > 0
    in_column = F.one_hot(_column(location), _NUM_LOCATIONS).bool() & occluded[:, None]
    if convention == "paper":
        return torch.where(in_column, 2 * area[:, None], 0.0)
    if convention == "distribution":
        quarter = torch.where(in_column, _QUARTER_TOP, _QUARTER_REST)
        half = in_column.float()
        rows = torch.where((area == 0.5)[:, None], half, quarter)
        return torch.where(occluded[:, None], rows, 1.0 / _NUM_LOCATIONS)
    is_top_or_bottom = location <= 2
    value = torch.where(area == 0.5, 1.0, torch.where(is_top_or_bottom, 0.5, 0.0))
    targets = torch.where(in_column, value[:, None], torch.nan)
    return torch.where(occluded[:, None], targets, 0.25)


@float32_under_autocast
def grader_loss(
    scores: Tensor,
    location: Tensor | Sequence[int],
    area: Tensor | Sequence[float],
    convention: str = "paper",
) -> Tensor:
    r"""``L_score`` (paper eq. 7): squared error between the grader's scores and their targets.

    * ``"paper"`` (default): eq. (7), ``1/(n |P'|) sum_p sum_i ||T(g_i^p) - s_i||^2``: the
      squared L2 norm of each row's 4-entry error (a sum over the columns), averaged over the
      ``N = n |P'|`` rows (all images and all their copies). That is ``4 * F.mse_loss``.
    * ``"official"`` (the authors' code): the squared error of the one supervised score of each
      row (see :func:`grader_targets`: the location's column, or the largest score of a
      holistic row), averaged over the rows of each location and summed over the locations
      present. For ``occlusion_aug``'s 5 blocks of ``B`` rows this is the authors' sum of five
      ``F.mse_loss`` terms.
    * ``"distribution"``: the KL divergence ``sum_k t_k (log t_k - log s_k)`` from the
      simplex targets (see :func:`grader_targets`) to the scores, averaged over the rows. Its
      minimiser is the same as the paper's, but its gradient does not vanish as a softmax
      saturates (a squared error on probabilities does), so the grader learns faster.

    Args:
        scores: ``(N, 4)`` floating probabilities, the grader's softmax output (each row in
            ``[0, 1]`` summing to 1 within 0.02, which 16-bit softmax outputs meet), columns
            top, bottom, left, right. Raw logits are refused: apply ``softmax(1)`` first.
        location: ``(N,)`` integer location codes 0..4.
        area: ``(N,)`` areas: 0 with location 0, else 0.25 or 0.5.
        convention: ``"paper"``, ``"official"`` or ``"distribution"``.

    Returns:
        ``()`` loss in ``scores``' dtype.

    Raises:
        ValueError: for labels outside the convention (see :func:`grader_targets`), mismatched
            lengths, ``scores`` holding NaN or inf, or rows that are not probabilities.

    Example:
        >>> scores = torch.tensor([[0.25, 0.25, 0.25, 0.25], [0.7, 0.1, 0.1, 0.1]])
        >>> location, area = torch.tensor([0, 1]), torch.tensor([0.0, 0.5])
        >>> grader_loss(scores, location, area)  # (4 * 0.25^2 + (0.3^2 + 3 * 0.1^2)) / 2
        tensor(0.1850)
        >>> grader_loss(scores, location, area, convention="official")  # 0^2 + 0.3^2
        tensor(0.0900)
        >>> grader_loss(scores, location, area, convention="distribution")  # (0 - log 0.7) / 2
        tensor(0.1783)
    """
    check_choice(convention, "convention", _CONVENTIONS)
    check_float_tensor(scores, "scores", f"(N, {_NUM_LOCATIONS})", ndim=2)
    if scores.shape[1] != _NUM_LOCATIONS:
        raise ValueError(
            f"scores must have shape (N, {_NUM_LOCATIONS}), columns top, bottom, left, right; "
            f"got {tuple(scores.shape)}"
        )
    _check_probabilities(scores)
    location, area = _check_occlusion_labels(location, area, len(scores), scores.device)
    targets = grader_targets(location, area, convention).to(scores.dtype)
    if convention == "paper":
        loss = (scores - targets).square().sum(1).mean()
    elif convention == "distribution":
        # 0 * log 0 = 0 for the one-hot rows; the floor keeps log finite on a saturated softmax.
        log_ratio = targets.clamp_min(_LOG_FLOOR).log() - scores.clamp_min(_LOG_FLOOR).log()
        loss = (targets * log_ratio).sum(1).mean()
    else:
        column = _column(location)[:, None]
        supervised = torch.where(location == 0, scores.amax(1), scores.gather(1, column).squeeze(1))
        errors = (supervised - targets.gather(1, column).squeeze(1)).square()
        rows_per_location = torch.bincount(location, minlength=_NUM_LOCATIONS + 1)
        error_per_location = errors.new_zeros(_NUM_LOCATIONS + 1).index_add(0, location, errors)
        loss = (error_per_location / rows_per_location.clamp_min(1)).sum()
    return loss


class GraderLoss(nn.Module):
    r"""Module form of :func:`grader_loss` (``L_score``).

    Args:
        convention: ``"paper"`` (eq. 7, default), ``"official"`` (the authors' code) or
            ``"distribution"`` (KL divergence from the simplex targets).

    Shape:
        - scores: ``(N, 4)`` floating, columns top, bottom, left, right.
        - location: ``(N,)`` integer codes 0..4.
        - area: ``(N,)`` 0, 0.25 or 0.5.
        - output: ``()``.

    Example:
        >>> GraderLoss()(torch.tensor([[0.0, 1.0, 0.0, 0.0]]), [2], [0.5])
        tensor(0.)
    """

    def __init__(self, convention: str = "paper") -> None:
        super().__init__()
        self.convention = check_choice(convention, "convention", _CONVENTIONS)

    def extra_repr(self) -> str:
        return f"convention={self.convention!r}"

    def forward(
        self,
        scores: Tensor,
        location: Tensor | Sequence[int],
        area: Tensor | Sequence[float],
    ) -> Tensor:
        """The loss of the grader's scores against the targets of the rows' occlusions.

        Args:
            scores: ``(N, 4)`` probabilities (the grader's softmax output, not its logits),
                columns top, bottom, left, right; gradients flow to them.
            location: ``(N,)`` integer codes 0 none, 1 top, 2 bottom, 3 left, 4 right
                (``OcclusionBatch.location``).
            area: ``(N,)`` 0 with location 0, else 0.25 or 0.5 (``OcclusionBatch.area``).

        Returns:
            The ``()`` loss in ``scores``' dtype (float32 under autocast), ``>= 0``.
        """
        return grader_loss(scores, location, area, self.convention)


def _check_probabilities(scores: Tensor) -> None:
    """Raise unless every row of ``scores`` is a probability vector, within
    :data:`_SIMPLEX_TOLERANCE` (raw logits are the likely mistake), naming NaN or inf values
    first: both checks read one device sync's worth of statistics."""
    if scores.numel() == 0:
        return
    with torch.no_grad():
        low, high = torch.aminmax(scores)
        worst_sum = (scores.sum(1) - 1).abs().max()
        low, high, worst_sum = torch.stack([low, high, worst_sum]).tolist()
    if not math.isfinite(low + high + worst_sum):
        check_finite(scores=scores)  # NaN or inf, named; huge finite scores go on to the check
    if low < -_SIMPLEX_TOLERANCE or high > 1 + _SIMPLEX_TOLERANCE or worst_sum > _SIMPLEX_TOLERANCE:
        raise ValueError(
            "scores must be probabilities, rows in [0, 1] summing to 1 (the grader's softmax "
            f"output), got values in [{low:.3g}, {high:.3g}] and row sums off 1 by "
            f"up to {worst_sum:.3g}; pass scores.softmax(1) if these are logits"
        )


def _column(location: Tensor) -> Tensor:
    """Score column of each location code (holistic rows get column 0, to be masked)."""
    return (location - 1).clamp_min(0)


def _check_occlusion_labels(
    location: Tensor | Sequence[int],
    area: Tensor | Sequence[float],
    length: int | None,
    device: torch.device | None,
) -> tuple[Tensor, Tensor]:
    location = check_integer_vector(location, "location", length, device, rows_of="scores")
    area = to_tensor(area, "area").to(location.device)
    if area.is_complex() or area.dtype == torch.bool:
        raise TypeError(f"area must hold the areas 0, 0.25 or 0.5, got dtype {area.dtype}")
    area = area.to(torch.float32)
    if area.shape != location.shape:
        raise ValueError(
            f"area must have the shape of location, {tuple(location.shape)}, got "
            f"{tuple(area.shape)}"
        )
    if location.numel() == 0:
        return location, area
    if int(location.min()) < 0 or int(location.max()) > _NUM_LOCATIONS:
        raise ValueError(
            "location codes must be in 0..4 (0 none, 1 top, 2 bottom, 3 left, 4 right), got "
            f"values in {int(location.min())}..{int(location.max())}"
        )
    known = (area[:, None] == area.new_tensor(_AREAS)).any(1)
    if not bool(known.all()):
        raise ValueError(
            f"area values must be 0, 0.25 or 0.5 (none, quarter, half), got {area[~known][0]}"
        )
    mismatched = (location == 0) != (area == 0)
    if bool(mismatched.any()):
        row = int(mismatched.nonzero()[0])
        raise ValueError(
            "location 0 (none) must come with area 0, and locations 1..4 with area 0.25 or 0.5; "
            f"row {row} has location {int(location[row])} and area {float(area[row])}"
        )
    return location, area
