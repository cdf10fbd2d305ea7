"""Every loss computes in float32 under bfloat16 autocast, against its float32 value.

Two tolerances: float32 inputs under autocast give the float32 loss up to summation order
(``rtol=1e-5``): the matrix products a loss makes are not lowered to bfloat16. bfloat16 inputs
(what a model under autocast outputs) give a float32 loss within their own rounding: a relative
``2^-8`` per input value, hence ``rtol=2e-2`` on the loss.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from oamn.losses import (
    GroupedTripletLoss,
    batch_distance_matrix,
    batch_hard_triplet_loss,
    grader_loss,
    grouped_triplet_loss,
    mask_complement_loss,
    mask_consistency_loss,
)
from tests.conftest import DEVICES

EXACT = {"rtol": 1e-5, "atol": 1e-6}
ROUNDED = {"rtol": 2e-2, "atol": 1e-3}


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def triplet_inputs() -> tuple[list[torch.Tensor], dict]:
    # Features of a trained scale (norms ~30), 16 ids x 4 images in 5 location groups.
    features = 3 * torch.randn(320, 128, generator=_generator(0))
    labels = torch.arange(16).repeat_interleave(4).repeat(5)
    groups = torch.arange(5).repeat_interleave(64)
    return [features], {"labels": labels, "groups": groups}


def mask_inputs() -> tuple[list[torch.Tensor], dict]:
    f_holistic = torch.rand(8, 16, 8, 4, generator=_generator(1))
    f_occluded = torch.rand(32, 16, 8, 4, generator=_generator(2))
    m_occluded = torch.rand(32, 1, 8, 4, generator=_generator(3))
    return [f_holistic, f_occluded, m_occluded], {}


def complement_inputs() -> tuple[list[torch.Tensor], dict]:
    maps = [torch.rand(8, 16, 8, 4, generator=_generator(4 + k)) for k in range(5)]
    return maps, {"is_half": torch.tensor([True, False] * 4)}


def grader_inputs() -> tuple[list[torch.Tensor], dict]:
    scores = torch.randn(40, 4, generator=_generator(9)).softmax(1)
    location = torch.arange(5).repeat_interleave(8)
    area = torch.where(location > 0, 0.5, 0.0)
    return [scores], {"location": location, "area": area}


LOSSES: dict[str, tuple[Callable, Callable]] = {
    "batch_distance_matrix": (lambda x, **_: batch_distance_matrix(x), triplet_inputs),
    "batch_hard_triplet_loss": (
        lambda x, labels, groups: batch_hard_triplet_loss(x, labels, margin=0.5),
        triplet_inputs,
    ),
    "grouped_triplet_loss": (grouped_triplet_loss, triplet_inputs),
    "GroupedTripletLoss": (lambda x, **kw: GroupedTripletLoss(margin=0.5)(x, **kw), triplet_inputs),
    "mask_consistency_loss": (mask_consistency_loss, mask_inputs),
    "mask_consistency_loss normalised": (
        lambda *maps: mask_consistency_loss(*maps, normalize=True),
        mask_inputs,
    ),
    "mask_complement_loss": (mask_complement_loss, complement_inputs),
    "grader_loss paper": (grader_loss, grader_inputs),
    "grader_loss distribution": (
        lambda s, **kw: grader_loss(s, **kw, convention="distribution"),
        grader_inputs,
    ),
}


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("device", DEVICES)
def test_float32_under_autocast(name: str, device: str) -> None:
    loss_fn, make_inputs = LOSSES[name]
    tensors, options = make_inputs()
    tensors = [t.to(device) for t in tensors]
    options = {key: value.to(device) for key, value in options.items()}
    dtype = torch.bfloat16 if device == "cpu" else torch.float16
    expected = loss_fn(*tensors, **options)
    leaves = [t.clone().requires_grad_() for t in tensors]
    with torch.autocast(device, dtype=dtype):
        assert (torch.ones(2, 2, device=device) @ torch.ones(2, 2, device=device)).dtype == dtype
        same = loss_fn(*leaves, **options)
        rounded = loss_fn(*(t.to(dtype) for t in tensors), **options)
    assert same.dtype == rounded.dtype == torch.float32
    torch.testing.assert_close(same, expected, **EXACT)
    torch.testing.assert_close(rounded, expected, **ROUNDED)
    same.sum().backward()
    for leaf in leaves:
        assert leaf.grad.dtype == torch.float32
        assert bool(torch.isfinite(leaf.grad).all())


def test_outside_autocast_the_inputs_dtype_is_kept() -> None:
    (features,), options = triplet_inputs()
    assert grouped_triplet_loss(features.bfloat16(), **options).dtype == torch.bfloat16
    assert grouped_triplet_loss(features.double(), **options).dtype == torch.float64


def test_without_float32_the_distances_would_be_bfloat16_products() -> None:
    # The reference the decorator is for: the undecorated function under autocast.
    (features,), _ = triplet_inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lowered = batch_distance_matrix.__wrapped__(features)
        kept = batch_distance_matrix(features)
    assert lowered.dtype == torch.bfloat16
    error = (lowered.float() - batch_distance_matrix(features)).abs().max()
    assert error > 0.05  # far outside EXACT: a hardest negative can change
    torch.testing.assert_close(kept, batch_distance_matrix(features), **EXACT)
