"""The gallery bank: one L2-normalised feature per occlusion type, two strategies."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from examples.oamn.model import OAMN
from oamn.occlusion_aug import band_mask, location_and_area
from oamn.reid_eval import BANK_STRATEGIES, occlusion_bank

from .helpers_model import FEATURE_BANDS, IMAGE_BANDS, images, small_model, trained_statistics

# Normalised black: -mean / std of ImageNet.
BLACK = -torch.tensor([0.485, 0.456, 0.406]) / torch.tensor([0.229, 0.224, 0.225])


@pytest.fixture(scope="module")
def model() -> OAMN:
    return trained_statistics(small_model())


def embed(model: OAMN, g: torch.Tensor) -> torch.Tensor:
    """The normalised test feature of g, written out from the model's parts."""
    return F.normalize(model.neck(model.encoder_high(g).amax(dim=(2, 3))), dim=1)


@pytest.mark.parametrize("strategy", BANK_STRATEGIES)
def test_type_0_is_the_extracted_feature(model: OAMN, strategy: str) -> None:
    x = images(4)
    bank = model.gallery_bank(x, strategy, image_fill=BLACK)
    assert bank.shape == (9, 4, model.feature_dim)
    torch.testing.assert_close(bank[0], model.extract(x)[0], atol=0, rtol=0)
    torch.testing.assert_close(bank.norm(dim=2), torch.ones(9, 4))


def test_mask_swap_equals_a_per_type_loop(model: OAMN) -> None:
    x = images(3)
    bank = model.gallery_bank(x, "mask_swap", image_fill=BLACK)
    with torch.no_grad():
        f = model.encoder_low(x)
        for occlusion, (rows, cols) in IMAGE_BANDS.items():
            occluded = x.clone()
            occluded[:, :, rows, cols] = BLACK.view(1, 3, 1, 1)
            m = model.mask.attention(model.encoder_low(occluded))
            torch.testing.assert_close(bank[occlusion], embed(model, f * m), msg=str(occlusion))


def test_feature_strategy_zeroes_the_band_of_f(model: OAMN) -> None:
    x = images(3)
    bank = model.gallery_bank(x, "feature")
    with torch.no_grad():
        f = model.encoder_low(x)
        for occlusion, (rows, cols) in FEATURE_BANDS.items():
            occluded = f.clone()
            occluded[:, :, rows, cols] = 0
            m = model.mask.attention(occluded)
            torch.testing.assert_close(bank[occlusion], embed(model, f * m), msg=str(occlusion))


def test_types_differ_and_strategies_differ(model: OAMN) -> None:
    x = images(3)
    swap = model.gallery_bank(x, "mask_swap", image_fill=BLACK)
    feature = model.gallery_bank(x, "feature")
    for bank in (swap, feature):
        for occlusion in range(1, 9):
            assert float((bank[occlusion] - bank[0]).abs().max()) > 1e-4
    assert float((swap[1:] - feature[1:]).abs().max()) > 1e-4


def test_image_fill_matters_for_mask_swap_only(model: OAMN) -> None:
    x = images(2)
    black = model.gallery_bank(x, "mask_swap", image_fill=BLACK)
    zero = model.gallery_bank(x, "mask_swap", image_fill=0.0)
    assert float((black[1:] - zero[1:]).abs().max()) > 1e-4
    torch.testing.assert_close(
        model.gallery_bank(x, "feature", image_fill=BLACK), model.gallery_bank(x, "feature")
    )


def test_bank_is_per_image(model: OAMN) -> None:
    """No mixing across the batch: a sub-batch gives the same rows."""
    x = images(4)
    for strategy in BANK_STRATEGIES:
        full = model.gallery_bank(x, strategy)
        torch.testing.assert_close(model.gallery_bank(x[2:], strategy), full[:, 2:])


def test_without_mask_every_type_is_the_clean_feature() -> None:
    model = trained_statistics(small_model(use_mask=False))
    x = images(2)
    bank = model.gallery_bank(x)
    features = model.extract(x)[0]
    torch.testing.assert_close(bank, features.expand(9, -1, -1), atol=0, rtol=0)


def test_channels_last(model: OAMN) -> None:
    x = images(2)
    expected = model.gallery_bank(x, "mask_swap", image_fill=BLACK)
    last = model.to(memory_format=torch.channels_last)
    try:
        bank = last.gallery_bank(x.contiguous(memory_format=torch.channels_last), image_fill=BLACK)
    finally:
        model.to(memory_format=torch.contiguous_format)
    torch.testing.assert_close(bank, expected, atol=1e-5, rtol=1e-4)


def test_bank_errors(model: OAMN) -> None:
    with pytest.raises(
        ValueError, match=r"strategy must be one of \('mask_swap', 'feature', 'band'\)"
    ):
        model.gallery_bank(images(2), "image")
    with pytest.raises(ValueError, match=r"fill must be a number or have shape \(3,\)"):
        model.gallery_bank(images(2), "mask_swap", image_fill=torch.zeros(4))


# The "band" strategy: the band removed from g = m * f itself (1 E^I pass, 1 mask, 9 E^II passes).


class Counted:
    """A callable that counts its calls."""

    def __init__(self, function) -> None:
        self.function, self.calls = function, 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.function(x)


def flatten(g: torch.Tensor) -> torch.Tensor:
    return g.flatten(1)


def band_reference(g: torch.Tensor, occlusion: int) -> torch.Tensor:
    """``normalize(flatten(g * (1 - band)))`` with ``band_mask``'s band of type ``occlusion``."""
    location, area = location_and_area([occlusion] * len(g))
    band = band_mask(location, area, g.shape[2], g.shape[3])
    return F.normalize((g * (1 - band.to(g.dtype))).flatten(1), dim=1)


@pytest.mark.parametrize("size", [(8, 4), (7, 5)])
def test_band_bank_zeroes_exactly_the_band_of_g(size: tuple[int, int]) -> None:
    # encode = identity and embed = flatten: each row shows the feature map it embedded.
    x = 0.5 + torch.rand(3, 2, *size, generator=torch.Generator().manual_seed(0))
    encode, attend = Counted(lambda images: images), Counted(lambda f: f[:, :1].sigmoid())
    embed = Counted(flatten)
    bank = occlusion_bank(x, encode, attend, embed, "band")
    assert (encode.calls, attend.calls, embed.calls) == (1, 1, 9)
    g = x[:, :1].sigmoid() * x
    assert bank.shape == (9, 3, g[0].numel())
    torch.testing.assert_close(bank[0], F.normalize(flatten(g), dim=1), atol=0, rtol=0)
    for occlusion in range(1, 9):
        torch.testing.assert_close(
            bank[occlusion], band_reference(g, occlusion), msg=str(occlusion)
        )
        # g has no zero: the zeros of the row are the band's positions, in every channel.
        zeros = bank[occlusion].view_as(g) == 0
        location, area = location_and_area([occlusion] * 3)
        assert torch.equal(zeros, band_mask(location, area, *size).expand_as(g))


def test_band_bank_matches_the_hand_written_feature_bands() -> None:
    g = 0.5 + torch.rand(2, 3, 8, 4, generator=torch.Generator().manual_seed(1))
    bank = occlusion_bank(
        g, lambda images: images, lambda f: torch.ones_like(f[:, :1]), flatten, "band"
    )
    for occlusion, (rows, cols) in FEATURE_BANDS.items():
        occluded = g.clone()
        occluded[:, :, rows, cols] = 0
        torch.testing.assert_close(
            bank[occlusion], F.normalize(flatten(occluded), dim=1), msg=str(occlusion)
        )


def test_band_bank_without_mask_removes_the_band_from_f() -> None:
    f = 0.5 + torch.rand(2, 3, 8, 4, generator=torch.Generator().manual_seed(2))
    bank = occlusion_bank(f, lambda images: images, None, flatten, "band")
    torch.testing.assert_close(bank[0], F.normalize(flatten(f), dim=1), atol=0, rtol=0)
    for occlusion in range(1, 9):
        torch.testing.assert_close(bank[occlusion], band_reference(f, occlusion))
        assert float((bank[occlusion] - bank[0]).abs().max()) > 1e-3
    # The swap strategies only change the mask, so without one every row is the clean feature.
    for strategy in ("feature", "mask_swap"):
        swap = occlusion_bank(f, lambda images: images, None, flatten, strategy)
        assert torch.equal(swap, bank[0].expand(9, -1, -1))


def test_band_bank_ignores_image_fill() -> None:
    x = 0.5 + torch.rand(2, 3, 8, 4, generator=torch.Generator().manual_seed(3))
    plain = occlusion_bank(x, lambda images: images, lambda f: f[:, :1], flatten, "band")
    filled = occlusion_bank(
        x, lambda images: images, lambda f: f[:, :1], flatten, "band", image_fill=BLACK
    )
    assert torch.equal(filled, plain)


def test_band_strategy_removes_the_band_of_m_times_f(model: OAMN) -> None:
    x = images(2)
    bank = model.gallery_bank(x, "band")
    torch.testing.assert_close(bank[0], model.extract(x)[0], atol=0, rtol=0)
    with torch.no_grad():
        f = model.encoder_low(x)
        g = model.mask.attention(f) * f
        for occlusion, (rows, cols) in FEATURE_BANDS.items():
            occluded = g.clone()
            occluded[:, :, rows, cols] = 0
            torch.testing.assert_close(bank[occlusion], embed(model, occluded), msg=str(occlusion))
            assert float((bank[occlusion] - bank[0]).abs().max()) > 1e-4
    # The feature-level mask swap (same cost) gives other rows.
    assert float((model.gallery_bank(x, "feature")[1:] - bank[1:]).abs().max()) > 1e-4


def test_band_strategy_without_mask() -> None:
    model = small_model(use_mask=False).eval()
    x = images(2)
    bank = model.gallery_bank(x, "band")
    torch.testing.assert_close(bank[0], model.extract(x)[0], atol=0, rtol=0)
    with torch.no_grad():
        f = model.encoder_low(x)
        for occlusion, (rows, cols) in FEATURE_BANDS.items():
            occluded = f.clone()
            occluded[:, :, rows, cols] = 0
            torch.testing.assert_close(bank[occlusion], embed(model, occluded), msg=str(occlusion))
            assert float((bank[occlusion] - bank[0]).abs().max()) > 1e-4
