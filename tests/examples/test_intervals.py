"""Percentile-bootstrap intervals of per-query metrics, single and paired."""

from __future__ import annotations

import math

import pytest
import torch

from examples.oamn.intervals import bootstrap_interval, paired_difference_interval


def hits(count: int, ones: int, seed: int = 0) -> torch.Tensor:
    """``count`` 0/1 values with exactly ``ones`` ones, in a random order."""
    values = torch.zeros(count)
    values[:ones] = 1.0
    return values[torch.randperm(count, generator=torch.Generator().manual_seed(seed))]


def aps(count: int, seed: int = 0) -> torch.Tensor:
    """AP-like values in [0, 1]."""
    return torch.rand(count, generator=torch.Generator().manual_seed(seed)) ** 2


def test_bootstrap_is_deterministic_under_the_seed() -> None:
    values = aps(200)
    first = bootstrap_interval(values, draws=500, seed=3)
    assert first == bootstrap_interval(values.clone(), draws=500, seed=3)
    assert all(type(bound) is float for bound in first)
    assert bootstrap_interval(values, draws=500, seed=4) != first
    assert bootstrap_interval(values, seed=0) == bootstrap_interval(values)


def test_bootstrap_does_not_modify_its_input() -> None:
    values = aps(50)
    copy = values.clone()
    bootstrap_interval(values, draws=100)
    assert torch.equal(values, copy)


@pytest.mark.parametrize("values", [hits(300, 90), aps(300, seed=1), aps(7, seed=2)])
def test_bootstrap_interval_contains_the_mean(values: torch.Tensor) -> None:
    low, high = bootstrap_interval(values, draws=1000)
    mean = float(values.double().mean())
    assert low < mean < high
    assert low >= 0.0
    assert high <= 1.0


@pytest.mark.parametrize("value", [0.0, 1.0, 0.7])
def test_bootstrap_of_constant_values_is_degenerate(value: float) -> None:
    values = torch.full((40,), value)
    low, high = bootstrap_interval(values, draws=200)
    assert low == high
    assert low == pytest.approx(float(torch.tensor(value).double()), abs=1e-15)
    assert bootstrap_interval(torch.tensor([value]), draws=50) == (low, high)  # one query


def test_bootstrap_width_matches_the_normal_approximation() -> None:
    p, count = 0.3, 400
    low, high = bootstrap_interval(hits(count, int(p * count)))
    normal_width = 2 * 1.96 * math.sqrt(p * (1 - p) / count)  # about 0.0898
    assert high - low == pytest.approx(normal_width, rel=0.2)
    assert low == pytest.approx(p - normal_width / 2, abs=0.2 * normal_width)
    # Four times the queries: half the width.
    low4, high4 = bootstrap_interval(hits(4 * count, int(4 * p * count)))
    assert (high4 - low4) == pytest.approx((high - low) / 2, rel=0.2)


def test_bootstrap_level_widens_the_interval() -> None:
    values = aps(200)
    narrow = bootstrap_interval(values, draws=1000, level=0.5)
    wide = bootstrap_interval(values, draws=1000, level=0.99)
    default = bootstrap_interval(values, draws=1000)
    assert wide[0] < default[0] < narrow[0] < narrow[1] < default[1] < wide[1]


def test_bootstrap_rejects_empty_values() -> None:
    with pytest.raises(ValueError, match=r"values must be a non-empty \(Q,\) tensor"):
        bootstrap_interval(torch.zeros(0))


def test_paired_difference_of_identical_inputs_is_zero() -> None:
    values = aps(100)
    assert paired_difference_interval(values, values.clone()) == (0.0, 0.0, 0.0)
    binary = hits(100, 40)
    assert paired_difference_interval(binary, binary, draws=100, seed=9) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("shift", [0.25, -0.125, 1.0])
def test_paired_difference_of_a_shifted_copy_is_exactly_the_shift(shift: float) -> None:
    first = torch.arange(64, dtype=torch.float64) / 64  # exact binary fractions
    difference, low, high = paired_difference_interval(first, first + shift)
    assert (difference, low, high) == (shift, shift, shift)
    # The paired interval ignores the spread the two share; the unpaired ones do not.
    single_low, single_high = bootstrap_interval(first)
    assert single_high - single_low > 0.1


def test_paired_difference_by_hand_and_its_sign() -> None:
    before = torch.tensor([0.0, 1.0, 0.0, 1.0] * 25)
    gain, low, high = paired_difference_interval(before, torch.ones(100))
    assert gain == 0.5  # second - first
    assert 0.3 < low < 0.5 < high < 0.7
    loss, loss_low, loss_high = paired_difference_interval(torch.ones(100), before)
    assert loss == -0.5
    assert loss_low < -0.5 < loss_high < 0


def test_paired_difference_is_deterministic_and_narrower_than_unpaired() -> None:
    generator = torch.Generator().manual_seed(0)
    first = torch.rand(300, generator=generator, dtype=torch.float64)
    second = first + 0.02 + 0.01 * torch.randn(300, generator=generator, dtype=torch.float64)
    result = paired_difference_interval(first, second, draws=800, seed=5)
    assert result == paired_difference_interval(first, second, draws=800, seed=5)
    assert result != paired_difference_interval(first, second, draws=800, seed=6)
    difference, low, high = result
    assert difference == pytest.approx(float((second - first).mean()), abs=1e-15)
    assert 0 < low < difference < high
    # Unpaired, each mean alone spreads about 0.017 either side: far wider than the difference's.
    first_low, first_high = bootstrap_interval(first, draws=800)
    assert high - low < (first_high - first_low) / 5


@pytest.mark.parametrize(
    ("first", "second", "shapes"),
    [
        (torch.zeros(3), torch.zeros(4), r"\(3,\) and \(4,\)"),
        (torch.zeros(3), torch.zeros(3, 1), r"\(3,\) and \(3, 1\)"),
    ],
)
def test_paired_difference_rejects_mismatched_inputs(first, second, shapes) -> None:
    match = rf"first and second must be \(Q,\) values of the same queries, got shapes {shapes}"
    with pytest.raises(ValueError, match=match):
        paired_difference_interval(first, second)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (torch.zeros(2, 3), r"must be a non-empty \(Q,\) tensor of per-query values, got \(2, 3\)"),
        (torch.zeros(0), r"must be a non-empty \(Q,\) tensor of per-query values, got \(0,\)"),
        (torch.tensor(1.0), r"must be a non-empty \(Q,\) tensor of per-query values, got \(\)"),
        (torch.tensor([0.0, float("nan")]), "holds NaN or inf"),
    ],
)
def test_intervals_reject_bad_values(values, message) -> None:
    with pytest.raises(ValueError, match=f"values {message}"):
        bootstrap_interval(values)
    with pytest.raises(ValueError, match=f"first {message}"):
        paired_difference_interval(values, values.clone())


def test_draws_must_be_positive() -> None:
    with pytest.raises(ValueError, match="draws must be a positive int, got 0"):
        bootstrap_interval(torch.ones(3), draws=0)
