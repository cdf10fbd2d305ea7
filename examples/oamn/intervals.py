r"""95 % intervals of ReID metrics by bootstrapping the queries.

A metric over ``Q`` queries (R1: the share of rank-1 hits; mAP: the mean AP) is a mean of
per-query values, so its sampling spread is estimated by resampling the queries with replacement
(percentile bootstrap). A difference between two evaluations of the *same* queries (a model and
its unified version, two models) is bootstrapped *paired*: each resample draws the same queries
for both, which removes the spread the two share.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["bootstrap_interval", "paired_difference_interval"]

_DRAWS = 2000
_LEVEL = 0.95


def bootstrap_interval(
    values: Tensor, draws: int = _DRAWS, seed: int = 0, level: float = _LEVEL
) -> tuple[float, float]:
    r"""Percentile-bootstrap interval of the mean of ``values``.

    Args:
        values: ``(Q,)`` per-query values (e.g. rank-1 hits as 0/1, or APs), ``Q >= 1``.
        draws: bootstrap resamples.
        seed: seed of the resampling (the interval is a function of it).
        level: coverage of the interval.

    Returns:
        ``(low, high)`` as floats.

    Example:
        >>> low, high = bootstrap_interval(torch.tensor([0.0, 1.0] * 50))
        >>> 0.39 < low < 0.5 < high < 0.61
        True
    """
    values = _check_values(values, "values")
    means = _resampled_means(values.double()[None], draws, seed)[0]
    return _quantiles(means, level)


def paired_difference_interval(
    first: Tensor, second: Tensor, draws: int = _DRAWS, seed: int = 0, level: float = _LEVEL
) -> tuple[float, float, float]:
    r"""Mean of ``second - first`` over the same queries, with its paired-bootstrap interval.

    Args:
        first: ``(Q,)`` per-query values of one evaluation.
        second: ``(Q,)`` those of the other, same queries in the same order.
        draws: bootstrap resamples.
        seed: seed of the resampling.
        level: coverage of the interval.

    Returns:
        ``(difference, low, high)``: the observed mean difference and its interval.

    Example:
        >>> before = torch.tensor([0.0, 1.0, 0.0, 1.0] * 25)
        >>> gain, low, high = paired_difference_interval(before, torch.ones(100))
        >>> gain, low > 0.3
        (0.5, True)
    """
    if first.shape != second.shape:
        raise ValueError(
            f"first and second must be (Q,) values of the same queries, got shapes "
            f"{tuple(first.shape)} and {tuple(second.shape)}"
        )
    _check_values(first, "first")
    _check_values(second, "second")
    difference = second.double() - first.double()
    means = _resampled_means(difference[None], draws, seed)[0]
    return (float(difference.mean()), *_quantiles(means, level))


def _check_values(values: Tensor, name: str) -> Tensor:
    if not isinstance(values, Tensor) or values.ndim != 1 or values.numel() == 0:
        shape = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
        raise ValueError(f"{name} must be a non-empty (Q,) tensor of per-query values, got {shape}")
    if not bool(torch.isfinite(values).all()):
        raise ValueError(f"{name} holds NaN or inf: pass the valid queries' values only")
    return values


def _resampled_means(values: Tensor, draws: int, seed: int) -> Tensor:
    """``(R, draws)`` means of ``draws`` resamples (with replacement) of each row's ``Q`` values."""
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws must be a positive int, got {draws!r}")
    count = values.shape[1]
    generator = torch.Generator().manual_seed(seed)
    index = torch.randint(count, (draws, count), generator=generator)
    return values[:, index].mean(dim=2)


def _quantiles(means: Tensor, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2
    low, high = torch.quantile(means, torch.tensor([tail, 1 - tail], dtype=means.dtype))
    return float(low), float(high)
