"""mask_visibility_loss: its target is the visible fraction of each cell, its value a BCE."""

from __future__ import annotations

import pytest
import torch

from oamn.losses import MaskVisibilityLoss, mask_visibility_loss, visibility_target
from oamn.occlusion_aug import band_mask


@pytest.mark.parametrize("location", [1, 2, 3, 4])
@pytest.mark.parametrize("area", [0.5, 0.25])
def test_target_is_one_minus_the_band_at_the_feature_resolution(location, area):
    # 128x64 images, stride 16: an 8x4 map; quarter and half bands fall on whole cells.
    pixels = band_mask([location], [area], 128, 64)
    expected = 1.0 - band_mask([location], [area], 8, 4).float()
    assert torch.equal(visibility_target(pixels, (8, 4)), expected)


def test_target_counts_partly_occluded_cells():
    occluded = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    occluded[0, 0, 0, :3] = True  # 2 of the top-left cell's 4 pixels, 1 of the top-right's
    target = visibility_target(occluded, (2, 2))
    assert target[0, 0].tolist() == [[0.5, 0.75], [1.0, 1.0]]


def test_loss_equals_a_binary_cross_entropy_written_out():
    generator = torch.Generator().manual_seed(0)
    m = torch.rand(6, 1, 4, 2, generator=generator, dtype=torch.float64) * 0.98 + 0.01
    occluded = torch.rand(6, 1, 16, 8, generator=generator) > 0.6
    v = visibility_target(occluded, (4, 2)).double()
    reference = -(v * m.log() + (1 - v) * (1 - m).log()).mean()
    torch.testing.assert_close(mask_visibility_loss(m, occluded), reference)
    torch.testing.assert_close(MaskVisibilityLoss()(m, occluded), reference)


def test_minimum_at_the_target_and_gradcheck():
    occluded = torch.zeros(2, 1, 8, 4, dtype=torch.bool)
    occluded[0, :, 4:] = True
    occluded[1, :, :, :1] = True
    target = visibility_target(occluded, (4, 2)).double().clamp(0.05, 0.95)
    m = target.clone().requires_grad_(True)
    loss = mask_visibility_loss(m, occluded)
    (grad,) = torch.autograd.grad(loss, m)
    clamped = (target == 0.05) | (target == 0.95)
    assert float(grad[~clamped].abs().max()) < 1e-12
    x = (torch.rand(2, 1, 4, 2, dtype=torch.float64) * 0.8 + 0.1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: mask_visibility_loss(t, occluded), (x,))


def test_errors_name_the_argument():
    occluded = torch.zeros(2, 1, 8, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="m must have shape"):
        mask_visibility_loss(torch.rand(2, 3, 4, 2), occluded)
    with pytest.raises(ValueError, match="occluded has 2 images"):
        mask_visibility_loss(torch.rand(3, 1, 4, 2), occluded)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        mask_visibility_loss(torch.rand(2, 1, 4, 2) + 1.0, occluded)
    with pytest.raises(ValueError, match="occluded must have shape"):
        mask_visibility_loss(torch.rand(2, 1, 4, 2), occluded[:, 0])
