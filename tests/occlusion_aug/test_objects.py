"""ObjectOcclusion: the occluder's geometry, its labels, its content and its randomness."""

from __future__ import annotations

import math

import pytest
import torch

from oamn.occlusion_aug import ObjectOcclusion, OcclusionAugmentation, band_mask


def _constant_images(values: list[float], height: int = 32, width: int = 16) -> torch.Tensor:
    """``(B, 3, H, W)`` images, image ``i`` filled with ``values[i]``."""
    return torch.tensor(values).view(-1, 1, 1, 1).expand(-1, 3, height, width).clone()


def _draw(aug: ObjectOcclusion, batch: int, seed: int = 0):
    return aug.generate_parameters(batch, generator=torch.Generator().manual_seed(seed))


def test_straight_full_width_occluders_cover_the_rows_their_depth_reaches():
    aug = ObjectOcclusion(depth=(0.3, 0.3), extent=(1.0, 1.0), roughness=0.0)
    out = aug(_constant_images([1.0, 2.0]), generator=torch.Generator().manual_seed(0))
    height, width = 32, 16
    # A pixel is occluded when its centre is within depth 0.3 of the side: (r + 1/2) / 32 < 0.3
    # holds for r < 9.1, so rows 0..9 from the top (10 rows), columns (c + 1/2) / 16 < 0.3: 0..4.
    rows = sum((r + 0.5) / height < 0.3 for r in range(height))
    cols = sum((c + 0.5) / width < 0.3 for c in range(width))
    assert (rows, cols) == (10, 5)
    expected = torch.zeros(5, 2, height, width, dtype=torch.bool)
    expected[1, :, :rows] = True
    expected[2, :, height - rows :] = True
    expected[3, :, :, :cols] = True
    expected[4, :, :, width - cols :] = True
    assert torch.equal(out.occluded.view(5, 2, height, width), expected)


def test_occluded_pixels_hold_the_other_image_and_the_rest_the_image_itself():
    images = _constant_images([1.0, 2.0, 3.0])
    out = ObjectOcclusion()(images, generator=torch.Generator().manual_seed(3))
    source_value = images[out.params.source_index, 0, 0, 0]  # bilinear of a constant
    batch = 3
    for v in range(5):
        rows = slice(v * batch, (v + 1) * batch)
        view, shape = out.images[rows], out.occluded[rows].expand(-1, 3, -1, -1)
        expected = torch.where(shape, source_value.view(-1, 1, 1, 1), images)
        torch.testing.assert_close(view, expected, atol=1e-6, rtol=0)
        assert torch.equal(view[~shape], images[~shape])  # untouched outside, bit for bit
    assert not out.occluded[:batch].any()  # the holistic views
    assert torch.equal(out.images[:batch], images)


def test_partial_extent_leaves_the_rest_of_the_side_visible():
    aug = ObjectOcclusion(depth=(0.5, 0.5), extent=(0.25, 0.25), roughness=0.0)
    out = aug(_constant_images([0.0, 1.0], 64, 64), generator=torch.Generator().manual_seed(1))
    offset = out.params.offset
    top = out.occluded[2:4, 0]  # the top block, (2, H, W)
    for i in range(2):
        centres = (torch.arange(64) + 0.5) / 64
        inside = (centres >= offset[i]) & (centres <= offset[i] + 0.25)
        assert torch.equal(top[i, 0], inside)  # the first row: exactly the extent
        assert not top[i, 40:].any()  # nothing beyond the depth


def test_ragged_edge_stays_within_the_roughness_band():
    aug = ObjectOcclusion(depth=(0.4, 0.4), extent=(1.0, 1.0), roughness=0.25)
    out = aug(_constant_images([0.0, 1.0] * 4, 256, 64), generator=torch.Generator().manual_seed(2))
    bottom = out.occluded[16:24, 0].float()  # (8, 256, 64)
    depth_per_column = bottom.sum(dim=1) / 256  # occluded fraction of each column
    assert float(depth_per_column.min()) >= 0.4 * 0.75 - 1 / 256
    assert float(depth_per_column.max()) <= 0.4 * 1.25 + 1 / 256
    assert float((depth_per_column.max(1).values - depth_per_column.min(1).values).min()) > 0.01


def test_labels_are_the_nearest_band_type():
    aug = ObjectOcclusion(depth=(0.2, 0.6))
    out = aug(torch.rand(64, 3, 16, 8), generator=torch.Generator().manual_seed(0))
    depth = out.params.depth
    assert torch.equal(out.params.area, torch.where(depth >= 0.375, 0.5, 0.25).float())
    assert out.location.view(5, 64)[:, 0].tolist() == [0, 1, 2, 3, 4]
    assert torch.equal(out.area.view(5, 64)[1:], out.params.area.expand(4, -1))
    assert torch.equal(out.area[:64], torch.zeros(64))
    assert set(out.occlusion_type[64:].tolist()) <= set(range(1, 9))
    assert float(depth.min()) >= 0.2
    assert float(depth.max()) <= 0.6


def test_sources_come_from_another_group():
    groups = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    for seed in range(20):
        params = ObjectOcclusion().generate_parameters(
            8, groups=groups, generator=torch.Generator().manual_seed(seed)
        )
        assert bool((groups[params.source_index] != groups).all())
    with pytest.raises(ValueError, match="another row"):
        ObjectOcclusion()(torch.rand(2, 3, 8, 4), groups=torch.tensor([5, 5]))


def test_same_seed_same_views_and_params_replay():
    images = torch.rand(4, 3, 32, 16)
    aug = ObjectOcclusion()
    first = aug(images, generator=torch.Generator().manual_seed(7))
    again = aug(images, generator=torch.Generator().manual_seed(7))
    replay = aug(images, params=first.params)
    assert torch.equal(first.images, again.images)
    assert torch.equal(first.images, replay.images)
    other = aug(images, generator=torch.Generator().manual_seed(8))
    assert not torch.equal(first.images, other.images)


def test_keeps_dtype_device_and_memory_format():
    images = torch.rand(4, 3, 32, 16, dtype=torch.float64).contiguous(
        memory_format=torch.channels_last
    )
    out = ObjectOcclusion()(images)
    assert out.images.dtype == torch.float64
    assert out.images.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(TypeError, match="floating"):
        ObjectOcclusion()((images * 255).to(torch.uint8))


def test_occluders_argument_and_bad_options():
    images, occluders = torch.rand(1, 3, 16, 8), torch.full((2, 3, 40, 20), 0.5)
    out = ObjectOcclusion()(images, occluders=occluders)
    filled = out.images[1:][out.occluded[1:].expand(-1, 3, -1, -1)]
    torch.testing.assert_close(filled, torch.full_like(filled, 0.5), atol=1e-6, rtol=0)
    bad = (({"depth": (0.5, 1.0)}, "depth"), ({"extent": (0.0, 0.5)}, "extent"),
           ({"roughness": 1.0}, "roughness"))  # fmt: skip
    for kwargs, name in bad:
        with pytest.raises(ValueError, match=name):
            ObjectOcclusion(**kwargs)


def test_band_augmentation_reports_its_bands_as_occluded_pixels():
    out = OcclusionAugmentation()(torch.rand(4, 3, 16, 8))
    assert torch.equal(out.occluded, band_mask(out.location, out.area, 16, 8))
    assert math.isclose(float(out.occluded[:4].float().mean()), 0.0)


def test_unscaled_content_is_the_other_image_shifted_not_resized():
    height, width = 32, 16
    rows = torch.arange(height, dtype=torch.float64).view(-1, 1)
    cols = torch.arange(width, dtype=torch.float64).view(1, -1)
    image = (100 * rows + cols).expand(3, -1, -1)
    images = torch.stack([image, image + 10_000])  # image 1 is image 0 plus 10,000
    aug = ObjectOcclusion(depth=(0.25, 0.25), extent=(1.0, 1.0), roughness=0.0, content="unscaled")
    out = aug(images, generator=torch.Generator().manual_seed(0))
    assert out.params.source_index.tolist() == [1, 0]
    source_offset = torch.tensor([10_000.0, -10_000.0], dtype=torch.float64).view(2, 1, 1)
    views = out.images.view(5, 2, 3, height, width)[:, :, 0] - images[:, 0]
    masks = out.occluded.view(5, 2, height, width)
    # Left: the source's central quarter of columns, (0.5 - 0.125) * 16 = 6 columns further
    # right, same rows. Bottom: the source's top quarter, rows 24 higher, same columns.
    expected_shift = {3: 6.0, 2: -2400.0}
    for code, shift in expected_shift.items():
        inside = masks[code]
        difference = (views[code] - source_offset)[inside]
        torch.testing.assert_close(difference, torch.full_like(difference, shift))
