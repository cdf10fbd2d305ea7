"""The scale-normalised L_mask1 and L_mask2 (``normalize=True``, ``m_holistic``): references,
invariances, gradients."""

from __future__ import annotations

import pytest
import torch

from oamn.losses import mask_complement_loss, mask_consistency_loss
from tests.losses.helpers_mask import (
    complement_inputs,
    consistency_inputs,
    holistic_masks,
    random_maps,
)

# Scale-normalised losses. L_mask1 (normalize=True): each copy's mask over its own spatial mean,
# each image's features over a stop-gradient root mean square of its holistic features.
# L_mask2 (m_holistic given): every g over mu * sg(s), mu the mean of all the holistic masks of
# the batch and s the root mean square of g_holistic / mu over the whole batch.

SCALES = torch.tensor([0.3, 7.0, 2.5], dtype=torch.float64)  # one positive scale per image


def per_image(scales, copies=1):
    """``(copies * B, 1, 1, 1)`` scales for ``copies`` blocks of ``B`` rows, row ``p*B+i`` -> i."""
    return scales.repeat(copies)[:, None, None, None]


def per_row(seed, rows):
    """``(rows, 1, 1, 1)`` positive scales, all different, spread over two decades."""
    return (0.1 * 100 ** random_maps(seed, rows))[:, None, None, None]


def normalised_consistency(f_holistic, f_occluded, m_occluded, reduction, sg=True):
    """``sum_p sum_i ||(f_i - f_i^p) / sg(rms(f_i)) * m_i^p / mean_hw(m_i^p)||^2``, one copy at a
    time; ``sg=False`` lets the gradient through the feature scale."""
    batch = len(f_holistic)
    total = 0
    for row in range(len(f_occluded)):
        i = row % batch
        rms = f_holistic[i].pow(2).mean().sqrt()
        rms = rms.detach() if sg else rms
        mask = m_occluded[row] / m_occluded[row].mean((-2, -1), keepdim=True)
        total = total + ((f_holistic[i] - f_occluded[row]) / rms * mask).pow(2).sum()
    return total / (f_holistic.numel() if reduction == "mean" else batch)


def normalised_complement(g, g_t, g_b, g_l, g_r, is_half, m_holistic, reduction, sg=True):
    """Every ``g`` over ``mu * sg(rms(g / mu))``, ``mu`` the mean of all of ``m_holistic`` and
    the rms over all of ``g``, then eq. 3 one half-occluded image at a time; ``sg=False`` lets
    the gradient through ``s``."""
    mu = m_holistic.mean()
    s = (g / mu).pow(2).mean().sqrt()
    scale = mu * (s.detach() if sg else s)
    total = 0
    for i in range(len(g)):
        if is_half[i]:
            total = total + ((g_t[i] + g_b[i] - g[i]) / scale).pow(2).sum()
            total = total + ((g_l[i] + g_r[i] - g[i]) / scale).pow(2).sum()
    return total / (g.numel() if reduction == "mean" else int(is_half.sum()))


def per_image_complement(g, g_t, g_b, g_l, g_r, is_half, m_holistic, reduction):
    """The per-image alternative, *not* the loss: image ``i``'s ``g`` over its own scale."""
    total = 0
    for i in range(len(g)):
        if is_half[i]:
            mu = m_holistic[i].mean()
            scale = mu * (g[i] / mu).pow(2).mean().sqrt()
            total = total + ((g_t[i] + g_b[i] - g[i]) / scale).pow(2).sum()
            total = total + ((g_l[i] + g_r[i] - g[i]) / scale).pow(2).sum()
    return total / (g.numel() if reduction == "mean" else int(is_half.sum()))


@pytest.mark.parametrize("reduction", ["mean", "batchmean"])
@pytest.mark.parametrize("seed", range(2))
def test_normalised_losses_match_a_per_copy_and_batch_reference(reduction, seed) -> None:
    inputs = consistency_inputs(20 + seed, copies=2)
    loss = mask_consistency_loss(*inputs, reduction, normalize=True)
    torch.testing.assert_close(loss, normalised_consistency(*inputs, reduction))
    # The normalisation changes the value: it is not the paper's loss.
    assert loss.item() != pytest.approx(mask_consistency_loss(*inputs, reduction).item())
    # A mask with C channels: each channel over its own spatial mean.
    f_holistic, f_occluded, _ = inputs
    m_channels = random_maps(25 + seed, *f_occluded.shape)
    torch.testing.assert_close(
        mask_consistency_loss(f_holistic, f_occluded, m_channels, reduction, normalize=True),
        normalised_consistency(f_holistic, f_occluded, m_channels, reduction),
    )
    *maps, is_half = complement_inputs(40 + seed)
    m_holistic = holistic_masks(50 + seed, batch=4)
    loss = mask_complement_loss(*maps, is_half, reduction, m_holistic=m_holistic)
    torch.testing.assert_close(loss, normalised_complement(*maps, is_half, m_holistic, reduction))
    assert loss.item() != pytest.approx(mask_complement_loss(*maps, is_half, reduction).item())
    # Batch-level, not per image.
    assert loss.item() != pytest.approx(
        per_image_complement(*maps, is_half, m_holistic, reduction).item()
    )


def test_normalised_losses_by_hand() -> None:
    # L_mask1: B = 1, C = H = 1, W = 2; f = [2, 0] has rms sqrt(2). One copy f^p = [1, 1] with
    # mask [0.2, 0.6] (mean 0.4): residual [1, -1] / sqrt(2), mask over its mean [0.5, 1.5]
    # -> 1/2 * 0.25 + 1/2 * 2.25 = 1.25 ("batchmean"); "mean" divides by C*H*W = 2 more.
    f = torch.tensor([[[[2.0, 0.0]]]], dtype=torch.float64)
    f_p = torch.tensor([[[[1.0, 1.0]]]], dtype=torch.float64)
    m_p = torch.tensor([[[[0.2, 0.6]]]], dtype=torch.float64)
    loss = mask_consistency_loss(f, f_p, m_p, "batchmean", normalize=True)
    assert loss.item() == pytest.approx(1.25, rel=1e-12)
    assert mask_consistency_loss(f, f_p, m_p, normalize=True).item() == pytest.approx(0.625)
    # L_mask2: B = 2, C = H = 1, W = 2; g = [[2, 0], [2, 2]] has rms sqrt(12 / 4) = sqrt(3)
    # over the batch, the holistic masks mean mu = 0.55, so every g is divided by
    # 0.55 * sqrt(3) / 0.55 = sqrt(3). Only row 0 is half-occluded: top + bottom - g = [0, 2]
    # -> 4, left + right - g = 0: 4 / 3 ("batchmean", one half row), / (B*C*H*W = 4) ("mean").
    # Per image, row 0 alone (rms sqrt(2)) would give 4 / 2 = 2 instead.
    g = torch.tensor([[[[2.0, 0.0]]], [[[2.0, 2.0]]]], dtype=torch.float64)
    g_tb = torch.ones_like(g)
    g_lr = torch.tensor([[[[1.0, 0.0]]], [[[1.0, 1.0]]]], dtype=torch.float64)
    half = torch.tensor([True, False])
    m_holistic = torch.tensor([[[[0.5, 0.1]]], [[[0.9, 0.7]]]], dtype=torch.float64)
    args = (g, g_tb, g_tb, g_lr, g_lr, half)
    assert mask_complement_loss(*args, "batchmean", m_holistic=m_holistic).item() == (
        pytest.approx(4 / 3, rel=1e-12)
    )
    assert mask_complement_loss(*args, m_holistic=m_holistic).item() == pytest.approx(1 / 3)
    # The mask mean cancels from L_mask2's *value* (g / (mu * rms(g) / mu) = g / rms(g)): only
    # its gradient depends on m_holistic.
    other = torch.tensor([[[[0.3, 0.1]]], [[[0.2, 0.9]]]], dtype=torch.float64)
    assert mask_complement_loss(*args, m_holistic=other).item() == pytest.approx(1 / 3)


@pytest.mark.parametrize("reduction", ["mean", "batchmean"])
def test_normalised_consistency_ignores_a_mask_scale_per_copy_and_a_feature_scale_per_image(
    reduction,
) -> None:
    f_holistic, f_occluded, m_occluded = consistency_inputs(60, batch=3, copies=4)
    loss = mask_consistency_loss(f_holistic, f_occluded, m_occluded, reduction, normalize=True)
    c_copy = per_row(61, 12)  # a different scale for each of the P * B copies' masks
    masks_scaled = mask_consistency_loss(
        f_holistic, f_occluded, m_occluded * c_copy, reduction, normalize=True
    )
    features_scaled = mask_consistency_loss(
        f_holistic * per_image(SCALES),
        f_occluded * per_image(SCALES, 4),
        m_occluded,
        reduction,
        normalize=True,
    )
    both_scaled = mask_consistency_loss(
        f_holistic * per_image(SCALES),
        f_occluded * per_image(SCALES, 4),
        m_occluded * c_copy,
        reduction,
        normalize=True,
    )
    torch.testing.assert_close(masks_scaled, loss)
    torch.testing.assert_close(features_scaled, loss)
    torch.testing.assert_close(both_scaled, loss)
    # The scales are not trivial: the paper form moves with them.
    paper = mask_consistency_loss(f_holistic, f_occluded, m_occluded, reduction)
    paper_scaled = mask_consistency_loss(f_holistic, f_occluded, m_occluded * c_copy, reduction)
    assert paper_scaled.item() != pytest.approx(paper.item())
    # Scaling only the copies' features is *not* a no-op: the scale comes from f_holistic.
    only_copies = mask_consistency_loss(
        f_holistic, 2 * f_occluded, m_occluded, reduction, normalize=True
    )
    assert only_copies.item() != pytest.approx(loss.item())


@pytest.mark.parametrize("reduction", ["mean", "batchmean"])
def test_normalised_complement_ignores_a_common_mask_or_feature_scale(reduction) -> None:
    # g = m * f: a common mask scale multiplies every g and the holistic masks, a common feature
    # scale every g only.
    *maps, is_half = complement_inputs(62, batch=4)
    m_holistic = holistic_masks(63, batch=4)
    loss = mask_complement_loss(*maps, is_half, reduction, m_holistic=m_holistic)
    for c in (0.01, 0.3, 7.0):
        scaled = [g * c for g in maps]
        torch.testing.assert_close(
            mask_complement_loss(*scaled, is_half, reduction, m_holistic=m_holistic * c), loss
        )
        torch.testing.assert_close(
            mask_complement_loss(*scaled, is_half, reduction, m_holistic=m_holistic), loss
        )
        torch.testing.assert_close(
            mask_complement_loss(*maps, is_half, reduction, m_holistic=m_holistic * c), loss
        )


@pytest.mark.parametrize("reduction", ["mean", "batchmean"])
def test_normalised_complement_is_not_invariant_to_a_per_image_scale(reduction) -> None:
    # The scale is batch-level: scaling one image's masks (every g of it and its holistic mask)
    # changes its weight in the loss. The per-image alternative would not move.
    *maps, is_half = complement_inputs(64, batch=3)
    assert is_half.tolist() == [True, False, True]  # two half rows with different scales
    m_holistic = holistic_masks(65)
    loss = mask_complement_loss(*maps, is_half, reduction, m_holistic=m_holistic)
    c = per_image(SCALES)
    scaled, m_scaled = [g * c for g in maps], m_holistic * c
    moved = mask_complement_loss(*scaled, is_half, reduction, m_holistic=m_scaled)
    assert moved.item() != pytest.approx(loss.item(), rel=1e-3)
    torch.testing.assert_close(moved, normalised_complement(*scaled, is_half, m_scaled, reduction))
    torch.testing.assert_close(
        per_image_complement(*scaled, is_half, m_scaled, reduction),
        per_image_complement(*maps, is_half, m_holistic, reduction),
    )
    # The quarter row counts in the scale, though not in the sum.
    g, *copies = maps
    g = g.clone()
    g[1] *= 5.0
    quarter = mask_complement_loss(g, *copies, is_half, reduction, m_holistic=m_holistic)
    assert quarter.item() < loss.item()
    torch.testing.assert_close(
        quarter, normalised_complement(g, *copies, is_half, m_holistic, reduction)
    )


@pytest.mark.parametrize("reduction", ["mean", "batchmean"])
def test_paper_form_is_quadratic_in_the_mask_scale(reduction) -> None:
    # The contrast: as printed, shrinking every mask by c shrinks both losses by c^2; the
    # normalised forms do not move.
    f_holistic, f_occluded, m_occluded = consistency_inputs(66)
    loss = mask_consistency_loss(f_holistic, f_occluded, m_occluded, reduction)
    shrunk = mask_consistency_loss(f_holistic, f_occluded, 0.1 * m_occluded, reduction)
    torch.testing.assert_close(shrunk, 0.01 * loss)
    normalised = mask_consistency_loss(
        f_holistic, f_occluded, m_occluded, reduction, normalize=True
    )
    torch.testing.assert_close(
        mask_consistency_loss(f_holistic, f_occluded, 0.1 * m_occluded, reduction, normalize=True),
        normalised,
    )
    *maps, is_half = complement_inputs(67, batch=3)
    loss = mask_complement_loss(*maps, is_half, reduction)
    torch.testing.assert_close(
        mask_complement_loss(*(0.1 * g for g in maps), is_half, reduction), 0.01 * loss
    )
    m_holistic = holistic_masks(68)
    normalised = mask_complement_loss(*maps, is_half, reduction, m_holistic=m_holistic)
    torch.testing.assert_close(
        mask_complement_loss(
            *(0.1 * g for g in maps), is_half, reduction, m_holistic=0.1 * m_holistic
        ),
        normalised,
    )


@pytest.mark.parametrize("reduction", ["mean", "batchmean"])
def test_normalised_gradcheck(reduction) -> None:
    # gradcheck compares autograd with finite differences, which also move the stop-gradient
    # scales; it holds for the inputs that do not enter them.
    f_holistic, f_occluded, m_occluded = consistency_inputs(69, batch=2, copies=2, channels=2)
    f_occluded.requires_grad_(True)
    m_occluded.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda b, c: mask_consistency_loss(f_holistic, b, c, reduction, normalize=True),
        (f_occluded, m_occluded),
    )
    *maps, is_half = complement_inputs(70, batch=3, channels=2)
    g, copies = maps[0], [x.requires_grad_(True) for x in maps[1:]]
    m_holistic = holistic_masks(71)
    assert torch.autograd.gradcheck(
        lambda *c: mask_complement_loss(g, *c, is_half, reduction, m_holistic=m_holistic),
        tuple(copies),
    )
    # L_mask1's holistic features feed the stop-gradient scale: finite differences see it,
    # autograd does not, so gradcheck must fail there (a missing detach would make it pass).
    f_holistic.requires_grad_(True)
    assert not torch.autograd.gradcheck(
        lambda a: mask_consistency_loss(a, f_occluded, m_occluded, reduction, normalize=True),
        (f_holistic,),
        raise_exception=False,
    )
    # L_mask2's g_holistic and m_holistic feed s likewise (mu cancels from the value, so finite
    # differences see no change at all along m_holistic; autograd does).
    g.requires_grad_(True)
    m_holistic.requires_grad_(True)
    assert not torch.autograd.gradcheck(
        lambda a: mask_complement_loss(a, *copies, is_half, reduction, m_holistic=m_holistic),
        (g,),
        raise_exception=False,
    )
    assert not torch.autograd.gradcheck(
        lambda m: mask_complement_loss(g, *copies, is_half, reduction, m_holistic=m),
        (m_holistic,),
        raise_exception=False,
    )


@pytest.mark.parametrize("reduction", ["mean", "batchmean"])
def test_normalised_gradients_equal_the_reference_with_stop_gradient(reduction) -> None:
    inputs = [x.requires_grad_(True) for x in consistency_inputs(72, batch=2, copies=2)]
    got = torch.autograd.grad(mask_consistency_loss(*inputs, reduction, normalize=True), inputs)
    expected = torch.autograd.grad(normalised_consistency(*inputs, reduction), inputs)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b)
    # Without the stop-gradient the holistic features' gradient would differ.
    no_sg = torch.autograd.grad(normalised_consistency(*inputs, reduction, sg=False), inputs[0])
    assert not torch.allclose(got[0], no_sg[0])

    *maps, is_half = complement_inputs(73, batch=4)
    maps = [x.requires_grad_(True) for x in maps]
    m_holistic = holistic_masks(74, batch=4).requires_grad_(True)
    leaves = [*maps, m_holistic]
    got = torch.autograd.grad(
        mask_complement_loss(*maps, is_half, reduction, m_holistic=m_holistic), leaves
    )
    expected = torch.autograd.grad(
        normalised_complement(*maps, is_half, m_holistic, reduction), leaves
    )
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b)
    # Without the stop-gradient on s, g_holistic's and m_holistic's gradients would differ.
    no_sg = torch.autograd.grad(
        normalised_complement(*maps, is_half, m_holistic, reduction, sg=False),
        [maps[0], m_holistic],
    )
    assert not torch.allclose(got[0], no_sg[0])
    assert not torch.allclose(got[-1], no_sg[1])


def test_normalised_gradients_have_no_component_along_the_mask_scale() -> None:
    # L_mask1 is of degree 0 in each copy's mask (the stop-gradient scale does not depend on the
    # masks): by Euler, sum(grad * m) over each copy's mask is 0. The features still get the
    # degree-2 gradient, sum(grad * f) = 2 * loss, since their scale is a constant.
    batch, copies = 3, 2
    f_holistic, f_occluded, m_occluded = (
        x.requires_grad_(True) for x in consistency_inputs(75, batch=batch, copies=copies)
    )
    loss = mask_consistency_loss(f_holistic, f_occluded, m_occluded, "batchmean", normalize=True)
    grads = torch.autograd.grad(loss, [f_holistic, f_occluded, m_occluded])
    along_mask = (grads[2] * m_occluded).sum((1, 2, 3))
    torch.testing.assert_close(along_mask, torch.zeros(copies * batch, dtype=torch.float64))
    assert grads[2].abs().amax() > 0  # the mask's shape still gets a gradient
    along_features = (grads[0] * f_holistic).sum() + (grads[1] * f_occluded).sum()
    torch.testing.assert_close(along_features, 2 * loss)
    # L_mask2 is of degree 0 in a common scale of every g and all the holistic masks, but not
    # per image: image i's component is not 0, only their sum is.
    *maps, is_half = complement_inputs(77, batch=4)
    maps = [x.requires_grad_(True) for x in maps]
    m_holistic = holistic_masks(78, batch=4).requires_grad_(True)
    loss = mask_complement_loss(*maps, is_half, "batchmean", m_holistic=m_holistic)
    grads = torch.autograd.grad(loss, [*maps, m_holistic])
    per_image_component = sum(
        (grad * x).sum((1, 2, 3)) for grad, x in zip(grads, [*maps, m_holistic], strict=True)
    )
    torch.testing.assert_close(
        per_image_component.sum(), torch.zeros((), dtype=torch.float64), rtol=0, atol=1e-12
    )
    assert per_image_component.abs().amax() > 1e-3 * loss
    # The features (every g, m_holistic fixed): sum(grad * g) = 2 * loss, s being a constant.
    along_features = sum((grad * x).sum() for grad, x in zip(grads[:5], maps, strict=True))
    torch.testing.assert_close(along_features, 2 * loss)
    # The paper form, by contrast, is lowered by shrinking the masks: sum(grad * m) = 2 * loss.
    loss = mask_complement_loss(*maps, is_half, "batchmean")
    grads = torch.autograd.grad(loss, maps)
    torch.testing.assert_close(
        sum((grad * x).sum() for grad, x in zip(grads, maps, strict=True)), 2 * loss
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("rest", [0.0, 1e-30])
def test_normalised_consistency_mask_is_bounded_by_the_map_size(dtype, rest) -> None:
    # A mask in [0, 1] over its mean is at most H * W (reached by a single position at 1), so a
    # peaked mask gives a finite loss and finite gradients, no inf or NaN.
    height, width = 4, 3
    f_holistic = random_maps(79, 1, 2, height, width, dtype=dtype)
    f_occluded = random_maps(80, 1, 2, height, width, dtype=dtype).requires_grad_(True)
    m_occluded = torch.full((1, 1, height, width), rest, dtype=dtype)
    m_occluded[0, 0, 1, 2] = 1.0
    m_occluded.requires_grad_(True)
    loss = mask_consistency_loss(f_holistic, f_occluded, m_occluded, "batchmean", normalize=True)
    residual = (f_holistic - f_occluded)[0, :, 1, 2] / f_holistic.square().mean().sqrt()
    expected = (residual * height * width).square().sum()
    torch.testing.assert_close(loss, expected.detach())
    for grad in torch.autograd.grad(loss, [f_occluded, m_occluded]):
        assert torch.isfinite(grad).all()
    # The largest normalised value of random masks in [0, 1] stays below H * W: the loss with
    # them is below that of a mask equal to H * W everywhere (the paper form times (H*W)^2).
    masks = random_maps(81, 1, 1, height, width, dtype=dtype)
    bound = (height * width) ** 2 * mask_consistency_loss(
        f_holistic / f_holistic.square().mean().sqrt(),
        f_occluded.detach() / f_holistic.square().mean().sqrt(),
        torch.ones_like(masks),
        "batchmean",
    )
    assert (
        mask_consistency_loss(f_holistic, f_occluded.detach(), masks, "batchmean", normalize=True)
        <= bound
    )
    # An all-zero mask (a degenerate output): the floor keeps it finite, and it selects nothing.
    zero = torch.zeros_like(m_occluded, requires_grad=True)
    loss = mask_consistency_loss(f_holistic, f_occluded, zero, normalize=True)
    assert loss.item() == 0.0
    assert torch.isfinite(torch.autograd.grad(loss, zero)[0]).all()
