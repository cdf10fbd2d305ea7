"""Bad input gets a TypeError/ValueError that names the argument."""

from __future__ import annotations

import inspect

import pytest
import torch

import oamn.losses
from oamn.losses import (
    BatchHardTripletLoss,
    GraderLoss,
    GroupedTripletLoss,
    MaskComplementLoss,
    MaskConsistencyLoss,
    batch_hard_triplet_loss,
    grader_loss,
    grader_targets,
    grouped_triplet_loss,
    mask_complement_loss,
    mask_consistency_loss,
)

FEATURES = torch.randn(4, 3)
LABELS = torch.tensor([0, 0, 1, 1])
WITH_NAN = torch.tensor([[0.0, 1.0], [torch.nan, 0.0], [2.0, 2.0], [3.0, 1.0]])
WITH_INF = torch.tensor([[0.0, 1.0], [torch.inf, 0.0], [2.0, 2.0], [3.0, 1.0]])


@pytest.mark.parametrize(
    ("features", "labels", "error", "match"),
    [
        ([[0.0], [1.0]], [0, 1], TypeError, "features must be a torch.Tensor"),
        (torch.zeros(4, 3, dtype=torch.int64), LABELS, TypeError, "features must be a floating"),
        (torch.randn(4), LABELS, ValueError, r"features must have shape \(N, D\)"),
        (torch.randn(2, 2, 2), [0, 1], ValueError, r"features must have shape \(N, D\)"),
        (torch.randn(0, 3), [], ValueError, "features is an empty batch"),
        (torch.randn(4, 0), LABELS, ValueError, "features must have no empty dimension"),
        (FEATURES, LABELS.float(), TypeError, r"labels must hold integers.*labels\.long\(\)"),
        (FEATURES, LABELS.bool(), TypeError, "labels must hold integers"),
        (FEATURES, [0, 0, 1], ValueError, r"labels must have shape \(4,\), one entry per row"),
        (FEATURES, LABELS[None], ValueError, r"labels must have shape \(4,\)"),
        (FEATURES, [0, 0, [1], 1], TypeError, "labels could not be made a tensor .* same length"),
        (FEATURES, [[0, 0], [1]], TypeError, "labels could not be made a tensor"),
        (FEATURES, ["a", "a", "b", "b"], TypeError, "labels could not be made a tensor"),
        (WITH_NAN, LABELS, ValueError, "features contains NaN or inf"),
        (WITH_INF, LABELS, ValueError, "features contains NaN or inf"),
        (FEATURES, [3, 3, 3, 3], ValueError, "single identity.*at least 2 identities"),
        (FEATURES, [0, 1, 2, 3], ValueError, "no identity in labels has 2 or more rows"),
        (FEATURES[:1], [0], ValueError, "single identity"),
    ],
)
def test_bad_triplet_inputs(features, labels, error, match) -> None:
    with pytest.raises(error, match=match):
        batch_hard_triplet_loss(features, labels)


@pytest.mark.parametrize(
    ("groups", "error", "match"),
    [
        (torch.zeros(4), TypeError, "groups must hold integers"),
        ([0, 1], ValueError, r"groups must have shape \(4,\)"),
        ([0, 0, None, 1], TypeError, "groups could not be made a tensor"),
        ([0, 1, 0, 1], ValueError, "no group has a valid anchor"),
        ([0, 0, 1, 1], ValueError, "no group has a valid anchor"),
    ],
)
def test_bad_groups(groups, error, match) -> None:
    with pytest.raises(error, match=match):
        grouped_triplet_loss(FEATURES, LABELS, groups)


@pytest.mark.parametrize("groups", [[0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1]])
def test_grouped_checks_features_for_nan(groups) -> None:
    # With groups [0, 0, 0, 0, 1, 1], the NaN row's group has no valid anchor: the loss would be
    # finite but the gradients of group 1 NaN, so the input is refused all the same.
    features = torch.cat([WITH_NAN[[0, 2, 3, 2]], WITH_NAN[[1, 0]]])
    with pytest.raises(ValueError, match="features contains NaN or inf"):
        grouped_triplet_loss(features, [0, 0, 1, 1, 2, 2], groups)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"margin": -0.1}, ValueError, "margin must be a finite number >= 0"),
        ({"margin": float("nan")}, ValueError, "margin must be a finite number >= 0"),
        ({"margin": "0.3"}, TypeError, "margin must be a number"),
        ({"margin": True}, TypeError, "margin must be a number"),
        ({"squared": 1}, TypeError, "squared must be a bool"),
        ({"normalize": None}, TypeError, "normalize must be a bool"),
    ],
)
def test_bad_triplet_options(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        batch_hard_triplet_loss(FEATURES, LABELS, **kwargs)
    with pytest.raises(error, match=match):
        grouped_triplet_loss(FEATURES, LABELS, [0, 0, 0, 0], **kwargs)
    with pytest.raises(error, match=match):
        BatchHardTripletLoss(**kwargs)
    with pytest.raises(error, match=match):
        GroupedTripletLoss(**kwargs)


F_HOLISTIC = torch.rand(2, 3, 4, 2)
F_OCCLUDED = torch.rand(8, 3, 4, 2)
M_OCCLUDED = torch.rand(8, 1, 4, 2)


def _with_nan(tensor: torch.Tensor) -> torch.Tensor:
    tensor = tensor.clone()
    tensor.view(-1)[0] = torch.nan
    return tensor


@pytest.mark.parametrize(
    ("f_holistic", "f_occluded", "m_occluded", "error", "match"),
    [
        (F_HOLISTIC.numpy(), F_OCCLUDED, M_OCCLUDED, TypeError, "f_holistic must be a torch"),
        (F_HOLISTIC[0], F_OCCLUDED, M_OCCLUDED, ValueError, r"f_holistic must have shape \(B"),
        (F_HOLISTIC[:0], F_OCCLUDED, M_OCCLUDED, ValueError, "f_holistic is an empty batch"),
        (F_HOLISTIC.long(), F_OCCLUDED, M_OCCLUDED, TypeError, "f_holistic must be a floating"),
        (F_HOLISTIC, F_OCCLUDED[:7], M_OCCLUDED, ValueError, r"f_occluded must have shape \(P\*B"),
        (F_HOLISTIC, F_OCCLUDED[:, :2], M_OCCLUDED, ValueError, r"= \(P\*2, 3, 4, 2\)"),
        (F_HOLISTIC, F_OCCLUDED[:, 0], M_OCCLUDED, ValueError, r"f_occluded must have shape"),
        (F_HOLISTIC, F_OCCLUDED, M_OCCLUDED[:4], ValueError, r"m_occluded must have shape \(8, 1"),
        (F_HOLISTIC, F_OCCLUDED, M_OCCLUDED[..., :1], ValueError, "one mask per row"),
        (F_HOLISTIC, F_OCCLUDED, torch.rand(8, 2, 4, 2), ValueError, "1 channel .* or C = 3"),
        (F_HOLISTIC, F_OCCLUDED.double(), M_OCCLUDED, TypeError, r"f_occluded\.to\(f_holistic"),
        (F_HOLISTIC, F_OCCLUDED, M_OCCLUDED.half(), TypeError, "m_occluded is torch.float16"),
        (F_HOLISTIC, F_OCCLUDED.to("meta"), M_OCCLUDED, ValueError, "f_occluded is on meta"),
        (_with_nan(F_HOLISTIC), F_OCCLUDED, M_OCCLUDED, ValueError, "f_holistic contains NaN"),
        (F_HOLISTIC, _with_nan(F_OCCLUDED), M_OCCLUDED, ValueError, "f_occluded contains NaN"),
        (F_HOLISTIC, F_OCCLUDED, _with_nan(M_OCCLUDED), ValueError, "m_occluded contains NaN"),
    ],
)
def test_bad_consistency_inputs(f_holistic, f_occluded, m_occluded, error, match) -> None:
    with pytest.raises(error, match=match):
        mask_consistency_loss(f_holistic, f_occluded, m_occluded)


G = torch.rand(2, 3, 4, 2)
IS_HALF = torch.tensor([True, False])


@pytest.mark.parametrize(
    ("g_left", "is_half", "error", "match"),
    [
        (G[:1], IS_HALF, ValueError, r"g_left must have the shape of g_holistic, \(2, 3, 4, 2\)"),
        (G[0], IS_HALF, ValueError, r"g_left must have shape \(B, C, H, W\)"),
        (G.double(), IS_HALF, TypeError, r"g_left is torch\.float64 but g_holistic"),
        (G, IS_HALF.long(), TypeError, r"is_half must be a bool .*, got torch.int64.*\.bool\(\)"),
        (G, [1, 0], TypeError, "is_half must be a bool tensor or a list of bools, got torch.int64"),
        (G, [True, [False]], TypeError, "is_half could not be made a tensor"),
        (G, ["half", "quarter"], TypeError, "is_half could not be made a tensor"),
        (G, IS_HALF[:1], ValueError, r"is_half must have shape \(2,\)"),
        (_with_nan(G), IS_HALF, ValueError, "g_left contains NaN"),
    ],
)
def test_bad_complement_inputs(g_left, is_half, error, match) -> None:
    with pytest.raises(error, match=match):
        mask_complement_loss(G, G, G, g_left, G, is_half)


@pytest.mark.parametrize("loss", [mask_consistency_loss, mask_complement_loss])
def test_bad_reduction(loss) -> None:
    inputs = (F_HOLISTIC, F_OCCLUDED, M_OCCLUDED)
    if loss is mask_complement_loss:
        inputs = (G, G, G, G, G, IS_HALF)
    with pytest.raises(ValueError, match=r"reduction must be one of \('mean', 'batchmean'\)"):
        loss(*inputs, reduction="sum")


@pytest.mark.parametrize("module", [MaskConsistencyLoss, MaskComplementLoss])
def test_bad_module_reduction(module) -> None:
    with pytest.raises(ValueError, match="reduction must be one of"):
        module(reduction="none")


SCORES = torch.full((3, 4), 0.25)


@pytest.mark.parametrize(
    ("scores", "location", "area", "error", "match"),
    [
        (SCORES[:, :3], [0, 1, 2], [0, 0.5, 0.5], ValueError, r"scores must have shape \(N, 4\)"),
        (SCORES[0], [0, 1, 2], [0, 0.5, 0.5], ValueError, r"scores must have shape \(N, 4\)"),
        (SCORES[:0], [], [], ValueError, "scores is an empty batch"),
        (SCORES.long(), [0, 1, 2], [0, 0.5, 0.5], TypeError, "scores must be a floating"),
        (_with_nan(SCORES), [0, 1, 2], [0, 0.5, 0.5], ValueError, "scores contains NaN"),
        (SCORES, [0, 1], [0, 0.5], ValueError, r"location must have shape \(3,\), one .* scores"),
        (SCORES, [0.0, 1.0, 2.0], [0, 0.5, 0.5], TypeError, "location must hold integers"),
        (SCORES, [0, [1], 2], [0, 0.5, 0.5], TypeError, "location could not be made a tensor"),
        (SCORES, [0, 1, 2], [0, 0.5, [0.5]], TypeError, "area could not be made a tensor"),
        (SCORES, [0, 1, 2], ["0", "0.5", "0.5"], TypeError, "area could not be made a tensor"),
        (SCORES, [0, 1, 2], [0, 0.5], ValueError, r"area must have the shape of location"),
        (SCORES, [0, 1, 5], [0, 0.5, 0.5], ValueError, r"location codes must be in 0\.\.4"),
        (SCORES, [-1, 1, 2], [0, 0.5, 0.5], ValueError, r"location codes must be in 0\.\.4"),
        (SCORES, [0, 1, 2], [0, 0.5, 0.3], ValueError, r"area values must be 0, 0\.25 or 0\.5"),
        (SCORES, [0, 1, 2], [0, 0.5, 1.0], ValueError, r"area values must be 0, 0\.25 or 0\.5"),
        (SCORES, [0, 1, 2], [0.5, 0.5, 0.5], ValueError, "row 0 has location 0 and area 0.5"),
        (SCORES, [0, 1, 2], [0, 0.5, 0.0], ValueError, "row 2 has location 2 and area 0.0"),
        (SCORES, [0, 1, 2], [False, True, True], TypeError, "area must hold the areas"),
    ],
)
def test_bad_grader_inputs(scores, location, area, error, match) -> None:
    with pytest.raises(error, match=match):
        grader_loss(scores, location, area)


def test_bad_grader_target_inputs() -> None:
    with pytest.raises(ValueError, match=r"location must have shape \(N,\)"):
        grader_targets(torch.zeros(2, 2, dtype=torch.int64), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="convention must be one of"):
        grader_targets([0], [0.0], convention="authors")


def test_bad_grader_convention() -> None:
    choices = r"\('paper', 'official', 'distribution'\)"
    with pytest.raises(ValueError, match=rf"convention must be one of {choices}"):
        grader_loss(SCORES, [0, 1, 2], [0, 0.5, 0.5], convention="Paper")
    with pytest.raises(ValueError, match="convention must be one of"):
        GraderLoss("official ")


LOSS_MODULES = [
    value
    for value in (getattr(oamn.losses, name) for name in oamn.losses.__all__)
    if isinstance(value, type) and issubclass(value, torch.nn.Module)
]


@pytest.mark.parametrize("module", LOSS_MODULES, ids=lambda module: module.__name__)
def test_every_loss_module_documents_its_forward(module: type) -> None:
    doc = module.forward.__doc__ or ""
    assert "Returns:" in doc, f"{module.__name__}.forward has no docstring with its returns"
    for argument in list(inspect.signature(module.forward).parameters)[1:]:
        assert argument in doc, f"{module.__name__}.forward does not document {argument}"
