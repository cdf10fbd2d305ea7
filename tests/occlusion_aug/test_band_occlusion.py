"""RandomBandOcclusion: one band per image, as a kornia augmentation."""

from __future__ import annotations

import gc
import weakref

import kornia.augmentation as K
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from oamn.occlusion_aug import RandomBandOcclusion
from tests.conftest import DEVICES

from .test_augmentation import reference_band

KEYS = (
    "location",
    "area",
    "source_index",
    "corner",
    "patch_scale",
    "patch_ratio",
    "patch_height",
    "patch_width",
)


def reference_occlusion(images: torch.Tensor, params: dict) -> torch.Tensor:
    """One image at a time: the source's corner crop, resized by F.interpolate, in the band."""
    out = images.clone()
    _, _, height, width = images.shape
    for i in range(images.shape[0]):
        ph, pw = int(params["patch_height"][i]), int(params["patch_width"][i])
        corner = int(params["corner"][i])
        top = height - ph if corner in (2, 3) else 0
        left = width - pw if corner in (1, 3) else 0
        source = images[int(params["source_index"][i])]
        crop = source[:, top : top + ph, left : left + pw]
        location, area = int(params["location"][i]), float(params["area"][i])
        rows, cols = reference_band(location, area, height, width)
        target = out[i, :, rows, cols]
        out[i, :, rows, cols] = F.interpolate(
            crop[None].double(), size=target.shape[1:], mode="bilinear", align_corners=False
        )[0].to(images.dtype)
    return out


def band_masks(params: dict, height: int, width: int) -> torch.Tensor:
    masks = torch.zeros(len(params["location"]), 1, height, width, dtype=torch.bool)
    for i, (location, area) in enumerate(zip(params["location"], params["area"], strict=True)):
        masks[i, 0][reference_band(int(location), float(area), height, width)] = True
    return masks


@pytest.mark.parametrize("size", [(64, 32), (37, 19)])
def test_matches_per_image_reference(size) -> None:
    torch.manual_seed(0)
    images = torch.rand(12, 3, *size, dtype=torch.float64)
    aug = RandomBandOcclusion(p=1.0)
    out = aug(images)
    params = aug._params
    assert set(KEYS) <= set(params)
    torch.testing.assert_close(out, reference_occlusion(images, params), rtol=0, atol=1e-9)
    masks = band_masks(params, *size).expand_as(images)
    assert torch.equal(out[~masks], images[~masks])
    assert not torch.equal(out[masks], images[masks])


def test_params_are_labelled_and_typed() -> None:
    torch.manual_seed(1)
    aug = RandomBandOcclusion(p=1.0)
    aug(torch.rand(64, 3, 32, 16))
    params = aug._params
    for key in ("location", "source_index", "corner", "patch_height", "patch_width"):
        assert params[key].dtype == torch.int64, key
        assert params[key].shape == (64,)
        assert params[key].device.type == "cpu"
    assert params["area"].dtype == torch.float32
    assert set(params["location"].tolist()) == {1, 2, 3, 4}
    assert set(params["area"].tolist()) == {0.5, 0.25}
    assert bool((params["source_index"] != torch.arange(64)).all())
    assert set(params["corner"].tolist()) == {0, 1, 2, 3}
    assert bool((params["patch_height"] <= 32).all() and (params["patch_width"] <= 16).all())


def test_band_holds_the_corner_colour_of_another_image() -> None:
    batch, height, width = 8, 64, 32
    colour = torch.arange(batch * 4, dtype=torch.float32).view(batch, 4) + 1.0
    images = torch.empty(batch, 1, height, width)
    quadrants = [(slice(0, 32), slice(0, 16)), (slice(0, 32), slice(16, 32))]
    quadrants += [(slice(32, 64), slice(0, 16)), (slice(32, 64), slice(16, 32))]
    for corner, (rows, cols) in enumerate(quadrants):
        images[:, 0, rows, cols] = colour[:, corner, None, None]
    # Patches at most sqrt(0.05 * 2048 * 2) ~ 14 px high/wide stay inside a 32x16 quadrant.
    aug = RandomBandOcclusion(patch_area=(0.02, 0.05), patch_ratio=(0.5, 2.0), p=1.0)
    torch.manual_seed(2)
    out = aug(images)
    params = aug._params
    masks = band_masks(params, height, width)
    for i in range(batch):
        values = out[i, 0][masks[i, 0]].unique()
        source, corner = int(params["source_index"][i]), int(params["corner"][i])
        assert source != i
        assert values.tolist() == [colour[source, corner].item()]


def test_locations_and_area_probs_restrict_the_draw() -> None:
    torch.manual_seed(3)
    aug = RandomBandOcclusion(locations=("left", "bottom"), area_probs=(0.0, 1.0), p=1.0)
    aug(torch.rand(40, 3, 32, 16))
    assert set(aug._params["location"].tolist()) == {2, 3}
    assert set(aug._params["area"].tolist()) == {0.25}


def test_replay_is_bit_identical_and_seeding_is_deterministic() -> None:
    images = torch.rand(9, 3, 64, 32)
    aug = RandomBandOcclusion(p=1.0)
    torch.manual_seed(4)
    first = aug(images)
    params = aug._params
    assert torch.equal(aug(images, params=params), first)
    assert torch.equal(RandomBandOcclusion(p=1.0)(images, params=params), first)
    torch.manual_seed(4)
    assert torch.equal(aug(images), first)
    torch.manual_seed(5)
    assert not torch.equal(aug(images), first)


def test_p_zero_leaves_the_input_unchanged() -> None:
    images = torch.rand(6, 3, 32, 16)
    out = RandomBandOcclusion(p=0.0)(images)
    assert torch.equal(out, images)


def test_p_half_occludes_the_rows_its_gate_selects() -> None:
    images = torch.rand(16, 3, 32, 16)
    aug = RandomBandOcclusion(p=0.5)
    torch.manual_seed(6)
    out = aug(images)
    selected = aug._params["batch_prob"] > 0.5
    assert 0 < int(selected.sum()) < 16
    always = RandomBandOcclusion(p=1.0)(images, params=dict(aug._params))
    assert torch.equal(out[selected], always[selected])
    assert torch.equal(out[~selected], images[~selected])
    assert not torch.equal(always[~selected], images[~selected])


def test_same_on_batch_shares_all_but_the_source() -> None:
    torch.manual_seed(7)
    aug = RandomBandOcclusion(same_on_batch=True, p=1.0)
    images = torch.rand(10, 3, 32, 16)
    out = aug(images)
    params = aug._params
    for key in KEYS:
        if key != "source_index":
            assert params[key].unique().numel() == 1, key
    assert bool((params["source_index"] != torch.arange(10)).all())
    torch.testing.assert_close(out, reference_occlusion(images, params), rtol=0, atol=1e-5)


def test_keepdim_with_one_image_takes_the_patch_from_itself() -> None:
    torch.manual_seed(8)
    image = torch.rand(3, 40, 20, dtype=torch.float64)
    aug = RandomBandOcclusion(p=1.0, keepdim=True)
    out = aug(image)
    assert out.shape == (3, 40, 20)
    assert aug._params["source_index"].tolist() == [0]
    expected = reference_occlusion(image[None], aug._params)[0]
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-9)
    assert RandomBandOcclusion(p=1.0)(image).shape == (1, 3, 40, 20)
    assert RandomBandOcclusion(p=1.0, keepdim=True)(image[0]).shape == (40, 20)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("p", [1.0, 0.5])
def test_channels_last_in_channels_last_out(p: float, device: str) -> None:
    images = torch.rand(6, 3, 32, 16, device=device)
    aug = RandomBandOcclusion(p=p)
    torch.manual_seed(9)
    out = aug(images.to(memory_format=torch.channels_last))
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert not out.is_contiguous()
    assert torch.equal(out, aug(images, params=aug._params))


@pytest.mark.parametrize("device", DEVICES)
def test_uint8_equals_the_rounded_float_path(device: str) -> None:
    images = torch.randint(0, 256, (8, 3, 48, 24), dtype=torch.uint8, device=device)
    aug = RandomBandOcclusion(p=1.0)
    torch.manual_seed(10)
    out = aug(images)
    assert out.dtype == torch.uint8
    reference = aug(images.float(), params=aug._params)
    assert torch.equal(out, reference.round().to(torch.uint8))
    assert not torch.equal(reference, reference.round())  # the rounding is exercised


@pytest.mark.parametrize("device", DEVICES)
def test_runs_on_the_input_device(device: str) -> None:
    images = torch.rand(5, 3, 32, 16, device=device)
    aug = RandomBandOcclusion(p=1.0)
    out = aug(images)
    assert out.device.type == device
    expected = aug(images.cpu(), params=aug._params)
    torch.testing.assert_close(out.cpu(), expected, rtol=0, atol=1e-6)


def test_inside_augmentation_sequential_with_other_kornia_augmentations() -> None:
    images = torch.rand(6, 3, 32, 16)
    flip = K.RandomHorizontalFlip(p=0.5)
    band = RandomBandOcclusion(p=1.0)
    normalize = K.Normalize(mean=torch.full((3,), 0.5), std=torch.full((3,), 0.25))
    pipeline = K.AugmentationSequential(flip, band, normalize)
    torch.manual_seed(11)
    out = pipeline(images)
    flipped = flip(images, params=flip._params)
    assert not torch.equal(flipped, images)
    expected = (band(flipped, params=band._params) - 0.5) / 0.25
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    assert torch.equal(pipeline(images, params=pipeline._params), out)


@pytest.mark.parametrize("p", [1.0, 0.5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bool, torch.int64, torch.uint8])
def test_a_mask_key_is_erased_inside_the_band_like_random_erasing(p: float, dtype) -> None:
    images = torch.rand(8, 3, 37, 19)
    labels = torch.randint(1, 5, (8, 1, 37, 19)).to(dtype)  # a label map, no 0 anywhere
    band = RandomBandOcclusion(p=p)
    pipeline = K.AugmentationSequential(
        K.RandomHorizontalFlip(p=0.5), band, data_keys=["input", "mask"]
    )
    torch.manual_seed(13)
    out, mask = pipeline(images, labels)
    params = band._params
    # Written out per image: the band of each row kornia's gate selected, at the mask's size.
    gate = params["batch_prob"] > 0.5
    expected_zero = band_masks(params, 37, 19) & gate[:, None, None, None]
    assert mask.dtype == dtype
    assert torch.equal(mask == 0, expected_zero)
    assert int(gate.sum()) > 0
    # The zeroed pixels are exactly the pasted ones.
    assert torch.equal(
        (out != pipeline[0](images, params=pipeline[0]._params)).any(1, True), mask == 0
    )


def test_boxes_and_keypoints_come_back_unchanged_as_with_random_erasing() -> None:
    images = torch.rand(2, 3, 32, 16)
    boxes = torch.tensor([[[1.0, 2.0], [10.0, 2.0], [10.0, 20.0], [1.0, 20.0]]]).repeat(2, 1, 1, 1)
    keypoints = torch.tensor([[[3.0, 4.0], [12.0, 30.0]]]).repeat(2, 1, 1)
    keys = ["input", "bbox", "keypoints"]
    for aug in (RandomBandOcclusion(p=1.0), K.RandomErasing(p=1.0)):
        _, out_boxes, out_keypoints = K.AugmentationSequential(aug, data_keys=keys)(
            images, boxes, keypoints
        )
        assert torch.equal(out_boxes, boxes)
        assert torch.equal(out_keypoints, keypoints)


def test_inside_nn_sequential() -> None:
    images = torch.rand(4, 3, 32, 16)
    band = RandomBandOcclusion(p=1.0)
    model = nn.Sequential(band, nn.Conv2d(3, 2, kernel_size=1))
    torch.manual_seed(12)
    out = model(images)
    assert torch.equal(out, model[1](band(images, params=band._params)))


def test_gradients_flow_to_the_images() -> None:
    images = torch.rand(2, 1, 8, 4, dtype=torch.float64, requires_grad=True)
    aug = RandomBandOcclusion(p=1.0)
    aug(images)
    params = aug._params
    assert torch.autograd.gradcheck(lambda x: aug(x, params=params), (images,))


def test_torch_compile_gives_the_eager_result() -> None:
    images = torch.rand(6, 3, 32, 16)
    aug = RandomBandOcclusion(p=0.5)
    torch.manual_seed(13)
    eager = aug(images)
    params = dict(aug._params)
    compiled = torch.compile(aug, backend="eager")
    assert torch.equal(compiled(images, params=params), eager)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"locations": ("top", "middle")}, r"unknown locations \['middle'\]"),
        ({"areas": (0.5, 1.0)}, r"areas must each be in \(0, 1\)"),
        ({"area_probs": (0.7, 0.7)}, "area_probs must be non-negative and sum to 1"),
        ({"patch_area": (0.2, 0.02)}, "patch_area must satisfy 0 < low <= high"),
        ({"patch_ratio": (0.0, 3.3)}, "patch_ratio must satisfy 0 < low"),
    ],
)
def test_bad_configuration(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        RandomBandOcclusion(**kwargs)


@pytest.mark.parametrize(
    ("images", "error", "match"),
    [
        ([[1.0]], TypeError, "input must be a torch.Tensor"),
        (torch.rand(2, 2, 3, 32, 16), ValueError, r"input must have shape \(B, C, H, W\)"),
        (torch.zeros(2, 3, 32, 16, dtype=torch.int64), TypeError, "floating or uint8 tensor"),
        (torch.rand(0, 3, 32, 16), ValueError, "empty batch"),
        (torch.rand(2, 3, 1, 16), ValueError, r"area 0\.25 of a 1-pixel image height"),
    ],
)
def test_bad_input(images, error, match) -> None:
    with pytest.raises(error, match=match):
        RandomBandOcclusion(p=1.0)(images)


def test_replayed_params_are_checked() -> None:
    aug = RandomBandOcclusion(locations=("top", "left"), p=1.0)
    images = torch.rand(4, 3, 16, 8)
    aug(images)
    drawn = dict(aug._params)  # kornia keeps each replayed dict as aug._params

    def edited(**changes):
        return {**drawn, **changes}

    with pytest.raises(ValueError, match=r"params\['location'\] must have shape \(6,\).*draw new"):
        aug(torch.rand(6, 3, 16, 8), params=edited())
    without_corner = {key: value for key, value in drawn.items() if key != "corner"}
    with pytest.raises(ValueError, match=r"params lack \['corner'\]; replay .*aug\._params"):
        aug(images, params=without_corner)
    cases = [
        ({"location": torch.full((4,), 2)}, r"params\['location'\] holds \[2\], outside the codes"),
        ({"source_index": torch.full((4,), 4)}, r"params\['source_index'\] holds \[4\]"),
        ({"corner": torch.full((4,), 5)}, r"params\['corner'\] holds \[5\], outside 0\.\.3"),
        ({"patch_height": torch.full((4,), 17)}, r"holds \[17\], outside 1\.\.16"),
        ({"patch_width": torch.zeros(4, dtype=torch.long)}, r"holds \[0\], outside 1\.\.8"),
        ({"area": torch.full((4,), 0.3)}, r"params\['area'\] holds .*outside areas="),
    ]
    for change, match in cases:
        with pytest.raises(ValueError, match=match):
            aug(images, params=edited(**change))


def test_the_input_batch_is_not_kept_after_the_call() -> None:
    images = torch.rand(4, 3, 32, 16)
    alive = weakref.ref(images)
    aug = RandomBandOcclusion(p=1.0)
    out = aug(images)
    del images
    gc.collect()
    assert alive() is None, "the augmentation still holds the last input batch"
    assert aug.transform_matrix.shape == (4, 3, 3)  # kornia's identity matrix, still available
    assert out.shape == (4, 3, 32, 16)
