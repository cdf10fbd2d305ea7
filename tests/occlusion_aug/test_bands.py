"""Band geometry, test-time occlusion and the occlusion-type convention."""

from __future__ import annotations

import pytest
import torch

from oamn.occlusion_aug import (
    AREA_NAMES,
    AREAS,
    BAND_LOCATIONS,
    LOCATIONS,
    NUM_OCCLUSION_TYPES,
    OCCLUSION_TYPES,
    band_mask,
    band_slices,
    band_thickness,
    location_and_area,
    occlude,
    occlusion_type,
)
from tests.conftest import DEVICES

TOP, BOTTOM, LEFT, RIGHT = 1, 2, 3, 4

# (height, width) -> {(location, area): (first line, end line)} written out by hand: rows for
# top/bottom, columns for left/right.
HAND_BANDS = {
    (256, 128): {
        (TOP, 0.5): (0, 128),
        (BOTTOM, 0.5): (128, 256),
        (TOP, 0.25): (0, 64),
        (BOTTOM, 0.25): (192, 256),
        (LEFT, 0.5): (0, 64),
        (RIGHT, 0.5): (64, 128),
        (LEFT, 0.25): (0, 32),
        (RIGHT, 0.25): (96, 128),
    },
    # 7 rows: half = 3.5 -> 4 lines (the middle row is in both), quarter = 1.75 -> 2 lines.
    # 5 columns: half = 2.5 -> 3 lines, quarter = 1.25 -> 1 line.
    (7, 5): {
        (TOP, 0.5): (0, 4),
        (BOTTOM, 0.5): (3, 7),
        (TOP, 0.25): (0, 2),
        (BOTTOM, 0.25): (5, 7),
        (LEFT, 0.5): (0, 3),
        (RIGHT, 0.5): (2, 5),
        (LEFT, 0.25): (0, 1),
        (RIGHT, 0.25): (4, 5),
    },
    # The ResNet-50 layer3 feature map of a 256x128 input.
    (16, 8): {
        (TOP, 0.5): (0, 8),
        (BOTTOM, 0.5): (8, 16),
        (TOP, 0.25): (0, 4),
        (BOTTOM, 0.25): (12, 16),
        (LEFT, 0.5): (0, 4),
        (RIGHT, 0.5): (4, 8),
        (LEFT, 0.25): (0, 2),
        (RIGHT, 0.25): (6, 8),
    },
    # 255 x 127: half 127.5 -> 128 rows, quarter 63.75 -> 64; 63.5 -> 64 and 31.75 -> 32 columns.
    (255, 127): {
        (TOP, 0.5): (0, 128),
        (BOTTOM, 0.5): (127, 255),
        (TOP, 0.25): (0, 64),
        (BOTTOM, 0.25): (191, 255),
        (LEFT, 0.5): (0, 64),
        (RIGHT, 0.5): (63, 127),
        (LEFT, 0.25): (0, 32),
        (RIGHT, 0.25): (95, 127),
    },
}


@pytest.mark.parametrize("size", list(HAND_BANDS))
def test_band_mask_matches_hand_coordinates(size: tuple[int, int]) -> None:
    height, width = size
    cases = HAND_BANDS[size]
    location = torch.tensor([loc for loc, _ in cases])
    area = torch.tensor([a for _, a in cases])
    masks = band_mask(location, area, height, width)
    assert masks.shape == (len(cases), 1, height, width)
    assert masks.dtype == torch.bool
    for mask, ((loc, _), (start, end)) in zip(masks[:, 0], cases.items(), strict=True):
        expected = torch.zeros(height, width, dtype=torch.bool)
        if loc in (TOP, BOTTOM):
            expected[start:end, :] = True
        else:
            expected[:, start:end] = True
        assert torch.equal(mask, expected), (loc, start, end)


@pytest.mark.parametrize("size", list(HAND_BANDS))
def test_band_slices_select_the_band_mask(size: tuple[int, int]) -> None:
    height, width = size
    for location, area in [*HAND_BANDS[size], (0, 0.0)]:
        from_slices = torch.zeros(height, width, dtype=torch.bool)
        from_slices[band_slices(location, area, height, width)] = True
        assert torch.equal(from_slices, band_mask([location], [area], height, width)[0, 0])


def test_band_mask_none_and_zero_area_are_empty() -> None:
    masks = band_mask([0, 2], [0.0, 0.0], 6, 4)
    assert not masks.any()


def test_band_thickness_rounds_half_up() -> None:
    areas = torch.tensor([0.5, 0.5, 0.25, 0.25, 0.25, 0.0])
    lengths = [3, 5, 2, 6, 1, 9]
    got = [int(band_thickness(a, n)) for a, n in zip(areas, lengths, strict=True)]
    # 1.5 -> 2, 2.5 -> 3, 0.5 -> 1, 1.5 -> 2, 0.25 -> 0, 0 -> 0
    assert got == [2, 3, 1, 2, 0, 0]


@pytest.mark.parametrize("device", DEVICES)
def test_band_mask_follows_location_device(device: str) -> None:
    masks = band_mask(torch.tensor([1], device=device), torch.tensor([0.5]), 4, 4)
    assert masks.device.type == device


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_occlude_fills_only_the_band(dtype: torch.dtype) -> None:
    images = torch.rand(3, 2, 8, 4).to(dtype)
    location = torch.tensor([1, 4, 0])
    area = torch.tensor([0.25, 0.5, 0.0])
    out = occlude(images, location, area, fill=0.0)
    assert out.dtype == dtype
    assert out.shape == images.shape
    assert torch.equal(out[0, :, :2], torch.zeros(2, 2, 4, dtype=dtype))
    assert torch.equal(out[0, :, 2:], images[0, :, 2:])
    assert torch.equal(out[1, :, :, 2:], torch.zeros(2, 8, 2, dtype=dtype))
    assert torch.equal(out[1, :, :, :2], images[1, :, :, :2])
    assert torch.equal(out[2], images[2])


def test_occlude_per_channel_fill() -> None:
    images = torch.zeros(1, 3, 4, 4)
    out = occlude(images, [2], [0.5], fill=torch.tensor([1.0, 2.0, 3.0]))
    expected_band = torch.tensor([1.0, 2.0, 3.0]).view(3, 1, 1).expand(3, 2, 4)
    assert torch.equal(out[0, :, 2:, :], expected_band)
    assert not out[0, :, :2].any()


def test_occlude_uint8_keeps_dtype_and_writes_the_fill() -> None:
    images = torch.full((2, 3, 4, 4), 200, dtype=torch.uint8)
    out = occlude(images, [1, 3], [0.5, 0.25], fill=[0, 128, 255])
    assert out.dtype == torch.uint8
    assert out[0, :, :2].flatten(1).tolist() == [[0] * 8, [128] * 8, [255] * 8]
    assert out[1, :, :, :1].flatten(1).tolist() == [[0] * 4, [128] * 4, [255] * 4]
    assert bool((out[0, :, 2:] == 200).all())
    assert bool((out[1, :, :, 1:] == 200).all())


def test_python_lists_are_accepted_like_tensors() -> None:
    assert band_thickness([0.5, 0.25, 0.0], 7).tolist() == [4, 2, 0]
    assert band_thickness(0.5, 5).tolist() == 3
    assert occlusion_type([0, 1, 4, 3], (0.0, 0.5, 0.25, 0.25)).tolist() == [0, 1, 8, 7]
    location, area = location_and_area((0, 2, 7))
    assert location.tolist() == [0, 2, 3]
    assert area.tolist() == [0.0, 0.5, 0.25]
    assert area.dtype == torch.float32
    from_lists = band_mask([1, 4], [0.5, 0.25], 4, 4)
    assert torch.equal(from_lists, band_mask(torch.tensor([1, 4]), torch.tensor([0.5, 0.25]), 4, 4))
    images = torch.rand(2, 3, 4, 4)
    expected = occlude(images, torch.tensor([2, 3]), torch.tensor([0.5, 0.5]), torch.ones(3))
    assert torch.equal(occlude(images, [2, 3], [0.5, 0.5], fill=[1.0, 1.0, 1.0]), expected)


def test_occlusion_type_convention_round_trip() -> None:
    location = torch.tensor([0, 1, 2, 3, 4, 1, 2, 3, 4])
    area = torch.tensor([0.0, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25])
    types = occlusion_type(location, area)
    assert types.tolist() == list(range(NUM_OCCLUSION_TYPES))
    back_location, back_area = location_and_area(types)
    assert torch.equal(back_location, location)
    assert torch.equal(back_area, area)


def test_the_convention_constants_name_each_code_and_type() -> None:
    assert LOCATIONS == ("none", "top", "bottom", "left", "right")
    assert BAND_LOCATIONS == ("top", "bottom", "left", "right")
    assert AREAS == (0.5, 0.25)
    assert AREA_NAMES == ("half", "quarter")
    assert OCCLUSION_TYPES == (
        "none",
        "half_top",
        "half_bottom",
        "half_left",
        "half_right",
        "quarter_top",
        "quarter_bottom",
        "quarter_left",
        "quarter_right",
    )
    assert NUM_OCCLUSION_TYPES == len(OCCLUSION_TYPES) == 9
    # Each type's name is its (location, area) pair read through the constants.
    location, area = location_and_area(torch.arange(NUM_OCCLUSION_TYPES))
    for name, code, size in zip(OCCLUSION_TYPES[1:], location[1:], area[1:], strict=True):
        assert name == f"{AREA_NAMES[AREAS.index(float(size))]}_{LOCATIONS[code]}"


def test_occlusion_type_rejects_other_areas() -> None:
    with pytest.raises(ValueError, match=r"areas 0\.5 and 0\.25"):
        occlusion_type(torch.tensor([1]), torch.tensor([0.3]))


@pytest.mark.parametrize(
    ("location", "area", "error", "match"),
    [
        (torch.tensor([1.0]), torch.tensor([0.5]), TypeError, "location must hold integer"),
        (torch.tensor([5]), torch.tensor([0.5]), ValueError, "location codes must be in 0..4"),
        (torch.tensor([-1]), torch.tensor([0.5]), ValueError, "location codes must be in 0..4"),
        (torch.tensor([1, 2]), torch.tensor([0.5]), ValueError, "same length"),
        (torch.tensor([[1]]), torch.tensor([[0.5]]), ValueError, "1-D"),
        (torch.tensor([1]), torch.tensor([1.5]), ValueError, r"area values must be in \[0, 1\]"),
        (torch.tensor([1]), torch.tensor([float("nan")]), ValueError, "not NaN"),
        (torch.tensor([0]), torch.tensor([0.5]), ValueError, "location 0 .none. must come"),
    ],
)
def test_band_mask_rejects_bad_labels(location, area, error, match) -> None:
    with pytest.raises(error, match=match):
        band_mask(location, area, 8, 4)


@pytest.mark.parametrize(("height", "width"), [(0, 4), (4, -1), (2.5, 4)])
def test_band_mask_rejects_bad_sizes(height, width) -> None:
    with pytest.raises(ValueError, match=r"(height|width) must be a positive int"):
        band_mask([1], [0.5], height, width)


def test_occlude_rejects_bad_input() -> None:
    images = torch.rand(2, 3, 4, 4)
    with pytest.raises(ValueError, match="location must have shape \\(2,\\)"):
        occlude(images, [1], [0.5])
    with pytest.raises(ValueError, match="fill must be a number or have shape \\(3,\\)"):
        occlude(images, [1, 2], [0.5, 0.5], fill=torch.zeros(2))
    with pytest.raises(TypeError, match="images must be a floating or uint8 tensor"):
        occlude(images.to(torch.int64), [1, 2], [0.5, 0.5])
    with pytest.raises(ValueError, match=r"fill must hold integers in 0\.\.255 for uint8"):
        occlude(images.to(torch.uint8), [1, 2], [0.5, 0.5], fill=-1.0)
    with pytest.raises(ValueError, match=r"fill must hold integers in 0\.\.255 for uint8"):
        occlude(images.to(torch.uint8), [1, 2], [0.5, 0.5], fill=[0.0, 0.5, 7.0])
    with pytest.raises(ValueError, match="images must have shape"):
        occlude(images[0], [1, 2], [0.5, 0.5])


def test_location_and_area_rejects_bad_types() -> None:
    with pytest.raises(ValueError, match=r"in 0\.\.8"):
        location_and_area(torch.tensor([9]))
    with pytest.raises(TypeError, match="integer tensor"):
        location_and_area(torch.tensor([1.0]))
