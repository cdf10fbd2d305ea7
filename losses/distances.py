"""The (N, N) Euclidean distance matrix of a batch, differentiable where two rows coincide."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._precision import float32_under_autocast

__all__ = ["batch_distance_matrix"]

# Squared distances are floored at this before the square root, whose derivative is infinite at 0
# and huge just above: an anchor against itself or two duplicate rows would otherwise get NaN
# (0 * inf) or exploding gradients. sqrt(1e-12) = 1e-6 is far below any distance a loss uses.
_MIN_SQUARED_DISTANCE = 1e-12


@float32_under_autocast
def batch_distance_matrix(
    features: Tensor, squared: bool = False, normalize: bool = False
) -> Tensor:
    r"""Euclidean distances between all pairs of rows of one batch (the ``(N, N)`` matrix that
    triplet mining reads), batched over leading dimensions.

    Computed as ``|x|^2 + |y|^2 - 2 x.y`` from one matrix product (whose diagonal gives the
    squared norms), clamped at 0 against rounding, and for plain distances at ``1e-12`` before
    the square root, so that the gradient is finite (zero) where two rows coincide, the
    diagonal included.

    Args:
        features: ``(..., N, D)`` floating features, any device.
        squared: return squared distances instead of distances.
        normalize: L2-normalise each row first (distances then lie in ``[0, 2]``).

    Returns:
        ``(..., N, N)`` distances of ``features``' dtype and device. The diagonal is ``1e-6``
        (``0`` when ``squared``).

    Example:
        >>> batch_distance_matrix(torch.tensor([[0.0, 0.0], [3.0, 4.0]]))
        tensor([[1.0000e-06, 5.0000e+00],
                [5.0000e+00, 1.0000e-06]])
    """
    if normalize:
        features = F.normalize(features, dim=-1)
    gram = features @ features.transpose(-1, -2)
    # The squared norms are the Gram diagonal: no separate pass over the features, forward or
    # backward, and an exactly zero diagonal.
    norms = gram.diagonal(dim1=-2, dim2=-1)
    squared_distances = torch.clamp_min(norms[..., :, None] + norms[..., None, :] - 2 * gram, 0)
    if squared:
        return squared_distances
    return squared_distances.clamp_min(_MIN_SQUARED_DISTANCE).sqrt()
