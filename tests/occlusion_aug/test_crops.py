"""resize_crops equals cropping then F.interpolate, one image at a time."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from oamn.occlusion_aug import resize_crops


def random_boxes(num: int, height: int, width: int, generator: torch.Generator):
    crop_h = torch.randint(1, height + 1, (num,), generator=generator)
    crop_w = torch.randint(1, width + 1, (num,), generator=generator)
    top = (torch.rand(num, generator=generator) * (height - crop_h + 1)).long()
    left = (torch.rand(num, generator=generator) * (width - crop_w + 1)).long()
    return top, left, crop_h, crop_w


@pytest.mark.parametrize("size", [(64, 32), (7, 5), (1, 1), (40, 3)])
def test_resize_crops_equals_per_crop_interpolate(size: tuple[int, int]) -> None:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(12, 3, 37, 23, generator=generator, dtype=torch.float64)
    top, left, crop_h, crop_w = random_boxes(12, 37, 23, generator)
    got = resize_crops(images, top, left, crop_h, crop_w, size)
    for i in range(12):
        crop = images[i : i + 1, :, top[i] : top[i] + crop_h[i], left[i] : left[i] + crop_w[i]]
        expected = F.interpolate(crop, size=size, mode="bilinear", align_corners=False)
        torch.testing.assert_close(got[i : i + 1], expected, rtol=0, atol=1e-12)


def test_resize_crops_never_reads_outside_the_crop() -> None:
    # A crop of ones inside a sea of 100s: a tap outside the crop with any real weight would show
    # as an error of order 10 or more; rounding of the grid coordinates leaves a weight near 1e-9
    # (float32) or 1e-18 (float64) there.
    images = torch.full((1, 1, 20, 20), 100.0)
    images[:, :, 5:9, 3:6] = 1.0
    one = torch.ones(1, dtype=torch.long)
    out = resize_crops(images, 5 * one, 3 * one, 4 * one, 3 * one, (33, 17))
    torch.testing.assert_close(out, torch.ones_like(out), rtol=0, atol=1e-5)
    exact = resize_crops(images.double(), 5 * one, 3 * one, 4 * one, 3 * one, (33, 17))
    torch.testing.assert_close(exact, torch.ones_like(exact), rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_resize_crops_reduced_precision_matches_float32(dtype: torch.dtype) -> None:
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(4, 3, 16, 8, generator=generator)
    boxes = random_boxes(4, 16, 8, generator)
    reference = resize_crops(images, *boxes, (12, 10))
    got = resize_crops(images.to(dtype), *boxes, (12, 10))
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), reference, rtol=0, atol=1e-2)


def test_resize_crops_gradcheck() -> None:
    generator = torch.Generator().manual_seed(2)
    images = torch.rand(2, 2, 6, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    boxes = (torch.tensor([0, 2]), torch.tensor([1, 0]), torch.tensor([4, 3]), torch.tensor([3, 5]))
    assert torch.autograd.gradcheck(lambda x: resize_crops(x, *boxes, (5, 7)), (images,))


def test_resize_crops_rejects_mismatched_boxes() -> None:
    images = torch.rand(3, 1, 8, 8)
    box = torch.ones(2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"must each have shape \(3,\)"):
        resize_crops(images, box, box, box, box, (4, 4))


def test_resize_crops_uint8_is_the_rounded_float32_result() -> None:
    generator = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (6, 3, 21, 13), generator=generator, dtype=torch.uint8)
    boxes = random_boxes(6, 21, 13, generator)
    got = resize_crops(images, *boxes, (17, 9))
    reference = resize_crops(images.float(), *boxes, (17, 9))
    assert got.dtype == torch.uint8
    assert torch.equal(got, reference.round().to(torch.uint8))
    # Rounding, not truncation: the fractional parts in the float result are really there.
    assert bool(((reference - reference.floor()) > 0.5).any())


def test_resize_crops_rounds_half_to_even() -> None:
    images = torch.tensor([[[[1, 2, 3]]]], dtype=torch.uint8)
    upsampled = resize_crops(images.float(), [0], [0], [1], [3], (1, 6))
    assert upsampled.flatten().tolist() == [1.0, 1.25, 1.75, 2.25, 2.75, 3.0]
    assert resize_crops(images, [0], [0], [1], [3], (1, 6)).flatten().tolist() == [1, 1, 2, 2, 3, 3]
    # A 2-pixel crop shrunk to 1 pixel is the mean of its pixels: 1.5 -> 2, but 2.5 -> 2.
    pair = images.expand(2, 1, 1, 3)
    means = resize_crops(pair.float(), [0, 0], [0, 1], [1, 1], [2, 2], (1, 1))
    assert means.flatten().tolist() == [1.5, 2.5]
    assert resize_crops(pair, [0, 0], [0, 1], [1, 1], [2, 2], (1, 1)).flatten().tolist() == [2, 2]


def test_resize_crops_accepts_lists_and_tuples() -> None:
    images = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    as_tensors = resize_crops(
        images,
        torch.tensor([0, 2]),
        torch.tensor([1, 3]),
        torch.tensor([4, 5]),
        torch.tensor([3, 2]),
        (6, 6),
    )
    assert torch.equal(resize_crops(images, [0, 2], (1, 3), [4, 5], (3, 2), (6, 6)), as_tensors)


def test_resize_crops_rejects_fractional_boxes() -> None:
    with pytest.raises(TypeError, match=r"must hold integers; left is torch\.float32"):
        resize_crops(torch.rand(1, 1, 8, 8), [0], [0.5], [4], [4], (4, 4))
