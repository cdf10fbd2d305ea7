"""OAMN forward pass, extract, parameter groups, gradient routing and errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from examples.oamn.model import OAMN, OAMNOutput
from tests.conftest import DEVICES

from .helpers_model import SMALL, images, small_model, trained_statistics


@pytest.mark.parametrize(
    ("kwargs", "size", "f_shape", "dim"),
    [
        ({"backbone": "resnet18"}, (64, 32), (128, 8, 4), 512),
        ({"backbone": "resnet18", "split_after": "layer1"}, (64, 32), (64, 16, 8), 512),
        (
            {"backbone": "resnet34", "split_after": "layer4", "last_stride": 1},
            (128, 64),
            (512, 8, 4),
            512,
        ),
        ({"backbone": "mobilenet_v2", "split_after": "layer3"}, (128, 64), (96, 8, 4), 1280),
        (
            {"backbone": "mobilenet_v2", "split_after": "layer4", "last_stride": 1},
            (128, 64),
            (1280, 8, 4),
            1280,
        ),
        ({"backbone": "resnet50", "split_after": "layer3"}, (128, 64), (1024, 8, 4), 2048),
    ],
)
def test_forward_shapes(kwargs: dict, size: tuple[int, int], f_shape: tuple, dim: int) -> None:
    model = OAMN(6, input_size=size, mask_down_ratio=4, **{"split_after": "layer2", **kwargs})
    out = model(images(3, size=size))
    assert isinstance(out, OAMNOutput)
    assert (model.mask_channels, *model.feature_size) == f_shape
    assert model.feature_dim == dim
    assert out.f.shape == (3, *f_shape)
    assert out.m.shape == (3, 1, *f_shape[1:])
    assert out.g.shape == out.f.shape
    assert out.pooled.shape == out.embedding.shape == (3, dim)
    assert out.logits.shape == (3, 6)
    assert out.grader_scores.shape == (3, 4)


def test_outputs_follow_the_architecture() -> None:
    """Every output recomputed from the model's parts in eval mode (dropout off)."""
    for pooling, pool in (("max", torch.amax), ("avg", torch.mean)):
        model = trained_statistics(small_model(pooling=pooling, grader="pooled"))
        x = images(4)
        with torch.no_grad():
            out = model(x)
            f = model.encoder_low(x)
            m = model.mask.attention(f)
            pooled = pool(model.encoder_high(m * f), dim=(2, 3))
            embedding = model.neck(pooled)
            logits = model.classifier(F.relu(embedding))
            grader = model.grader[2](model.grader[1](torch.mean(m * f, dim=(2, 3)))).softmax(1)
        assert bool(((out.m > 0) & (out.m < 1)).all())
        for name, expected in [
            ("f", f),
            ("m", m),
            ("g", m * f),
            ("pooled", pooled),
            ("embedding", embedding),
            ("logits", logits),
            ("grader_scores", grader),
        ]:
            torch.testing.assert_close(getattr(out, name), expected, msg=name)
        torch.testing.assert_close(out.grader_scores.sum(1), torch.ones(4))


def test_head_initialisation() -> None:
    model = OAMN(40, "resnet18", input_size=(256, 128))
    for linear in (model.classifier, model.grader[2]):
        assert torch.count_nonzero(linear.bias) == 0
        assert 0.0008 < float(linear.weight.detach().std()) < 0.0012
    for norm in (model.neck, model.grader[1]):
        assert torch.equal(norm.weight, torch.ones_like(norm.weight))


def test_baseline_without_mask() -> None:
    model = small_model(use_mask=False, grader="pooled").eval()
    assert model.mask is None
    assert not any(name.startswith("mask.") for name, _ in model.named_parameters())
    with torch.no_grad():
        out = model(images(2))
    assert torch.equal(out.m, torch.ones(2, 1, 8, 4))
    assert out.g is out.f
    # No fixed feature size without the mask: any input size runs.
    assert model(images(2, size=(96, 40))).pooled.shape == (2, 512)


@pytest.mark.parametrize("use_mask", [True, False])
def test_parameter_groups_partition_the_parameters(use_mask: bool) -> None:
    model = small_model(use_mask=use_mask)
    groups = model.parameter_groups()
    assert list(groups) == ["backbone", "mask", "head"]
    grouped = [id(p) for params in groups.values() for p in params]
    assert len(grouped) == len(set(grouped))
    assert set(grouped) == {id(p) for p in model.parameters()}
    names = {id(p): name for name, p in model.named_parameters()}
    prefixes = {
        "backbone": ("encoder_",),
        "mask": ("mask.",),
        "head": ("grader.", "neck.", "classifier."),
    }
    for group, params in groups.items():
        assert all(names[id(p)].startswith(prefixes[group]) for p in params), group
    assert (len(groups["mask"]) > 0) == use_mask


def encoder_gradients(model: OAMN, output: str) -> tuple[torch.Tensor | None, ...]:
    """d(sum of an output)/d(f) and d/d(the last E^I weight), None where no path exists."""
    out = model(images(4))
    weight = list(model.encoder_low.parameters())[-3]  # the last conv of E^I
    return torch.autograd.grad(getattr(out, output).sum(), [out.f, weight], allow_unused=True)


def test_paper_routing_sends_the_mask_gradient_to_the_encoder() -> None:
    f_grad, weight_grad = encoder_gradients(small_model(detach_mask_input=False), "m")
    assert f_grad is not None
    assert float(f_grad.abs().max()) > 0
    assert float(weight_grad.abs().max()) > 0


def test_detached_mask_input_gets_no_gradient_from_the_mask() -> None:
    model = small_model(detach_mask_input=True)
    assert encoder_gradients(model, "m") == (None, None)
    # The encoder still learns through g = m * f.
    f_grad, weight_grad = encoder_gradients(model, "pooled")
    assert float(f_grad.abs().max()) > 0
    assert float(weight_grad.abs().max()) > 0


def test_grader_input_is_detached() -> None:
    model = small_model()
    assert encoder_gradients(model, "grader_scores") == (None, None)
    out = model(images(4))
    mask_params = model.parameter_groups()["mask"]
    grads = torch.autograd.grad(
        (out.grader_scores[:, 0]).sum(), [*mask_params, model.grader[2].weight], allow_unused=True
    )
    assert all(g is None for g in grads[:-1])
    assert float(grads[-1].abs().max()) > 0


def test_eval_is_deterministic_and_batch_independent() -> None:
    model = trained_statistics(small_model())
    x = images(5)
    first, scores = model.extract(x)
    second, scores_again = model.extract(x)
    assert torch.equal(first, second)
    assert torch.equal(scores, scores_again)
    torch.testing.assert_close(model.extract(x[:2])[0], first[:2])
    torch.testing.assert_close(first.norm(dim=1), torch.ones(5))
    # Same seed, same model.
    torch.testing.assert_close(trained_statistics(small_model()).extract(x)[0], first)


def test_extract_matches_forward_in_eval_mode() -> None:
    model = trained_statistics(small_model())
    x = images(3)
    features, scores = model.extract(x)
    with torch.no_grad():
        out = model(x)
    torch.testing.assert_close(features, F.normalize(out.embedding, dim=1), atol=0, rtol=0)
    torch.testing.assert_close(scores, out.grader_scores, atol=0, rtol=0)
    assert not features.requires_grad


def test_channels_last_model_and_inputs() -> None:
    model = trained_statistics(small_model())
    x = images(3)
    features, scores = model.extract(x)
    model = model.to(memory_format=torch.channels_last)
    last_features, last_scores = model.extract(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(last_features, features, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(last_scores, scores, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_runs_on_device(device: str) -> None:
    model = trained_statistics(small_model())
    x = images(3)
    features, scores = model.extract(x)
    model = model.to(device)
    device_features, device_scores = model.extract(x.to(device))
    torch.testing.assert_close(device_features.cpu(), features, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(device_scores.cpu(), scores, atol=1e-3, rtol=1e-3)
    bank = model.gallery_bank(x.to(device))
    torch.testing.assert_close(bank[0], device_features, atol=0, rtol=0)
    out = model.train()(x.to(device))
    out.logits.sum().backward()
    assert model.classifier.weight.grad.device.type == torch.device(device).type


def test_wrong_input_size_is_explained() -> None:
    model = small_model()
    with pytest.raises(ValueError, match=r"images are 128x64 .* input_size=\(64, 32\).*Resize"):
        model(images(2, size=(128, 64)))


@pytest.mark.parametrize(
    ("input_size", "expected"),
    [((64, 32), (1, 8)), ((128, 64), (4, 8)), ((256, 128), (8, 8))],  # f: 4x2, 8x4, 16x8
)
def test_mask_reductions_are_automatic_by_default(
    input_size: tuple[int, int], expected: tuple[int, int]
) -> None:
    attention = OAMN(5, "resnet18", input_size=input_size).mask.attention
    assert (attention.spatial_reduction, attention.down_ratio) == expected


def test_given_mask_reductions_are_kept() -> None:
    model = OAMN(5, "resnet18", input_size=(128, 64), mask_spatial_reduction=2, mask_down_ratio=2)
    attention = model.mask.attention
    assert (attention.spatial_reduction, attention.down_ratio) == (2, 2)
    assert attention.W_spatial[0].out_channels == (1 + 32 // 2) // 2


def test_mask_reductions_that_do_not_fit_are_explained() -> None:
    with pytest.raises(
        ValueError,
        match=r"\(4, 2\) feature map after layer3 \(stride 16\).*mask_spatial_reduction=8, "
        r"mask_down_ratio=8 .*use spatial_reduction<=1 \(or down_ratio<=2\)\. Leave them None",
    ):
        OAMN(5, "resnet18", input_size=(64, 32), mask_spatial_reduction=8, mask_down_ratio=8)


@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        ([1.0], TypeError, r"images must be a torch\.Tensor"),
        (torch.zeros(3, 64, 32), ValueError, r"shape \(N, 3, H, W\)"),
        (torch.zeros(1, 1, 64, 32), ValueError, r"shape \(N, 3, H, W\)"),
        (torch.zeros(1, 3, 64, 32, dtype=torch.uint8), TypeError, r"floating"),
        (torch.zeros(0, 3, 64, 32), ValueError, r"empty batch"),
        (torch.zeros(1, 3, 64, 32, device="meta"), ValueError, r"on meta but the model is on cpu"),
        (torch.zeros(1, 3, 64, 32, dtype=torch.float64), TypeError, r"float64 but the model is"),
    ],
)
def test_bad_images(x: object, error: type, match: str) -> None:
    model = small_model().eval()
    with pytest.raises(error, match=match):
        model.extract(x)


def test_extract_and_bank_refuse_training_mode() -> None:
    model = small_model().train()
    with pytest.raises(RuntimeError, match=r"extract\(\).*model\.eval\(\)"):
        model.extract(images(2))
    with pytest.raises(RuntimeError, match=r"gallery_bank\(\).*model\.eval\(\)"):
        model.gallery_bank(images(2))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_classes": 0}, ValueError, r"num_classes must be a positive int"),
        ({"backbone": "vgg16"}, ValueError, r"backbone must be one of"),
        ({"split_after": "layer0"}, ValueError, r"split_after must be one of"),
        ({"last_stride": 4}, ValueError, r"last_stride must be 1 or 2"),
        ({"input_size": (64,)}, ValueError, r"input_size must be an \(H, W\) pair"),
        ({"pooling": "gem"}, ValueError, r"pooling must be one of"),
        ({"dropout": 1.0}, ValueError, r"dropout must be a probability"),
        ({"use_mask": 1}, TypeError, r"use_mask must be a bool"),
        ({"detach_mask_input": "yes"}, TypeError, r"detach_input must be a bool"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    arguments = {"num_classes": 5, **SMALL, **kwargs}
    with pytest.raises(error, match=match):
        OAMN(**arguments)
