"""RGASpatial and RGA behaviour: range, BatchNorm modes, invariants, gradients, autocast."""

from __future__ import annotations

import math

import pytest
import torch

from oamn.attention import RGA, RGASpatial
from tests.conftest import DEVICES


def features(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_map_shape_dtype_and_range(dtype: torch.dtype) -> None:
    layer = RGASpatial(1024, (16, 8)).to(dtype)
    m = layer(features(2, 1024, 16, 8, dtype=dtype))
    assert m.shape == (2, 1, 16, 8)
    assert m.dtype == dtype
    assert bool(((m > 0) & (m < 1)).all())
    assert m.std() > 0.05  # a map, not a constant


def test_constant_scorer_gives_the_hand_computed_map() -> None:
    layer = RGASpatial(32, (4, 6), spatial_reduction=2, down_ratio=4).eval()
    with torch.no_grad():
        layer.W_spatial[3].weight.zero_()  # last conv: the final BN then outputs its bias
        layer.W_spatial[4].bias.fill_(math.log(3.0))  # sigmoid(log 3) = 3/4
    m = layer(features(2, 32, 4, 6))
    torch.testing.assert_close(m, torch.full((2, 1, 4, 6), 0.75), atol=1e-7, rtol=0)


@pytest.mark.parametrize("layer_class", [RGASpatial, RGA])
def test_permuting_the_batch_permutes_the_output(layer_class: type) -> None:
    layer = layer_class(64, (8, 8)).double()
    x = features(5, 64, 8, 8, dtype=torch.float64)
    order = torch.tensor([3, 0, 4, 1, 2])
    torch.testing.assert_close(layer(x[order]), layer(x)[order], atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("layer_class", [RGASpatial, RGA])
def test_eval_mode_uses_running_statistics_and_train_mode_the_batch(layer_class: type) -> None:
    layer = layer_class(64, (8, 8))
    x = features(6, 64, 8, 8)
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    train_out = layer(x)
    assert not torch.allclose(layer(x[:2]), train_out[:2], atol=1e-3)  # batch statistics
    changed = [k for k, v in layer.state_dict().items() if not torch.equal(v, before[k])]
    assert "gg_spatial.1.running_mean" in changed
    assert "W_spatial.4.running_var" in changed

    layer.eval()
    frozen = {k: v.clone() for k, v in layer.state_dict().items()}
    torch.testing.assert_close(layer(x[:2]), layer(x)[:2], atol=1e-6, rtol=1e-6)  # per sample
    assert all(torch.equal(v, frozen[k]) for k, v in layer.state_dict().items())


def test_repeated_calls_are_bit_identical() -> None:
    layer = RGA(64, (8, 8))
    x = features(3, 64, 8, 8)
    assert torch.equal(layer(x), layer(x))  # train mode: batch statistics, same batch
    layer.eval()
    assert torch.equal(layer(x), layer(x))


def test_gradcheck_spatial() -> None:
    layer = RGASpatial(8, (3, 4), channel_reduction=2, spatial_reduction=2, down_ratio=3).double()
    x = features(2, 8, 3, 4, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(layer, (x,), fast_mode=True)
    layer.eval()
    assert torch.autograd.gradcheck(layer, (x,), fast_mode=True)


def test_gradcheck_full() -> None:
    layer = RGA(8, (4, 4), channel_reduction=2, spatial_reduction=2, down_ratio=3).double()
    x = features(2, 8, 4, 4, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(layer, (x,), fast_mode=True)


@pytest.mark.parametrize("layer_class", [RGASpatial, RGA])
@pytest.mark.parametrize("device", DEVICES)
def test_autocast_is_finite_and_close_to_float32(device: str, layer_class: type) -> None:
    dtype = torch.bfloat16 if device == "cpu" else torch.float16
    layer = layer_class(128, (16, 8)).to(device)
    x = features(4, 128, 16, 8).to(device).requires_grad_()
    expected = layer(x)
    with torch.autocast(device, dtype=dtype):
        out = layer(x)
    assert bool(torch.isfinite(out).all())
    if layer_class is RGASpatial:
        # The mask in (0, 1), a sigmoid of bfloat16 logits: measured 0.009 at most on CPU.
        assert bool(((out >= 0) & (out <= 1)).all())
        torch.testing.assert_close(out.float(), expected, atol=0.02, rtol=0.0)
    else:  # features times two maps: the error scales with the features
        torch.testing.assert_close(out.float(), expected, atol=0.1, rtol=0.05)
    out.float().sum().backward()
    assert bool(torch.isfinite(x.grad).all())


def test_compiles_without_graph_breaks() -> None:
    layer = RGA(64, (8, 8)).eval()
    x = features(2, 64, 8, 8)
    compiled = torch.compile(layer, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), layer(x))
