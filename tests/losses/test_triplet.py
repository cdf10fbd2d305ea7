"""Batch-hard and grouped triplet losses against hand values and a naive per-anchor reference."""

from __future__ import annotations

import math

import pytest
import torch

from oamn.losses import (
    BatchHardTripletLoss,
    GroupedTripletLoss,
    batch_distance_matrix,
    batch_hard_triplet_loss,
    grouped_triplet_loss,
    triplet_loss_details,
)
from tests.conftest import DEVICES

LINE = torch.tensor([[0.0], [1.0], [3.0], [6.0]])  # 4 points on a line


def reference_anchors(features, labels, margin, squared=False, normalize=False):
    """Per-anchor hinge, validity, hardest positive and negative rows, by Python loops."""
    x = features.detach().double().cpu()
    if normalize:
        x = x / x.norm(dim=1, keepdim=True)
    labels = [int(v) for v in labels]

    def distance(i, j):
        squared_distance = float(((x[i] - x[j]) ** 2).sum())
        return squared_distance if squared else math.sqrt(squared_distance)

    hinges, valid, positives, negatives = [], [], [], []
    for a in range(len(x)):
        pos = [(distance(a, j), j) for j in range(len(x)) if j != a and labels[j] == labels[a]]
        neg = [(distance(a, j), j) for j in range(len(x)) if labels[j] != labels[a]]
        if not pos or not neg:
            hinges.append(0.0)
            valid.append(False)
            positives.append(-1)
            negatives.append(-1)
            continue
        (d_ap, p), (d_an, n) = max(pos), min(neg)
        hinges.append(max(d_ap - d_an + margin, 0.0))
        valid.append(True)
        positives.append(p)
        negatives.append(n)
    return hinges, valid, positives, negatives


def reference_loss(features, labels, margin, squared=False, normalize=False):
    hinges, valid, _, _ = reference_anchors(features, labels, margin, squared, normalize)
    return sum(h for h, v in zip(hinges, valid, strict=True) if v) / sum(valid)


def reference_grouped_loss(features, labels, groups, margin, squared=False):
    group_means = []
    for group in sorted(set(groups.tolist())):
        rows = [i for i, g in enumerate(groups.tolist()) if g == group]
        hinges, valid, _, _ = reference_anchors(features[rows], labels[rows], margin, squared)
        if any(valid):
            group_means.append(sum(h for h, v in zip(hinges, valid, strict=True) if v) / sum(valid))
    return sum(group_means) / len(group_means)


def random_batch(seed, rows=24, dim=5, identities=6, num_groups=5, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(rows, dim, generator=generator, dtype=dtype)
    labels = torch.randint(identities, (rows,), generator=generator)
    groups = torch.randint(num_groups, (rows,), generator=generator)
    return features, labels, groups


def test_four_points_on_a_line_by_hand() -> None:
    # Anchors 0, 1, 3, 6: hardest positive 1, 1, 3, 3; nearest negative 3, 2, 2, 5.
    labels = torch.tensor([0, 0, 1, 1])
    details = triplet_loss_details(LINE, labels, margin=2.5)
    assert details.anchor_losses.tolist() == [0.5, 1.5, 3.5, 0.5]
    assert details.loss.item() == 1.5
    assert details.positive_index.tolist() == [1, 0, 3, 2]
    assert details.negative_index.tolist() == [2, 2, 1, 1]
    assert details.num_excluded_anchors == 0


def test_four_points_on_a_line_squared_by_hand() -> None:
    # Squared: anchor 3 gets 9 - 4 + 2.5 = 7.5, the others are negative before the hinge.
    loss = batch_hard_triplet_loss(LINE, torch.tensor([0, 0, 1, 1]), margin=2.5, squared=True)
    assert loss.item() == pytest.approx(7.5 / 4, abs=1e-6)


def test_normalized_points_by_hand() -> None:
    # On the unit circle: 0 and 90 degrees are one identity, 180 and 270 degrees the other.
    features = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0], [0.0, -5.0]])
    loss = batch_hard_triplet_loss(features, [0, 0, 1, 1], margin=1.0, normalize=True)
    # Every anchor: positive at sqrt(2), nearest negative at sqrt(2) too.
    assert loss.item() == pytest.approx(1.0, abs=1e-6)


def test_anchors_without_positive_are_excluded_and_counted() -> None:
    details = triplet_loss_details(LINE, [0, 0, 1, 2], margin=2.5)
    assert details.valid_anchors.tolist() == [True, True, False, False]
    assert details.num_excluded_anchors == 2
    assert details.anchor_losses.tolist() == [0.5, 1.5, 0.0, 0.0]
    assert details.loss.item() == 1.0


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("squared", "normalize"), [(False, False), (True, False), (False, True)])
def test_matches_naive_reference(seed, squared, normalize) -> None:
    features, labels, _ = random_batch(seed)
    details = triplet_loss_details(features, labels, 0.3, None, squared, normalize)
    hinges, valid, positives, negatives = reference_anchors(
        features, labels, 0.3, squared, normalize
    )
    assert details.valid_anchors.tolist() == valid
    assert details.positive_index.tolist() == positives
    assert details.negative_index.tolist() == negatives
    torch.testing.assert_close(details.anchor_losses, torch.tensor(hinges, dtype=torch.float64))
    assert details.loss.item() == pytest.approx(
        reference_loss(features, labels, 0.3, squared, normalize), abs=1e-9
    )


@pytest.mark.parametrize("seed", range(3))
def test_float32_matches_float64_reference(seed) -> None:
    features, labels, _ = random_batch(seed, rows=64, dim=128, dtype=torch.float32)
    loss = batch_hard_triplet_loss(features, labels, margin=0.3)
    # float32 Gram-matrix distances of 128-d features carry errors of a few 1e-6.
    assert loss.item() == pytest.approx(reference_loss(features, labels, 0.3), abs=1e-5)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("squared", [False, True])
def test_grouped_matches_naive_reference(seed, squared) -> None:
    features, labels, groups = random_batch(seed, rows=40, identities=5)
    loss = grouped_triplet_loss(features, labels, groups, margin=0.5, squared=squared)
    expected = reference_grouped_loss(features, labels, groups, 0.5, squared)
    assert loss.item() == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_grouped_details_match_per_group_reference(seed) -> None:
    features, labels, groups = random_batch(seed, rows=30, identities=4, num_groups=3)
    details = triplet_loss_details(features, labels, 0.5, groups)
    for group in groups.unique().tolist():
        rows = torch.nonzero(groups == group).squeeze(1)
        hinges, valid, positives, negatives = reference_anchors(features[rows], labels[rows], 0.5)
        to_input = {local: int(row) for local, row in enumerate(rows)} | {-1: -1}
        assert details.valid_anchors[rows].tolist() == valid
        assert details.positive_index[rows].tolist() == [to_input[p] for p in positives]
        assert details.negative_index[rows].tolist() == [to_input[n] for n in negatives]
        torch.testing.assert_close(details.anchor_losses[rows], torch.tensor(hinges).double())


def test_groups_prevent_cross_group_mining() -> None:
    # Row 2 (identity 1) lies next to the identity-0 rows but in another group: the grouped loss
    # must take row 4 (x = 8) as the nearest negative of rows 0 and 1, which costs nothing.
    features = torch.tensor([[0.0], [1.0], [0.2], [1.5], [8.0], [8.5]])
    labels = torch.tensor([0, 0, 1, 1, 1, 1])
    groups = torch.tensor([0, 0, 1, 1, 0, 0])
    details = triplet_loss_details(features, labels, 0.5, groups)
    assert details.loss.item() == 0.0
    assert details.negative_index.tolist() == [4, 4, -1, -1, 1, 1]
    # Group 1 holds identity 1 only: its anchors have no negative there and are excluded.
    assert details.num_excluded_anchors == 2
    ungrouped = triplet_loss_details(features, labels, margin=0.5)
    assert ungrouped.negative_index[0].item() == 2
    assert ungrouped.loss.item() > 1.0


@pytest.mark.parametrize("seed", range(3))
def test_grouped_mining_never_crosses_groups(seed) -> None:
    features, labels, groups = random_batch(seed, rows=60, identities=8)
    details = triplet_loss_details(features, labels, 0.5, groups)
    valid = details.valid_anchors
    assert torch.equal(groups[details.positive_index[valid]], groups[valid])
    assert torch.equal(groups[details.negative_index[valid]], groups[valid])
    assert torch.equal(labels[details.positive_index[valid]], labels[valid])
    assert not (labels[details.negative_index[valid]] == labels[valid]).any()


def test_grouped_equals_mean_of_separate_calls_on_blocks() -> None:
    # The OAMN layout: 5 blocks (holistic, top, bottom, left, right) of 32 identities x 2.
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(320, 64, generator=generator)
    labels = torch.arange(32).repeat_interleave(2).repeat(5)
    groups = torch.arange(5).repeat_interleave(64)
    grouped = grouped_triplet_loss(features, labels, groups)
    separate = [
        batch_hard_triplet_loss(features[groups == g], labels[groups == g], margin=0.5)
        for g in range(5)
    ]
    torch.testing.assert_close(grouped, torch.stack(separate).mean(), rtol=1e-6, atol=1e-6)


def test_one_group_equals_the_ungrouped_loss() -> None:
    features, labels, _ = random_batch(7, rows=32)
    grouped = grouped_triplet_loss(features, labels, torch.full((32,), 3), margin=0.3)
    torch.testing.assert_close(grouped, batch_hard_triplet_loss(features, labels, margin=0.3))


def test_groups_are_weighted_equally_whatever_their_size() -> None:
    # Two copies of the 4 points on a line, in groups 5 and 0: each group's mean is 1.5.
    features = torch.cat([LINE, LINE])
    labels = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1])
    groups = torch.tensor([5, 5, 5, 5, 0, 0, 0, 0])
    assert grouped_triplet_loss(features, labels, groups, margin=2.5).item() == 1.5
    # Without the last row, group 0 keeps anchors 0 and 1 (hinges 0.5, 1.5; anchor 3 has no
    # positive): a mean of group means gives (1.5 + 1.0) / 2, not (6 + 2) / 6 per anchor.
    uneven = grouped_triplet_loss(features[:7], labels[:7], groups[:7], margin=2.5)
    assert uneven.item() == 1.25


@pytest.mark.parametrize("grouped", [False, True])
def test_row_permutation_invariance(grouped) -> None:
    features, labels, groups = random_batch(3, rows=30)
    perm = torch.randperm(30, generator=torch.Generator().manual_seed(1))

    def run(f, y, g):
        return triplet_loss_details(f, y, 0.3, g if grouped else None)

    base, permuted = run(features, labels, groups), run(features[perm], labels[perm], groups[perm])
    torch.testing.assert_close(permuted.loss, base.loss, rtol=0, atol=1e-12)
    torch.testing.assert_close(permuted.anchor_losses, base.anchor_losses[perm])
    # Index i of the permuted batch is row perm[i] of the original one.
    valid = permuted.valid_anchors
    assert torch.equal(perm[permuted.positive_index[valid]], base.positive_index[perm][valid])
    assert torch.equal(perm[permuted.negative_index[valid]], base.negative_index[perm][valid])


@pytest.mark.parametrize(("squared", "normalize"), [(False, False), (True, False), (False, True)])
def test_gradcheck_batch_hard(squared, normalize) -> None:
    features, labels, _ = random_batch(11, rows=8, dim=3, identities=3)
    features.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x: batch_hard_triplet_loss(x, labels, 1.0, squared, normalize), (features,)
    )


def test_gradcheck_grouped() -> None:
    features, labels, groups = random_batch(12, rows=12, dim=3, identities=3, num_groups=2)
    features.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x: grouped_triplet_loss(x, labels, groups, margin=1.0), (features,)
    )


@pytest.mark.parametrize("squared", [False, True])
def test_coincident_points_give_finite_gradients(squared) -> None:
    # All distances are 0 (the anchor against itself included): the loss is the margin and the
    # clamp before the square root must keep the gradient finite (it is 0).
    features = torch.ones(4, 8, requires_grad=True)
    loss = batch_hard_triplet_loss(features, [0, 0, 1, 1], margin=0.3, squared=squared)
    loss.backward()
    assert loss.item() == pytest.approx(0.3)
    assert torch.isfinite(features.grad).all()


def test_duplicate_positive_pair_gives_finite_gradients() -> None:
    features = torch.tensor([[1.0, 2.0], [1.0, 2.0], [4.0, 0.0], [5.0, 1.0]], requires_grad=True)
    grouped_triplet_loss(features, [0, 0, 1, 1], [0, 0, 0, 0], margin=5.0).backward()
    assert torch.isfinite(features.grad).all()


def test_gradient_by_hand() -> None:
    # Every hinge of the 4 points on a line is active, so each anchor a with its mined p and n
    # adds d(|xa - xp| - |xa - xn|) / 4 to the gradient.
    features = LINE.clone().requires_grad_(True)
    batch_hard_triplet_loss(features, [0, 0, 1, 1], margin=2.5).backward()
    expected = torch.zeros(4)
    for a, p, n in [(0, 1, 2), (1, 0, 2), (2, 3, 1), (3, 2, 1)]:
        xa, xp, xn = (LINE[i, 0] for i in (a, p, n))
        expected[a] += (torch.sign(xa - xp) - torch.sign(xa - xn)) / 4
        expected[p] += torch.sign(xp - xa) / 4
        expected[n] -= torch.sign(xn - xa) / 4
    torch.testing.assert_close(features.grad[:, 0], expected)


def test_deterministic() -> None:
    features, labels, groups = random_batch(5, rows=50)
    first = grouped_triplet_loss(features, labels, groups)
    assert torch.equal(first, grouped_triplet_loss(features, labels, groups))


@pytest.mark.parametrize("device", DEVICES)
def test_runs_on_the_features_device(device) -> None:
    features, labels, groups = random_batch(4, rows=40, dtype=torch.float32)
    on_device = features.to(device)
    loss = grouped_triplet_loss(on_device, labels.to(device), groups.tolist())
    assert loss.device == on_device.device
    assert loss.dtype == torch.float32
    expected = reference_grouped_loss(features, labels, groups, 0.5)
    assert loss.item() == pytest.approx(expected, abs=1e-5)
    details = triplet_loss_details(on_device, labels, margin=0.3)
    assert details.positive_index.device == on_device.device


def test_modules_match_the_functions() -> None:
    features, labels, groups = random_batch(6)
    module = BatchHardTripletLoss(margin=0.2, squared=True)
    assert (
        module(features, labels).item()
        == batch_hard_triplet_loss(features, labels, 0.2, squared=True).item()
    )
    assert "margin=0.2, squared=True, normalize=False" in repr(module)
    grouped = GroupedTripletLoss()
    assert grouped.margin == 0.5
    assert (
        grouped(features, labels, groups).item()
        == grouped_triplet_loss(features, labels, groups).item()
    )


def test_batch_distance_matrix_matches_cdist_batched() -> None:
    features = torch.randn(3, 7, 4, dtype=torch.float64)
    distances = batch_distance_matrix(features)
    expected = torch.cdist(features, features)
    off_diagonal = ~torch.eye(7, dtype=torch.bool)
    torch.testing.assert_close(distances[:, off_diagonal], expected[:, off_diagonal])
    torch.testing.assert_close(batch_distance_matrix(features, squared=True), expected**2)


def test_distances_below_the_floor_are_clamped() -> None:
    # Squared distance 2**-60 (exact in float64) is below the 1e-12 floor: the distance reads
    # 1e-6 and has no gradient, instead of the steep sqrt near 0.
    features = torch.tensor([[0.0], [2.0**-30]], dtype=torch.float64, requires_grad=True)
    distances = batch_distance_matrix(features)
    assert distances[0, 1].item() == pytest.approx(1e-6)
    distances[0, 1].backward()
    assert torch.equal(features.grad, torch.zeros_like(features))


@pytest.mark.parametrize(
    ("labels", "groups"),
    [
        ([0, 1, 2, 3], None),  # no identity with a second row: no positive
        ([5, 5, 5, 5], None),  # one identity: no negative
        ([0, 1, 0, 1], [0, 0, 1, 1]),  # positives only in the other group
    ],
)
def test_no_valid_anchor_zero_gives_a_connected_zero(labels, groups) -> None:
    features = LINE.clone().requires_grad_(True)
    if groups is None:
        loss = batch_hard_triplet_loss(features, labels, no_valid_anchor="zero")
        module = BatchHardTripletLoss(no_valid_anchor="zero")(features, labels)
        with pytest.raises(ValueError, match="no_valid_anchor='zero'"):
            batch_hard_triplet_loss(features, labels)
    else:
        loss = grouped_triplet_loss(features, labels, groups, no_valid_anchor="zero")
        module = GroupedTripletLoss(no_valid_anchor="zero")(features, labels, groups)
        with pytest.raises(ValueError, match="no_valid_anchor='zero'"):
            grouped_triplet_loss(features, labels, groups)
    assert loss.item() == 0.0
    assert module.item() == 0.0
    loss.backward()
    assert features.grad is not None
    assert torch.equal(features.grad, torch.zeros_like(features))


def test_no_valid_anchor_zero_changes_nothing_when_an_anchor_is_valid() -> None:
    features, labels, groups = random_batch(6)
    assert torch.equal(
        grouped_triplet_loss(features, labels, groups, no_valid_anchor="zero"),
        grouped_triplet_loss(features, labels, groups),
    )
    assert torch.equal(
        batch_hard_triplet_loss(features, labels, no_valid_anchor="zero"),
        batch_hard_triplet_loss(features, labels),
    )
    assert "no_valid_anchor='zero'" in repr(GroupedTripletLoss(no_valid_anchor="zero"))


def test_no_valid_anchor_takes_raise_or_zero_only() -> None:
    with pytest.raises(ValueError, match="no_valid_anchor"):
        GroupedTripletLoss(no_valid_anchor="skip")
    with pytest.raises(ValueError, match="no_valid_anchor"):
        batch_hard_triplet_loss(LINE, [0, 0, 1, 1], no_valid_anchor="ignore")
