"""OcclusionAugmentation against the semantics of docs/METHOD.md §1."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from oamn.occlusion_aug import OcclusionAugmentation, band_mask
from tests.conftest import DEVICES

LOCATION_CODE = {"top": 1, "bottom": 2, "left": 3, "right": 4}


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def reference_band(location: int, area: float, height: int, width: int) -> tuple[slice, slice]:
    """Band rows/columns, written independently of the library: floor(area * L + 1/2) lines."""
    rows = math.floor(area * height + 0.5)
    cols = math.floor(area * width + 0.5)
    return {
        1: (slice(0, rows), slice(None)),
        2: (slice(height - rows, height), slice(None)),
        3: (slice(None), slice(0, cols)),
        4: (slice(None), slice(width - cols, width)),
    }[location]


def reference_augmentation(images, sources, params, locations, include_holistic=True):
    """The augmentation one image and one view at a time, with crops resized by F.interpolate."""
    _, _, height, width = images.shape
    src_h, src_w = sources.shape[2:]
    views = [images.clone()] if include_holistic else []
    for name in locations:
        view = images.clone()
        for i in range(images.shape[0]):
            ph, pw = int(params.patch_height[i]), int(params.patch_width[i])
            corner = int(params.corner[i])
            top = src_h - ph if corner in (2, 3) else 0
            left = src_w - pw if corner in (1, 3) else 0
            crop = sources[int(params.source_index[i]), :, top : top + ph, left : left + pw]
            rows, cols = reference_band(LOCATION_CODE[name], float(params.area[i]), height, width)
            target = view[i, :, rows, cols]
            view[i, :, rows, cols] = F.interpolate(
                crop[None].double(), size=target.shape[1:], mode="bilinear", align_corners=False
            )[0].to(images.dtype)
        views.append(view)
    return torch.cat(views)


@pytest.mark.parametrize(
    ("size", "locations", "include_holistic"),
    [
        ((256, 128), ("top", "bottom", "left", "right"), True),
        ((37, 19), ("top", "bottom", "left", "right"), True),
        ((64, 32), ("right", "top"), False),
    ],
)
def test_matches_per_image_reference(size, locations, include_holistic) -> None:
    images = torch.rand(6, 3, *size, generator=seeded(0))
    aug = OcclusionAugmentation(locations=locations, include_holistic=include_holistic)
    out = aug(images, generator=seeded(1))
    expected = reference_augmentation(images, images, out.params, locations, include_holistic)
    assert out.images.shape == expected.shape
    torch.testing.assert_close(out.images, expected, rtol=0, atol=1e-5)


def coordinate_images(batch: int, height: int, width: int) -> torch.Tensor:
    """Channel 0 = row index, 1 = y, 2 = x: bilinear resampling keeps these exact."""
    rows = torch.arange(batch, dtype=torch.float64).view(batch, 1, 1).expand(batch, height, width)
    ys = torch.arange(height, dtype=torch.float64).view(1, height, 1).expand(batch, height, width)
    xs = torch.arange(width, dtype=torch.float64).view(1, 1, width).expand(batch, height, width)
    return torch.stack([rows, ys, xs], dim=1)


def test_each_band_holds_a_resized_corner_of_another_row() -> None:
    batch, height, width = 8, 96, 48
    images = coordinate_images(batch, height, width)
    out = OcclusionAugmentation()(images, generator=seeded(2))
    params = out.params
    views = out.images.view(5, batch, 3, height, width)
    for v, name in enumerate(("top", "bottom", "left", "right"), start=1):
        for i in range(batch):
            rows, cols = reference_band(LOCATION_CODE[name], float(params.area[i]), height, width)
            band = views[v, i, :, rows, cols]
            source = int(params.source_index[i])
            assert source != i
            torch.testing.assert_close(band[0], torch.full_like(band[0], source))
            ph, pw = int(params.patch_height[i]), int(params.patch_width[i])
            bottom, right = int(params.corner[i]) in (2, 3), int(params.corner[i]) in (1, 3)
            y0 = height - ph if bottom else 0
            x0 = width - pw if right else 0
            band_h, band_w = band.shape[1:]
            # The source pixel each output pixel samples (F.interpolate, align_corners=False).
            sy = ((torch.arange(band_h) + 0.5) * ph / band_h - 0.5).clamp(0, ph - 1) + y0
            sx = ((torch.arange(band_w) + 0.5) * pw / band_w - 0.5).clamp(0, pw - 1) + x0
            torch.testing.assert_close(band[1], sy.double()[:, None].expand(band_h, band_w))
            torch.testing.assert_close(band[2], sx.double()[None, :].expand(band_h, band_w))
            # Every sampled pixel lies in the ph x pw rectangle at the drawn corner.
            ys, xs = band[1], band[2]
            assert bool((ys >= height - ph).all() if bottom else (ys <= ph - 1).all())
            assert bool((xs >= width - pw).all() if right else (xs <= pw - 1).all())


def test_band_is_the_constant_colour_of_another_rows_corner() -> None:
    batch, height, width = 6, 64, 32
    colour = torch.arange(batch * 4, dtype=torch.float32).view(batch, 4) + 1.0
    images = torch.empty(batch, 1, height, width)
    for corner, (rows, cols) in enumerate(
        [
            (slice(0, 32), slice(0, 16)),
            (slice(0, 32), slice(16, 32)),
            (slice(32, 64), slice(0, 16)),
            (slice(32, 64), slice(16, 32)),
        ]
    ):
        images[:, 0, rows, cols] = colour[:, corner, None, None]
    # Patches at most sqrt(0.05 * 2048 * 2) ~ 14 px high/wide stay inside a 32x16 quadrant.
    aug = OcclusionAugmentation(patch_area=(0.02, 0.05), patch_ratio=(0.5, 2.0))
    out = aug(images, generator=seeded(3))
    masks = band_mask(out.location, out.area, height, width)
    own_colours = colour[out.sample_index]
    for row in range(out.images.shape[0]):
        band = out.images[row, 0][masks[row, 0]]
        if out.location[row] == 0:
            assert band.numel() == 0
            continue
        values = band.unique()
        assert values.numel() == 1, values
        assert values.item() not in own_colours[row].tolist()
        i = int(out.sample_index[row])
        source, corner = int(out.params.source_index[i]), int(out.params.corner[i])
        assert values.item() == colour[source, corner].item()


def test_holistic_block_and_unoccluded_pixels_equal_the_input() -> None:
    images = torch.rand(5, 3, 40, 24, generator=seeded(4))
    out = OcclusionAugmentation()(images, generator=seeded(5))
    assert torch.equal(out.images[:5], images)
    masks = band_mask(out.location, out.area, 40, 24).expand_as(out.images)
    aligned = images[out.sample_index]
    assert torch.equal(out.images[~masks], aligned[~masks])
    # The band really changed: patches come from other images of random content.
    assert not torch.equal(out.images[masks], aligned[masks])


def test_labels_are_view_major_and_consistent() -> None:
    batch = 7
    aug = OcclusionAugmentation(locations=("left", "top", "right"))
    out = aug(torch.rand(batch, 3, 32, 16), generator=seeded(6))
    assert out.num_views == 4
    assert out.location.tolist() == [0] * batch + [3] * batch + [1] * batch + [4] * batch
    assert out.sample_index.tolist() == list(range(batch)) * 4
    area = out.area.view(4, batch)
    assert torch.equal(area[0], torch.zeros(batch))
    for v in range(1, 4):
        assert torch.equal(area[v], out.params.area)
    assert set(out.params.area.tolist()) <= {0.5, 0.25}
    assert out.location.dtype == torch.int64
    assert out.sample_index.dtype == torch.int64
    assert out.area.dtype == torch.float32
    types = out.occlusion_type.view(4, batch)
    assert torch.equal(types[1], torch.where(out.params.area == 0.5, 3, 7))


def test_without_holistic_block() -> None:
    out = OcclusionAugmentation(include_holistic=False)(
        torch.rand(3, 3, 16, 8), generator=seeded(7)
    )
    assert out.images.shape[0] == 12
    assert out.location.tolist() == [1] * 3 + [2] * 3 + [3] * 3 + [4] * 3
    assert bool((out.area > 0).all())


def test_single_area_configuration() -> None:
    aug = OcclusionAugmentation(areas=(0.25,))
    out = aug(torch.rand(4, 3, 32, 16), generator=seeded(8))
    assert torch.equal(out.params.area, torch.full((4,), 0.25))
    expected = reference_augmentation(
        out.images[:4], out.images[:4], out.params, aug.locations, True
    )
    torch.testing.assert_close(out.images, expected, rtol=0, atol=1e-5)


def test_replay_reproduces_bit_for_bit() -> None:
    images = torch.rand(9, 3, 64, 32, generator=seeded(9))
    aug = OcclusionAugmentation()
    out = aug(images, generator=seeded(10))
    again = aug(images, params=out.params)
    assert torch.equal(again.images, out.images)
    for name in ("location", "area", "sample_index"):
        assert torch.equal(getattr(again, name), getattr(out, name))
    assert again.params is out.params


def test_replay_with_areas_not_exact_in_float32() -> None:
    # 0.3 and 0.6 are drawn as float32 values that differ from the Python floats.
    images = torch.rand(4, 3, 40, 20, generator=seeded(26))
    aug = OcclusionAugmentation(areas=(0.3, 0.6))
    out = aug(images, generator=seeded(27))
    assert set(out.params.area.tolist()) <= {float(torch.tensor(a)) for a in (0.3, 0.6)}
    assert torch.equal(aug(images, params=out.params).images, out.images)


def test_same_seed_same_output_and_different_seed_differs() -> None:
    images = torch.rand(6, 3, 32, 16, generator=seeded(11))
    aug = OcclusionAugmentation()
    first = aug(images, generator=seeded(12)).images
    second = aug(images, generator=seeded(12)).images
    other = aug(images, generator=seeded(13)).images
    assert torch.equal(first, second)
    assert not torch.equal(first, other)
    torch.manual_seed(14)
    global_first = aug(images).images
    torch.manual_seed(14)
    assert torch.equal(aug(images).images, global_first)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_dtype_and_device_are_preserved(device: str, dtype: torch.dtype) -> None:
    images = torch.rand(4, 3, 32, 16, generator=seeded(15)).to(device, dtype)
    out = OcclusionAugmentation()(images, generator=seeded(16))
    assert out.images.dtype == dtype
    for tensor in (out.images, out.location, out.area, out.sample_index):
        assert tensor.device.type == device
    reference = OcclusionAugmentation()(images.float().cpu(), params=out.params).images
    torch.testing.assert_close(out.images.float().cpu(), reference, rtol=0, atol=1e-2)


def test_patches_from_occluders_of_another_size() -> None:
    occluders = coordinate_images(5, 40, 20)
    images = torch.full((1, 3, 64, 32), -1.0, dtype=torch.float64)
    aug = OcclusionAugmentation()
    out = aug(images, generator=seeded(17), occluders=occluders)
    assert out.params.from_occluders
    assert out.params.source_size == (40, 20)
    assert 0 <= int(out.params.source_index[0]) < 5
    expected = reference_augmentation(images, occluders, out.params, aug.locations)
    torch.testing.assert_close(out.images, expected, rtol=0, atol=1e-9)
    masks = band_mask(out.location, out.area, 64, 32).expand_as(out.images)
    band_rows = out.images[:, 0][masks[:, 0]]
    source = out.params.source_index[0].double()
    torch.testing.assert_close(band_rows, source.expand_as(band_rows))
    replay = aug(images, params=out.params, occluders=occluders)
    assert torch.equal(replay.images, out.images)


def test_gradients_flow_to_the_images() -> None:
    images = torch.rand(2, 1, 8, 4, dtype=torch.float64, generator=seeded(18))
    aug = OcclusionAugmentation()
    params = aug(images, generator=seeded(19)).params
    images.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: aug(x, params=params).images, (images,))


def test_runs_on_real_images(market_mini) -> None:
    from PIL import Image
    from torchvision.transforms.functional import pil_to_tensor

    files = sorted(market_mini.glob("bounding_box_train/*.jpg"))[:6]
    images = torch.stack([pil_to_tensor(Image.open(f).convert("RGB")) for f in files]) / 255
    images = F.interpolate(images, size=(256, 128), mode="bilinear")
    out = OcclusionAugmentation()(images, generator=seeded(20))
    assert torch.equal(out.images[:6], images)
    # Bilinear resampling is a convex combination: values stay inside the input's range.
    assert float(out.images.min()) >= float(images.min())
    assert float(out.images.max()) <= float(images.max())


@pytest.mark.parametrize("device", DEVICES)
def test_channels_last_in_channels_last_out(device: str) -> None:
    images = torch.rand(4, 3, 32, 16, generator=seeded(21)).to(device)
    aug = OcclusionAugmentation()
    out = aug(images.to(memory_format=torch.channels_last), generator=seeded(22))
    assert out.images.is_contiguous(memory_format=torch.channels_last)
    assert not out.images.is_contiguous()
    plain = aug(images, params=out.params).images
    assert plain.is_contiguous()
    assert torch.equal(out.images, plain)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("occluders", [False, True])
def test_uint8_equals_the_rounded_float_path(occluders: bool, device: str) -> None:
    images = torch.randint(0, 256, (5, 3, 48, 24), generator=seeded(23), dtype=torch.uint8)
    bank = torch.randint(0, 256, (3, 3, 20, 30), generator=seeded(24), dtype=torch.uint8)
    images, bank = images.to(device), bank.to(device)
    extra = {"occluders": bank} if occluders else {}
    aug = OcclusionAugmentation()
    out = aug(images, generator=seeded(25), **extra)
    assert out.images.dtype == torch.uint8
    float_extra = {"occluders": bank.float()} if occluders else {}
    reference = aug(images.float(), params=out.params, **float_extra).images
    assert torch.equal(out.images, reference.round().to(torch.uint8))
    assert not torch.equal(reference, reference.round())  # the rounding is exercised


def test_torch_compile_gives_the_eager_result() -> None:
    images = torch.rand(6, 3, 32, 16, generator=seeded(28))
    aug = OcclusionAugmentation()
    eager = aug(images, generator=seeded(29))
    compiled = torch.compile(aug, backend="eager")(images, params=eager.params)
    assert torch.equal(compiled.images, eager.images)
    for name in ("location", "area", "sample_index"):
        assert torch.equal(getattr(compiled, name), getattr(eager, name))
