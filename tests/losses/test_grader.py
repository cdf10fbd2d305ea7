"""Grader targets and L_score: the paper's eq. (7) and the authors' single-entry supervision."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from oamn.losses import GraderLoss, grader_loss, grader_targets
from oamn.reid_eval import predict_occlusion_type
from tests.conftest import DEVICES

NAN = math.nan

# The 9 occlusion types (none, half t/b/l/r, quarter t/b/l/r) as (location, area).
LOCATION = torch.tensor([0, 1, 2, 3, 4, 1, 2, 3, 4])
AREA = torch.tensor([0.0, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25])


def test_paper_targets_by_hand() -> None:
    expected = torch.tensor(
        [
            [0.0, 0.0, 0.0, 0.0],
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
            [0.5, 0.0, 0.0, 0.0],
            [0.0, 0.5, 0.0, 0.0],
            [0.0, 0.0, 0.5, 0.0],
            [0.0, 0.0, 0.0, 0.5],
        ]
    )
    assert torch.equal(grader_targets(LOCATION, AREA), expected)


def test_official_targets_by_hand() -> None:
    expected = torch.tensor(
        [
            [0.25, 0.25, 0.25, 0.25],
            [1.0, NAN, NAN, NAN],
            [NAN, 1.0, NAN, NAN],
            [NAN, NAN, 1.0, NAN],
            [NAN, NAN, NAN, 1.0],
            [0.5, NAN, NAN, NAN],
            [NAN, 0.5, NAN, NAN],
            [NAN, NAN, 0.0, NAN],
            [NAN, NAN, NAN, 0.0],
        ]
    )
    torch.testing.assert_close(grader_targets(LOCATION, AREA, "official"), expected, equal_nan=True)


def test_targets_accept_sequences_and_keep_the_device() -> None:
    targets = grader_targets([0, 2], [0, 0.25])
    assert targets.dtype == torch.float32
    assert targets.tolist() == [[0.0, 0.0, 0.0, 0.0], [0.0, 0.5, 0.0, 0.0]]
    assert grader_targets(torch.zeros(0, dtype=torch.int64), torch.zeros(0)).shape == (0, 4)


def random_scores(seed, rows):
    logits = torch.randn(rows, 4, generator=torch.Generator().manual_seed(seed))
    return logits.double().softmax(1)


def test_paper_loss_matches_eq_7() -> None:
    scores = random_scores(0, 9)
    targets = grader_targets(LOCATION, AREA).tolist()
    squared_norms = [sum((scores[i, j] - targets[i][j]) ** 2 for j in range(4)) for i in range(9)]
    expected = sum(squared_norms) / 9
    loss = grader_loss(scores, LOCATION, AREA)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(
        loss, 4 * F.mse_loss(scores, grader_targets(LOCATION, AREA).double())
    )


def authors_score_loss(scores, area_of_image):
    """The authors' trainer on 5 blocks of B rows (holistic, top, bottom, left, right).

    Their grader's columns are left, right, bottom ("d"), top ("u"); ours are t, b, l, r.
    """
    batch = len(area_of_image)
    theirs = scores[:, [2, 3, 1, 0]]
    h, t, b, left, r = (theirs[k * batch : (k + 1) * batch] for k in range(5))
    half = (area_of_image == 0.5).double()
    score_h = h.max(dim=1)[0]
    score_l, score_r, score_d, score_u = left[:, 0], r[:, 1], b[:, 2], t[:, 3]
    id_h = torch.zeros(batch).double() + 0.25
    id_l = 1 * half + 0 * (1 - half)
    id_r = 1 * half + 0 * (1 - half)
    id_d = 1 * half + 0.5 * (1 - half)
    id_u = 1 * half + 0.5 * (1 - half)
    return (
        F.mse_loss(score_h, id_h)
        + F.mse_loss(score_l, id_l)
        + F.mse_loss(score_r, id_r)
        + F.mse_loss(score_d, id_d)
        + F.mse_loss(score_u, id_u)
    )


@pytest.mark.parametrize("seed", range(3))
def test_official_loss_matches_the_authors_code(seed) -> None:
    batch = 6
    area_of_image = torch.tensor([0.5, 0.25, 0.25, 0.5, 0.5, 0.25])
    location = torch.arange(5).repeat_interleave(batch)
    area = torch.cat([torch.zeros(batch), area_of_image.repeat(4)])
    scores = random_scores(seed, 5 * batch)
    torch.testing.assert_close(
        grader_loss(scores, location, area, "official"), authors_score_loss(scores, area_of_image)
    )


def test_official_loss_supervises_the_largest_holistic_score() -> None:
    scores = torch.tensor([[0.1, 0.6, 0.2, 0.1]])
    loss = grader_loss(scores, [0], [0.0], convention="official")
    assert loss.item() == pytest.approx((0.6 - 0.25) ** 2)


def test_official_loss_sums_per_location_means() -> None:
    # Two top rows (errors 0.01, 0.09) and one left quarter row (error 0.04): 0.05 + 0.04.
    scores = torch.tensor([[0.9, 0.0, 0.0, 0.1], [0.7, 0.1, 0.1, 0.1], [0.0, 0.0, 0.2, 0.8]])
    loss = grader_loss(scores, [1, 1, 3], [0.5, 0.5, 0.25], convention="official")
    assert loss.item() == pytest.approx(0.05 + 0.04)


def test_row_permutation_invariance() -> None:
    scores = random_scores(4, 9)
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(0))
    for convention in ("paper", "official"):
        torch.testing.assert_close(
            grader_loss(scores[perm], LOCATION[perm], AREA[perm], convention),
            grader_loss(scores, LOCATION, AREA, convention),
        )


@pytest.mark.parametrize("convention", ["paper", "official"])
def test_gradcheck(convention) -> None:
    scores = random_scores(5, 9).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s: grader_loss(s, LOCATION, AREA, convention), (scores,))


@pytest.mark.parametrize("device", DEVICES)
def test_runs_on_the_scores_device(device) -> None:
    scores = random_scores(6, 9).float()
    loss = grader_loss(scores.to(device), LOCATION, AREA.tolist(), "official")
    assert loss.device == scores.to(device).device
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(grader_loss(scores, LOCATION, AREA, "official").item())


def test_module_matches_the_function() -> None:
    scores = random_scores(7, 9)
    module = GraderLoss(convention="official")
    assert (
        module(scores, LOCATION, AREA).item()
        == grader_loss(scores, LOCATION, AREA, "official").item()
    )
    assert "convention='official'" in repr(module)


# --- The "distribution" convention: the paper's targets moved onto the simplex, fitted by KL. ---

DISTRIBUTION = torch.tensor(
    [
        [0.25, 0.25, 0.25, 0.25],
        [1.0, 0.0, 0.0, 0.0],
        [0.0, 1.0, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
        [0.0, 0.0, 0.0, 1.0],
        [0.625, 0.125, 0.125, 0.125],
        [0.125, 0.625, 0.125, 0.125],
        [0.125, 0.125, 0.625, 0.125],
        [0.125, 0.125, 0.125, 0.625],
    ]
)


def test_distribution_targets_by_hand() -> None:
    targets = grader_targets(LOCATION, AREA, "distribution")
    assert targets.dtype == torch.float32
    assert torch.equal(targets, DISTRIBUTION)  # all exact binary fractions
    torch.testing.assert_close(targets.sum(1), torch.ones(9), rtol=0, atol=0)
    assert grader_targets([3], [0.25], convention="distribution").tolist() == [
        [0.125, 0.125, 0.625, 0.125]
    ]


def project_onto_simplex(point: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of a vector onto the probability simplex (sort-based)."""
    ordered = point.sort(descending=True).values
    cumulative = ordered.cumsum(0) - 1
    index = torch.arange(1, len(point) + 1, dtype=point.dtype)
    support = int((ordered - cumulative / index > 0).sum())
    return (point - cumulative[support - 1] / support).clamp_min(0)


def test_distribution_targets_minimise_the_paper_error_over_the_simplex() -> None:
    paper = grader_targets(LOCATION, AREA).double()
    targets = grader_targets(LOCATION, AREA, "distribution").double()
    generator = torch.Generator().manual_seed(0)
    for row in range(9):
        # Projected gradient descent on ||s - paper_row||^2 from random starts on the simplex.
        for _ in range(3):
            s = torch.rand(4, generator=generator, dtype=torch.float64)
            s /= s.sum()
            for _ in range(200):
                s = project_onto_simplex(s - 0.25 * 2 * (s - paper[row]))
            torch.testing.assert_close(s, targets[row], atol=1e-12, rtol=0)
        # KKT: the gradient 2 (t - paper) is one constant (the multiplier of sum = 1) over the
        # support of t, and no smaller outside it (where t_k = 0, a multiplier mu_k >= 0).
        gradient = 2 * (targets[row] - paper[row])
        support = targets[row] > 0
        multiplier = gradient[support]
        torch.testing.assert_close(multiplier, multiplier[:1].expand_as(multiplier))
        assert bool((gradient[~support] >= multiplier[0] - 1e-12).all())
        # No other point of the simplex does better.
        for _ in range(50):
            other = torch.rand(4, generator=generator, dtype=torch.float64)
            other /= other.sum()
            assert (other - paper[row]).square().sum() >= (targets[row] - paper[row]).square().sum()


def test_eq_8_reads_each_distribution_target_as_its_own_type() -> None:
    targets = grader_targets(LOCATION, AREA, "distribution")
    # Rows in occlusion-type order 0..8: none, half t/b/l/r, quarter t/b/l/r.
    assert predict_occlusion_type(targets, thresholds=(0.5, 0.75)).tolist() == list(range(9))


def distribution_reference(scores, targets) -> float:
    """Mean over rows of sum_k t_k (log t_k - log s_k), 0 log 0 = 0, scores floored at 1e-12."""
    total = 0.0
    for score_row, target_row in zip(scores.tolist(), targets.tolist(), strict=True):
        for s, t in zip(score_row, target_row, strict=True):
            if t > 0:
                total += t * (math.log(t) - math.log(max(s, 1e-12)))
    return total / len(scores)


@pytest.mark.parametrize("seed", range(3))
def test_distribution_loss_equals_the_kl_reference(seed) -> None:
    scores = random_scores(10 + seed, 9)
    loss = grader_loss(scores, LOCATION, AREA, "distribution")
    assert loss.dtype == torch.float64
    assert loss.item() == pytest.approx(distribution_reference(scores, DISTRIBUTION), rel=1e-12)
    assert loss.item() > 0


def test_distribution_loss_by_hand() -> None:
    # A holistic row at uniform scores (0), a top half row at 0.7 (-log 0.7), and a left quarter
    # row at (0.1, 0.1, 0.7, 0.1): 0.625 log(0.625 / 0.7) + 3 * 0.125 log(0.125 / 0.1).
    scores = torch.tensor(
        [[0.25, 0.25, 0.25, 0.25], [0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.7, 0.1]], dtype=torch.float64
    )
    expected = (
        0.0 - math.log(0.7) + 0.625 * math.log(0.625 / 0.7) + 3 * 0.125 * math.log(0.125 / 0.1)
    ) / 3
    loss = grader_loss(scores, [0, 1, 3], [0.0, 0.5, 0.25], convention="distribution")
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_distribution_loss_is_zero_at_the_targets_and_positive_elsewhere() -> None:
    assert grader_loss(DISTRIBUTION, LOCATION, AREA, "distribution").item() == 0.0
    generator = torch.Generator().manual_seed(1)
    for _ in range(5):
        nudged = (DISTRIBUTION + 0.05 * torch.rand(9, 4, generator=generator)).double()
        nudged /= nudged.sum(1, keepdim=True)
        assert grader_loss(nudged, LOCATION, AREA, "distribution").item() > 0
    # Each row scored with another type's target (all 9 differ) costs something.
    for row in range(9):
        other = DISTRIBUTION[(row + 1) % 9][None]
        loss = grader_loss(other, LOCATION[row : row + 1], AREA[row : row + 1], "distribution")
        assert loss.item() > 0


def test_distribution_loss_is_finite_for_a_saturated_one_hot_row() -> None:
    scores = torch.tensor([[1.0, 0.0, 0.0, 0.0]] * 3, dtype=torch.float64, requires_grad=True)
    # A holistic, a bottom half and a top quarter row: zero scores hit the 1e-12 floor.
    loss = grader_loss(scores, [0, 2, 1], [0.0, 0.5, 0.25], convention="distribution")
    assert math.isfinite(loss.item())
    expected = (
        0.25 * math.log(0.25)
        + 3 * 0.25 * (math.log(0.25) - math.log(1e-12))
        + (0.0 - math.log(1e-12))
        + 3 * 0.125 * (math.log(0.125) - math.log(1e-12))
        + 0.625 * math.log(0.625)
    ) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    loss.backward()
    assert bool(scores.grad.isfinite().all())
    # A one-hot row on its own half target costs nothing.
    assert grader_loss(scores.detach()[:1], [1], [0.5], convention="distribution").item() == 0.0


def test_distribution_gradcheck() -> None:
    scores = random_scores(15, 9).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda s: grader_loss(s, LOCATION, AREA, "distribution"), (scores,)
    )


def test_distribution_module_form() -> None:
    scores = random_scores(16, 9)
    module = GraderLoss("distribution")
    assert module.convention == "distribution"
    assert "convention='distribution'" in repr(module)
    assert (
        module(scores, LOCATION, AREA).item()
        == grader_loss(scores, LOCATION, AREA, "distribution").item()
    )
    assert module(DISTRIBUTION, LOCATION, AREA).item() == 0.0


def test_bad_convention_lists_the_three_choices() -> None:
    choices = r"convention must be one of \('paper', 'official', 'distribution'\), got 'kl'"
    with pytest.raises(ValueError, match=choices):
        grader_targets(LOCATION, AREA, "kl")
    with pytest.raises(ValueError, match=choices):
        grader_loss(random_scores(0, 9), LOCATION, AREA, "kl")
    with pytest.raises(ValueError, match=choices):
        GraderLoss("kl")


@pytest.mark.parametrize("convention", ["paper", "official", "distribution"])
def test_raw_logits_are_refused_with_the_fix(convention) -> None:
    logits = torch.randn(9, 4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"must be probabilities.*scores\.softmax\(1\)"):
        grader_loss(logits, LOCATION, AREA, convention)
    with pytest.raises(ValueError, match="must be probabilities"):
        GraderLoss(convention)(logits.abs() / 10, LOCATION, AREA)  # in [0, 1], rows not on 1
    # A bfloat16 softmax, rows off 1 by its rounding, is accepted.
    probabilities = logits.bfloat16().softmax(1)
    assert (probabilities.float().sum(1) - 1).abs().max() > 0
    assert torch.isfinite(grader_loss(probabilities.float(), LOCATION, AREA, convention))
