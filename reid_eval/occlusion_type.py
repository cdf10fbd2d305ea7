r"""The test-time occlusion type of each query from its occlusion-grader scores (paper eq. 8)."""

from __future__ import annotations

import torch
from torch import Tensor

from ._inputs import (
    ArrayLike,
    check_choice,
    check_floating,
    check_no_nan,
    check_thresholds,
    to_tensor,
)

__all__ = ["BOUNDARIES", "SCORE_LOCATIONS", "predict_occlusion_type"]

#: The locations of the grader's 4 score columns, in order.
SCORE_LOCATIONS: tuple[str, ...] = ("top", "bottom", "left", "right")

#: Where a score equal to a threshold goes: ``"paper"`` (eq. 8, the upper class) or
#: ``"official"`` (the authors' code compares with ``<=``, the lower class).
BOUNDARIES: tuple[str, ...] = ("paper", "official")

_NUM_TYPES = 9


def predict_occlusion_type(
    scores: ArrayLike,
    thresholds: tuple[float, float] = (0.5, 0.75),
    boundary: str = "paper",
) -> Tensor:
    r"""Occlusion type of each image from its grader scores, by thresholds (paper eq. 8).

    Scores with 9 columns (a grader that classifies the type itself: 0 none, 1-4 half
    top/bottom/left/right, 5-8 quarter) give their argmax; ``thresholds`` and ``boundary`` are
    then unused. For the paper's 4 columns, the occluded location is ``p = argmax s`` (on ties,
    the first column), and the area follows from ``s^p`` and ``thresholds = (low, high)``:

    * ``boundary="paper"`` (eq. 8): area 0 if ``s^p < low``, 1/4 if ``low <= s^p < high``,
      1/2 if ``s^p >= high``;
    * ``boundary="official"`` (the authors' code): area 0 if ``s^p <= low``, 1/4 if
      ``low < s^p <= high``, 1/2 if ``s^p > high``.

    Args:
        scores: ``(N, 4)`` floating scores (the grader's softmax output) with columns in the
            order top, bottom, left, right (:data:`SCORE_LOCATIONS`), or ``(N, 9)`` type
            scores; a tensor on any device, a numpy array or a nested list. NaN rejected.
        thresholds: ``(low, high)`` with ``low <= high``; ``(0.5, 0.75)`` in the paper.
        boundary: ``"paper"`` or ``"official"``, see above.

    Returns:
        ``(N,)`` int64 occlusion types on the scores' device (CPU for numpy or lists), README
        convention: 0 none; 1-4 half top/bottom/left/right; 5-8 quarter top/bottom/left/right.
        Use them as ``q_types`` of :func:`~oamn.reid_eval.evaluate_unified`.

    Example:
        >>> scores = torch.tensor([[0.1, 0.8, 0.05, 0.05],   # bottom, 0.8: half
        ...                        [0.2, 0.1, 0.1, 0.6],     # right, 0.6: quarter
        ...                        [0.4, 0.4, 0.1, 0.1],     # top, 0.4: none
        ...                        [0.5, 0.3, 0.1, 0.1]])    # top, exactly 0.5
        >>> predict_occlusion_type(scores)
        tensor([2, 8, 0, 5])
        >>> predict_occlusion_type(scores, boundary="official")
        tensor([2, 8, 0, 0])
        >>> predict_occlusion_type(torch.eye(9)[[0, 6]])  # a 9-way grader: the argmax
        tensor([0, 6])
    """
    scores = check_floating(to_tensor(scores, "scores"), "scores", 2, "(N, 4)")
    if scores.shape[1] not in (len(SCORE_LOCATIONS), _NUM_TYPES):
        raise ValueError(
            f"scores must have shape (N, 4) (columns top, bottom, left, right) or (N, 9) (the "
            f"9 occlusion types), got {tuple(scores.shape)}"
        )
    check_no_nan(scores, "scores")
    if scores.shape[1] == _NUM_TYPES:
        return scores.argmax(dim=1)
    low, high = check_thresholds(thresholds)
    boundary = check_choice(boundary, "boundary", BOUNDARIES)
    location = scores.argmax(dim=1)  # documented to return the first of tied maxima
    top_score = scores.gather(1, location[:, None]).squeeze(1)
    if boundary == "paper":
        occluded, half = top_score >= low, top_score >= high
    else:
        occluded, half = top_score > low, top_score > high
    types = torch.where(half, 1 + location, 5 + location)
    return torch.where(occluded, types, 0)
