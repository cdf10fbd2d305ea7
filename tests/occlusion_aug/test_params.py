"""The drawn parameters follow the distributions of docs/METHOD.md §1 (seeded, loose bounds)."""

from __future__ import annotations

import math

import pytest
import torch

from oamn.occlusion_aug import OcclusionAugmentation

DRAWS = 40_000


@pytest.fixture(scope="module")
def params():
    aug = OcclusionAugmentation()
    return aug.generate_parameters(DRAWS, (256, 128), generator=torch.Generator().manual_seed(0))


def assert_uniform(values: torch.Tensor, low: float, high: float, bins: int = 10) -> None:
    assert float(values.min()) >= low
    assert float(values.max()) <= high
    counts = torch.histc(values.float(), bins=bins, min=low, max=high)
    expected = values.numel() / bins
    # Each bin count is binomial: 5 standard deviations is about 4.7 % of 4,000.
    tolerance = 5 * math.sqrt(expected * (1 - 1 / bins))
    assert bool(((counts - expected).abs() < tolerance).all()), counts


def test_patch_scale_is_uniform_on_its_range(params) -> None:
    assert_uniform(params.patch_scale, 0.02, 0.2)


def test_patch_ratio_is_uniform_not_log_uniform(params) -> None:
    assert_uniform(params.patch_ratio, 0.3, 3.3)
    # kornia/torchvision draw log-uniform ratios, whose median is sqrt(0.3 * 3.3) ~ 1.0.
    assert abs(float(params.patch_ratio.median()) - 1.8) < 0.05


def test_patch_size_realises_scale_and_ratio(params) -> None:
    height, width = params.patch_height.double(), params.patch_width.double()
    unclamped = (height < 256) & (width < 128)
    area = params.patch_scale * 256 * 128
    exact_h = torch.sqrt(area * params.patch_ratio)
    exact_w = torch.sqrt(area / params.patch_ratio)
    assert bool(((height - exact_h)[unclamped].abs() <= 0.5).all())
    assert bool(((width - exact_w)[unclamped].abs() <= 0.5).all())
    # Clamping happens only where the exact size exceeds the image.
    assert bool((exact_w[width == 128] > 127.5).all())
    assert bool((params.patch_height >= 1).all())


def test_corner_and_area_are_uniform(params) -> None:
    corner_counts = torch.bincount(params.corner, minlength=4).double()
    assert bool(((corner_counts / DRAWS - 0.25).abs() < 0.01).all()), corner_counts
    half = float((params.area == 0.5).double().mean())
    assert abs(half - 0.5) < 0.01
    assert set(params.area.unique().tolist()) == {0.5, 0.25}


def test_area_probs_are_respected() -> None:
    aug = OcclusionAugmentation(areas=(0.5, 0.25), area_probs=(0.8, 0.2))
    params = aug.generate_parameters(20_000, (64, 32), generator=torch.Generator().manual_seed(1))
    assert abs(float((params.area == 0.5).double().mean()) - 0.8) < 0.01


def test_source_is_any_other_row_with_equal_probability() -> None:
    aug = OcclusionAugmentation()
    generator = torch.Generator().manual_seed(2)
    counts = torch.zeros(5, 5)
    for _ in range(2000):
        source = aug.generate_parameters(5, (8, 4), generator=generator).source_index
        counts[torch.arange(5), source] += 1
    assert torch.equal(counts.diagonal(), torch.zeros(5))
    off_diagonal = counts[~torch.eye(5, dtype=torch.bool)]
    assert bool(((off_diagonal / 2000 - 0.25).abs() < 0.04).all()), counts


def test_two_images_swap_patches() -> None:
    params = OcclusionAugmentation().generate_parameters(2, (8, 4))
    assert params.source_index.tolist() == [1, 0]


def test_occluder_sources_cover_the_bank() -> None:
    aug = OcclusionAugmentation()
    params = aug.generate_parameters(
        3000, (40, 20), num_occluders=3, generator=torch.Generator().manual_seed(3)
    )
    counts = torch.bincount(params.source_index, minlength=3)
    assert counts.numel() == 3
    assert bool(((counts / 3000 - 1 / 3).abs() < 0.03).all())
    assert bool((params.patch_height <= 40).all())
    assert bool((params.patch_width <= 20).all())


def test_params_live_on_cpu_and_are_typed(params) -> None:
    for name in ("source_index", "corner", "patch_height", "patch_width"):
        assert getattr(params, name).dtype == torch.int64
        assert getattr(params, name).device.type == "cpu"
    assert params.patch_scale.dtype == torch.float64
    assert params.area.dtype == torch.float32
    assert params.batch_size == DRAWS
    bottom, right = params.corner >= 2, params.corner % 2 == 1
    assert torch.equal(params.patch_top, torch.where(bottom, 256 - params.patch_height, 0))
    assert torch.equal(params.patch_left, torch.where(right, 128 - params.patch_width, 0))
