"""Grader targets and L_score: the paper's eq. (7) and the authors' single-entry supervision."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from oamn.losses import GraderLoss, grader_loss, grader_targets
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
