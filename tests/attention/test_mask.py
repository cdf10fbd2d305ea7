"""AttentionMask: g = m * f, and the paper's and the authors' gradient flows."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from oamn.attention import AttentionMask, RGASpatial


def spatial_layer() -> RGASpatial:
    torch.manual_seed(0)  # the same weights on every call
    return RGASpatial(32, (8, 8), channel_reduction=4).double()


def test_outputs_the_map_and_the_weighted_features() -> None:
    layer = spatial_layer().eval()
    f = torch.randn(3, 32, 8, 8, dtype=torch.float64)
    g, m = AttentionMask(layer)(f)
    torch.testing.assert_close(m, layer(f), atol=0, rtol=0)
    torch.testing.assert_close(g, m.expand_as(f) * f, atol=0, rtol=0)


def test_detached_input_gets_gradient_only_through_the_product() -> None:
    f = torch.randn(3, 32, 8, 8, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(f.shape, dtype=torch.float64)
    gradients = {}
    for detach_input in (True, False):
        mask = AttentionMask(spatial_layer(), detach_input=detach_input)
        g, m = mask(f)
        (f_grad,) = torch.autograd.grad((g * upstream).sum(), f)
        gradients[detach_input] = f_grad
        if detach_input:
            # d(m * f)/df with m a constant: exactly m * upstream
            torch.testing.assert_close(f_grad, m.detach() * upstream, atol=0, rtol=0)
    # The paper's flow adds the attention branch's gradient, which is not negligible.
    assert (gradients[False] - gradients[True]).abs().max() > 1e-3


def test_detached_input_still_trains_the_attention() -> None:
    mask = AttentionMask(spatial_layer(), detach_input=True)
    f = torch.randn(3, 32, 8, 8, dtype=torch.float64, requires_grad=True)
    g, _ = mask(f)
    (g * torch.randn(g.shape, dtype=torch.float64)).sum().backward()
    grads = [p.grad for p in mask.parameters()]
    assert all(grad is not None for grad in grads)
    assert all(grad.abs().sum() > 0 for grad in grads)


class _Returns(nn.Module):
    def __init__(self, value: object) -> None:
        super().__init__()
        self.value = value

    def forward(self, f: torch.Tensor) -> object:
        return self.value


@pytest.mark.parametrize(
    ("returned", "match"),
    [
        (torch.rand(2, 2, 4, 4), r"attention returned \(2, 2, 4, 4\), which does not broadcast"),
        (torch.rand(1, 1, 4, 4), r"attention returned \(1, 1, 4, 4\).*same batch"),
        (torch.rand(2, 4, 4), r"attention returned \(2, 4, 4\)"),
        ((torch.rand(2, 1, 4, 4),), "attention returned tuple"),
    ],
)
def test_a_map_that_does_not_fit_the_features_is_an_error(returned: object, match: str) -> None:
    mask = AttentionMask(_Returns(returned))
    with pytest.raises(ValueError, match=match):
        mask(torch.rand(2, 3, 4, 4))


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match=r"attention must be an nn\.Module, got builtin_function"):
        AttentionMask(torch.sigmoid)
    with pytest.raises(TypeError, match="detach_input must be a bool, got 'yes'"):
        AttentionMask(nn.Identity(), detach_input="yes")
    with pytest.raises(TypeError, match=r"f must be a torch\.Tensor, got list"):
        AttentionMask(nn.Identity())([1.0])
