"""L_mask1 and L_mask2 against the authors' formulas, the paper's, and occlusion_aug's layout;
their arguments."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from oamn.losses import (
    MaskComplementLoss,
    MaskConsistencyLoss,
    mask_complement_loss,
    mask_consistency_loss,
)
from oamn.occlusion_aug import OcclusionAugmentation, band_mask
from tests.conftest import DEVICES
from tests.losses.helpers_mask import (
    complement_inputs,
    consistency_inputs,
    holistic_masks,
    random_maps,
)


def authors_consistency(f_holistic, f_occluded, m_occluded):
    """The authors' code: one F.mse_loss per location on (f_h * m_p, f_p * m_p), summed."""
    batch = len(f_holistic)
    total = 0
    for p in range(len(f_occluded) // batch):
        f_p, m_p = f_occluded[p * batch : (p + 1) * batch], m_occluded[p * batch : (p + 1) * batch]
        total = total + F.mse_loss(f_holistic * m_p, f_p * m_p)
    return total


def paper_consistency(f_holistic, f_occluded, m_occluded):
    """Eq. (2): 1/n sum_p sum_i ||(f_i - f_i^p) * m_i^p||^2, one image at a time."""
    batch = len(f_holistic)
    total = 0
    for row in range(len(f_occluded)):
        i = row % batch
        total = total + ((f_holistic[i] - f_occluded[row]) * m_occluded[row]).pow(2).sum()
    return total / batch


def authors_complement(g, g_t, g_b, g_l, g_r, is_half):
    """The authors' code: F.mse_loss on the whole batch with the non-half rows zeroed."""
    keep = is_half.to(g.dtype)[:, None, None, None]
    return F.mse_loss((g_l + g_r) * keep, g * keep) + F.mse_loss((g_t + g_b) * keep, g * keep)


def paper_complement(g, g_t, g_b, g_l, g_r, is_half):
    """Eq. (3): 1/|I| sum over half-occluded images, one image at a time."""
    rows = [i for i in range(len(g)) if is_half[i]]
    total = sum(
        (g_t[i] + g_b[i] - g[i]).pow(2).sum() + (g_l[i] + g_r[i] - g[i]).pow(2).sum() for i in rows
    )
    return total / len(rows)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("copies", [1, 2, 4])
def test_consistency_matches_authors_and_paper(seed, copies) -> None:
    inputs = consistency_inputs(seed, copies=copies)
    torch.testing.assert_close(mask_consistency_loss(*inputs), authors_consistency(*inputs))
    torch.testing.assert_close(
        mask_consistency_loss(*inputs, reduction="batchmean"), paper_consistency(*inputs)
    )


def test_consistency_reductions_differ_by_the_feature_size() -> None:
    inputs = consistency_inputs(0, batch=3, channels=5, height=4, width=3)
    ratio = mask_consistency_loss(*inputs, "batchmean") / mask_consistency_loss(*inputs, "mean")
    assert ratio.item() == pytest.approx(5 * 4 * 3)


def test_consistency_mask_broadcasts_over_channels() -> None:
    f_holistic, f_occluded, m_occluded = consistency_inputs(4)
    expanded = m_occluded.expand(-1, 5, -1, -1)
    torch.testing.assert_close(
        mask_consistency_loss(f_holistic, f_occluded, expanded),
        mask_consistency_loss(f_holistic, f_occluded, m_occluded),
    )


def test_consistency_accepts_channels_last() -> None:
    inputs = consistency_inputs(5)
    channels_last = [x.contiguous(memory_format=torch.channels_last) for x in inputs]
    torch.testing.assert_close(
        mask_consistency_loss(*channels_last), mask_consistency_loss(*inputs)
    )


def test_consistency_is_zero_outside_the_occluded_band_of_aligned_copies() -> None:
    # occlusion_aug's copies are pixel-aligned with the holistic image, so with masks that avoid
    # the pasted band, the images themselves (as features) satisfy L_mask1 exactly.
    batch = 6
    out = OcclusionAugmentation()(torch.rand(batch, 3, 32, 16), generator=torch.Generator())
    images = out.images
    outside_band = (~band_mask(out.location, out.area, 32, 16)).float()
    loss = mask_consistency_loss(images[:batch], images[batch:], outside_band[batch:])
    assert loss.item() == 0.0
    everywhere = torch.ones_like(outside_band[batch:])
    assert mask_consistency_loss(images[:batch], images[batch:], everywhere).item() > 0.0


def test_consistency_pairs_copies_with_their_own_holistic_row() -> None:
    f_holistic, _, m_occluded = consistency_inputs(6, batch=3, copies=2)
    # Copy p*B + i belongs to holistic row i: rolling the holistic rows breaks the pairing.
    exact = mask_consistency_loss(f_holistic, f_holistic.repeat(2, 1, 1, 1), m_occluded)
    assert exact.item() == 0.0
    rolled = mask_consistency_loss(f_holistic.roll(1, 0), f_holistic.repeat(2, 1, 1, 1), m_occluded)
    assert rolled.item() > 0.0


@pytest.mark.parametrize("seed", range(3))
def test_complement_matches_authors_and_paper(seed) -> None:
    inputs = complement_inputs(seed)
    torch.testing.assert_close(mask_complement_loss(*inputs), authors_complement(*inputs))
    torch.testing.assert_close(
        mask_complement_loss(*inputs, reduction="batchmean"), paper_complement(*inputs)
    )


@pytest.mark.parametrize("reduction", ["mean", "batchmean"])
def test_complement_leaves_out_a_pair_given_as_none(reduction) -> None:
    g, g_t, g_b, g_l, g_r, is_half = complement_inputs(2)
    half = is_half[:, None, None, None]
    divisor = g.numel() if reduction == "mean" else is_half.sum()
    top_bottom = ((g_t + g_b - g) * half).square().sum() / divisor
    left_right = ((g_l + g_r - g) * half).square().sum() / divisor
    torch.testing.assert_close(
        mask_complement_loss(g, g_t, g_b, None, None, is_half, reduction), top_bottom
    )
    torch.testing.assert_close(
        mask_complement_loss(g, None, None, g_l, g_r, is_half, reduction), left_right
    )


@pytest.mark.parametrize(
    ("pairs", "match"),
    [
        ((True, False, True, True), "g_top and g_bottom must both be tensors or both be None"),
        ((True, True, True, False), "g_left and g_right must both be tensors or both be None"),
        ((False, False, False, False), "at least one complete pair is needed"),
    ],
)
def test_complement_rejects_half_pairs_and_no_pair(pairs, match) -> None:
    g, *copies, is_half = complement_inputs(0)
    given = [copy if keep else None for copy, keep in zip(copies, pairs, strict=True)]
    with pytest.raises(ValueError, match=match):
        mask_complement_loss(g, *given, is_half)


def test_complement_takes_is_half_as_a_list() -> None:
    g, g_t, g_b, g_l, g_r, is_half = complement_inputs(3)
    assert is_half.tolist() == [True, False, True, False]  # both kinds: the flags matter
    expected = mask_complement_loss(g, g_t, g_b, g_l, g_r, is_half)
    for listed in (is_half.tolist(), tuple(is_half.tolist())):
        torch.testing.assert_close(
            mask_complement_loss(g, g_t, g_b, g_l, g_r, listed), expected, rtol=0, atol=0
        )
        module = MaskComplementLoss(reduction="batchmean")
        torch.testing.assert_close(
            module(g, g_t, g_b, g_l, g_r, listed),
            mask_complement_loss(g, g_t, g_b, g_l, g_r, is_half, "batchmean"),
            rtol=0,
            atol=0,
        )


def test_complement_ignores_quarter_rows() -> None:
    g, g_t, g_b, g_l, g_r, is_half = complement_inputs(1)
    changed = [x.clone() for x in (g_t, g_b, g_l, g_r)]
    for x in changed:
        x[~is_half] = 100.0
    torch.testing.assert_close(
        mask_complement_loss(g, *changed, is_half),
        mask_complement_loss(g, g_t, g_b, g_l, g_r, is_half),
    )


def test_complement_reports_nan_in_rows_that_do_not_count() -> None:
    # A quarter row is left out of the loss, but a NaN there would still reach the gradients
    # (0 * NaN), so it is reported like any other.
    g, g_t, g_b, g_l, g_r, is_half = complement_inputs(2)
    g_t = g_t.clone()
    g_t[~is_half] = torch.nan
    with pytest.raises(ValueError, match="g_top contains NaN or inf"):
        mask_complement_loss(g, g_t, g_b, g_l, g_r, is_half)


def test_large_finite_inputs_are_not_mistaken_for_nan() -> None:
    # The inputs' sum overflows to inf; the exact element test then clears them.
    f = torch.full((2, 1, 1, 4), 3e38)
    loss = mask_consistency_loss(f, f.clone(), torch.ones(2, 1, 1, 4))
    assert loss.item() == 0.0


@pytest.mark.parametrize("reduction", ["mean", "batchmean"])
def test_complement_without_half_rows_is_a_differentiable_zero(reduction) -> None:
    maps = [random_maps(k, 3, 2, 2, 2).requires_grad_(True) for k in range(5)]
    loss = mask_complement_loss(*maps, torch.zeros(3, dtype=torch.bool), reduction=reduction)
    assert loss.item() == 0.0
    assert loss.grad_fn is not None
    loss.backward()
    for value in maps:
        assert torch.equal(value.grad, torch.zeros_like(value))


def test_complement_is_zero_for_complementary_halves() -> None:
    g = random_maps(3, 2, 4, 4, 2)
    top = g * torch.tensor([1.0, 1.0, 0.0, 0.0]).view(1, 1, 4, 1)
    left = g * torch.tensor([1.0, 0.0]).view(1, 1, 1, 2)
    loss = mask_complement_loss(g, top, g - top, left, g - left, torch.tensor([True, True]))
    assert loss.item() == pytest.approx(0.0, abs=1e-15)


def test_row_permutation_invariance() -> None:
    perm = torch.tensor([2, 0, 1])
    f_holistic, f_occluded, m_occluded = consistency_inputs(7, batch=3, copies=4)
    # Permute the images, keeping every copy in its location block.
    copy_perm = (torch.arange(4)[:, None] * 3 + perm).flatten()
    torch.testing.assert_close(
        mask_consistency_loss(f_holistic[perm], f_occluded[copy_perm], m_occluded[copy_perm]),
        mask_consistency_loss(f_holistic, f_occluded, m_occluded),
    )
    *maps, is_half = complement_inputs(8, batch=3)
    torch.testing.assert_close(
        mask_complement_loss(*(x[perm] for x in maps), is_half[perm], "batchmean"),
        mask_complement_loss(*maps, is_half, "batchmean"),
    )


@pytest.mark.parametrize("reduction", ["mean", "batchmean"])
def test_gradcheck(reduction) -> None:
    f_holistic, f_occluded, m_occluded = (
        x.requires_grad_(True) for x in consistency_inputs(9, batch=2, copies=2, channels=2)
    )
    assert torch.autograd.gradcheck(
        lambda a, b, c: mask_consistency_loss(a, b, c, reduction),
        (f_holistic, f_occluded, m_occluded),
    )
    *maps, is_half = complement_inputs(10, batch=3, channels=2)
    maps = [x.requires_grad_(True) for x in maps]
    assert torch.autograd.gradcheck(
        lambda *g: mask_complement_loss(*g, is_half, reduction), tuple(maps)
    )


@pytest.mark.parametrize("device", DEVICES)
def test_runs_on_the_inputs_device(device) -> None:
    inputs = [x.float().to(device) for x in consistency_inputs(11)]
    loss = mask_consistency_loss(*inputs)
    assert loss.device == inputs[0].device
    assert loss.dtype == torch.float32
    expected = authors_consistency(*consistency_inputs(11))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    *maps, is_half = complement_inputs(12)
    loss = mask_complement_loss(*(x.float().to(device) for x in maps), is_half.to(device))
    assert loss.item() == pytest.approx(authors_complement(*maps, is_half).item(), rel=1e-5)


def test_modules_match_the_functions() -> None:
    inputs = consistency_inputs(13)
    module = MaskConsistencyLoss(reduction="batchmean")
    assert module(*inputs).item() == mask_consistency_loss(*inputs, "batchmean").item()
    assert "reduction='batchmean'" in repr(module)
    maps = complement_inputs(14)
    assert MaskComplementLoss()(*maps).item() == mask_complement_loss(*maps).item()


@pytest.mark.parametrize("normalize", [1, 0, "yes", None, torch.tensor(True)])
def test_normalize_must_be_a_bool(normalize) -> None:
    inputs = consistency_inputs(82, batch=2, copies=2)
    with pytest.raises(TypeError, match="normalize must be a bool"):
        mask_consistency_loss(*inputs, normalize=normalize)
    with pytest.raises(TypeError, match="normalize must be a bool"):
        MaskConsistencyLoss(normalize=normalize)
    with pytest.raises(TypeError, match="normalize must be a bool"):
        MaskConsistencyLoss("mean", normalize)


def test_consistency_takes_normalize_by_keyword_only_and_no_m_holistic() -> None:
    inputs = consistency_inputs(83, batch=2, copies=2)
    with pytest.raises(TypeError):
        mask_consistency_loss(*inputs, "mean", True)
    with pytest.raises(TypeError, match="m_holistic"):
        mask_consistency_loss(*inputs, m_holistic=holistic_masks(84, batch=2))
    with pytest.raises(TypeError):
        MaskConsistencyLoss(normalize=True)(*inputs, holistic_masks(84, batch=2))


def complement_call(m_holistic):
    """L_mask2 on small valid inputs with the given ``m_holistic`` (B = 2, H = 4, W = 3)."""
    *maps, _ = complement_inputs(85, batch=2)
    return lambda: mask_complement_loss(*maps, [True, False], m_holistic=m_holistic)


@pytest.mark.parametrize(
    ("m_holistic", "error", "match"),
    [
        (random_maps(0, 2, 2, 4, 3), ValueError, r"m_holistic must have shape \(2, 1, 4, 3\)"),
        (random_maps(0, 3, 1, 4, 3), ValueError, r"m_holistic must have shape \(2, 1, 4, 3\)"),
        (random_maps(0, 2, 1, 3, 4), ValueError, r"m_holistic must have shape \(2, 1, 4, 3\)"),
        (random_maps(0, 2, 4, 3), ValueError, r"m_holistic must have shape \(B, 1, H, W\)"),
        (
            random_maps(0, 2, 1, 4, 3, dtype=torch.float32),
            TypeError,
            r"m_holistic is torch\.float32",
        ),
        (torch.ones(2, 1, 4, 3, dtype=torch.long), TypeError, "m_holistic must be a floating"),
        ([[[[1.0]]]], TypeError, r"m_holistic must be a torch\.Tensor"),
        (
            random_maps(0, 2, 1, 4, 3).index_fill(3, torch.tensor([1]), torch.nan),
            ValueError,
            "m_holistic contains NaN or inf",
        ),
        (
            torch.full((2, 1, 4, 3), torch.inf, dtype=torch.float64),
            ValueError,
            "m_holistic contains NaN",
        ),
    ],
)
def test_m_holistic_errors_name_it(m_holistic, error, match) -> None:
    with pytest.raises(error, match=match):
        complement_call(m_holistic)()


def test_normalised_modules_match_the_functions() -> None:
    inputs = consistency_inputs(86, batch=3, copies=2)
    module = MaskConsistencyLoss(reduction="batchmean", normalize=True)
    assert module.normalize is True
    assert "reduction='batchmean', normalize=True" in repr(module)
    assert "normalize=False" in repr(MaskConsistencyLoss())
    assert module(*inputs).item() == (
        mask_consistency_loss(*inputs, "batchmean", normalize=True).item()
    )
    assert MaskConsistencyLoss("batchmean", True)(*inputs).item() == module(*inputs).item()
    assert module(*inputs).item() != pytest.approx(MaskConsistencyLoss("batchmean")(*inputs).item())
    *maps, is_half = complement_inputs(87, batch=3)
    m_holistic = holistic_masks(88)
    module = MaskComplementLoss()
    assert module(*maps, is_half, m_holistic).item() == (
        mask_complement_loss(*maps, is_half, m_holistic=m_holistic).item()
    )
    assert module(*maps, is_half, m_holistic=m_holistic).item() == (
        module(*maps, is_half, m_holistic).item()
    )
    assert module(*maps, is_half, m_holistic).item() != pytest.approx(module(*maps, is_half).item())
    with pytest.raises(ValueError, match="m_holistic must have shape"):
        module(*maps, is_half, m_holistic[:2])
