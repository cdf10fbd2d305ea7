"""The layers against the authors' RGA_Module (tests/attention/reference.py): weights, values,
gradients and BatchNorm statistics, in float64."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from oamn.attention import RGA, AttentionMask, RGASpatial
from tests.attention.reference import RGAModule
from tests.conftest import DEVICES

# (C, (H, W)): two feature sizes, the second not square (H*W = 72, C' = 16, K = 9).
SIZES = [(64, (8, 8)), (128, (12, 6))]
TOLERANCE = {"atol": 1e-5, "rtol": 1e-5}


def double_features(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def randomise(module: nn.Module, seed: int) -> None:
    """Give every weight and BatchNorm statistic a non-default value, so that no term hides."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if not tensor.is_floating_point():
                continue
            noise = torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype)
            if name.endswith("running_var"):
                tensor.copy_(noise.abs() + 0.5)
            elif name.endswith(("1.weight", "4.weight")):  # BatchNorm scales
                tensor.copy_(1 + 0.3 * noise)
            else:
                tensor.copy_(0.3 * noise)


def authors_layer(
    channels: int, size: tuple[int, int], use_spatial: bool = True, use_channel: bool = True
) -> RGAModule:
    """The authors' layer in float64 with random weights and statistics."""
    reference = RGAModule(
        channels, size[0] * size[1], use_spatial=use_spatial, use_channel=use_channel
    ).double()
    randomise(reference, seed=channels)
    return reference


def loaded(layer: nn.Module, reference: RGAModule) -> nn.Module:
    """``layer`` in float64 holding the reference's weights, loaded strictly."""
    layer.double().load_state_dict(reference.state_dict(), strict=True)
    return layer


def test_spatial_layer_has_the_papers_parameter_count_and_the_authors_names() -> None:
    layer = RGASpatial(1024, (16, 8))
    reference = RGAModule(1024, 128, use_channel=False)
    assert sum(p.numel() for p in layer.parameters()) == 398_154
    assert list(layer.state_dict()) == list(reference.state_dict())
    for (name, ours), (_, theirs) in zip(
        layer.state_dict().items(), reference.state_dict().items(), strict=True
    ):
        assert ours.shape == theirs.shape, name
    reference.load_state_dict(layer.state_dict(), strict=True)  # and back


@pytest.mark.parametrize(("use_spatial", "use_channel"), [(True, True), (False, True)])
def test_full_layer_has_the_authors_state_dict(use_spatial: bool, use_channel: bool) -> None:
    layer = RGA(1024, (16, 8), use_spatial=use_spatial, use_channel=use_channel)
    reference = RGAModule(1024, 128, use_spatial=use_spatial, use_channel=use_channel)
    assert list(layer.state_dict()) == list(reference.state_dict())
    assert [p.shape for p in layer.parameters()] == [p.shape for p in reference.parameters()]
    assert {n.split(".")[0] for n in layer.state_dict()} >= {"theta_channel", "gg_channel"}


def reference_spatial_map(reference: RGAModule, x: torch.Tensor) -> torch.Tensor:
    """sigmoid(W_ys) of the authors' forward, caught with a hook (their output is m * x)."""
    caught = []
    handle = reference.W_spatial.register_forward_hook(lambda _m, _i, out: caught.append(out))
    reference(x)
    handle.remove()
    return torch.sigmoid(caught[0])


def assert_same_gradients(
    reference: nn.Module, ours: nn.Module, x: torch.Tensor, reference_out, our_out
) -> None:
    weight = double_features(*our_out.shape, seed=7).to(x.device)
    names = [name for name, _ in ours.named_parameters()]
    theirs = dict(reference.named_parameters())
    expected = torch.autograd.grad((reference_out * weight).sum(), [x, *(theirs[n] for n in names)])
    got = torch.autograd.grad((our_out * weight).sum(), [x, *ours.parameters()])
    for name, want, have in zip(["input", *names], expected, got, strict=True):
        torch.testing.assert_close(have, want, **TOLERANCE, msg=lambda m, n=name: f"{n}: {m}")


def assert_matches(
    reference: RGAModule, layer: nn.Module, training: bool, reference_output=RGAModule.__call__
) -> None:
    """Same values and gradients (input and every parameter) in the given BatchNorm mode."""
    reference.train(training)
    layer.train(training)
    x = double_features(3, layer.in_channels, *layer.spatial_size).requires_grad_()
    expected = reference_output(reference, x)
    out = layer(x)
    torch.testing.assert_close(out, expected, **TOLERANCE)
    assert_same_gradients(reference, layer, x, expected, out)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize(("channels", "size"), SIZES)
def test_spatial_map_values_and_gradients_match_the_reference(
    channels: int, size: tuple[int, int], training: bool
) -> None:
    reference = authors_layer(channels, size, use_channel=False)
    layer = loaded(RGASpatial(channels, size), reference)
    assert_matches(reference, layer, training, reference_output=reference_spatial_map)


@pytest.mark.parametrize("detach_input", [False, True])
@pytest.mark.parametrize(("channels", "size"), SIZES)
def test_attention_mask_output_is_the_authors_output(
    channels: int, size: tuple[int, int], detach_input: bool
) -> None:
    reference = authors_layer(channels, size, use_channel=False)
    layer = loaded(RGASpatial(channels, size), reference)
    x = double_features(4, channels, *size).requires_grad_()
    g, m = AttentionMask(layer, detach_input=detach_input)(x)
    expected = reference(x.detach() if detach_input else x)
    torch.testing.assert_close(g, expected, **TOLERANCE)
    assert m.shape == (4, 1, *size)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize(("channels", "size"), SIZES)
@pytest.mark.parametrize(
    ("use_spatial", "use_channel"), [(True, True), (False, True), (True, False)]
)
def test_full_layer_values_and_gradients_match_the_reference(
    channels: int, size: tuple[int, int], use_spatial: bool, use_channel: bool, training: bool
) -> None:
    reference = authors_layer(channels, size, use_spatial, use_channel)
    layer = loaded(RGA(channels, size, use_spatial=use_spatial, use_channel=use_channel), reference)
    assert_matches(reference, layer, training)


@pytest.mark.parametrize(("channels", "size"), SIZES)
def test_batchnorm_statistics_update_as_the_authors(channels: int, size: tuple[int, int]) -> None:
    reference = authors_layer(channels, size)
    layer = loaded(RGA(channels, size), reference)
    for step in range(2):
        x = double_features(5, channels, *size, seed=step) + step
        reference(x)
        layer(x)
    for (name, want), (_, have) in zip(
        reference.state_dict().items(), layer.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(have, want, **TOLERANCE, msg=lambda m, n=name: f"{n}: {m}")
    assert int(layer.state_dict()["gg_channel.1.num_batches_tracked"]) == 2


@pytest.mark.parametrize("device", DEVICES)
def test_float32_on_each_device_matches_the_float64_reference(device: str) -> None:
    reference = authors_layer(128, (16, 8))
    layer = loaded(RGA(128, (16, 8)), reference)
    x = double_features(4, 128, 16, 8)
    expected = reference(x)
    out = layer.float().to(device)(x.float().to(device))
    assert out.dtype == torch.float32
    assert out.device.type == device
    torch.testing.assert_close(out.cpu().double(), expected, atol=1e-4, rtol=1e-4)
