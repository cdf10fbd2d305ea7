"""RGASpatial and RGA without spatial_size: built from the first input, like torch's Lazy*."""

from __future__ import annotations

from copy import deepcopy

import pytest
import torch
from torch.nn.parameter import UninitializedParameter

from oamn.attention import RGA, AttentionMask, RGASpatial


def features(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(1), dtype=dtype)


@pytest.mark.parametrize("layer_class", [RGASpatial, RGA])
@pytest.mark.parametrize("size", [(8, 4), (16, 8), (2, 2)])
def test_the_first_input_builds_the_eager_layer(layer_class: type, size: tuple[int, int]) -> None:
    x = features(3, 16, *size)
    torch.manual_seed(5)
    eager = layer_class(16, size)
    torch.manual_seed(5)
    lazy = layer_class(16)
    assert lazy.spatial_size is None
    assert all(isinstance(p, UninitializedParameter) for p in lazy.parameters())
    out = lazy(x)
    assert lazy.spatial_size == size
    for name in ("channel_reduction", "spatial_reduction", "down_ratio"):
        assert getattr(lazy, name) == getattr(eager, name)
    assert list(lazy.state_dict()) == list(eager.state_dict())
    for (name, built), (_, reference) in zip(
        lazy.named_parameters(), eager.named_parameters(), strict=True
    ):
        assert type(built) is torch.nn.Parameter, name
        assert torch.equal(built, reference), name
    assert torch.equal(out, eager(x))
    assert repr(lazy) == repr(eager)


def test_an_optimizer_built_before_the_first_call_trains_the_layer() -> None:
    layer = RGASpatial(16)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.5)
    held = [p for group in optimizer.param_groups for p in group["params"]]
    layer(features(4, 16, 8, 4)).square().sum().backward()
    before = [p.detach().clone() for p in layer.parameters()]
    optimizer.step()
    assert [id(p) for p in layer.parameters()] == [id(p) for p in held]
    assert all(not torch.equal(b, p) for b, p in zip(before, layer.parameters(), strict=True))


def test_dtype_moves_before_the_first_call_are_kept() -> None:
    layer = RGASpatial(16).to(torch.float64)
    m = layer(features(2, 16, 8, 4, dtype=torch.float64))
    assert m.dtype == torch.float64
    assert {p.dtype for p in layer.parameters()} == {torch.float64}
    assert layer.gg_spatial[1].running_mean.dtype == torch.float64


def test_the_size_is_fixed_after_the_first_call() -> None:
    layer = RGASpatial(16)
    layer(features(2, 16, 8, 4))
    with pytest.raises(ValueError, match=r"built for spatial_size=\(8, 4\)"):
        layer(features(2, 16, 16, 8))


def test_a_reduction_that_does_not_fit_the_first_input_raises_and_leaves_it_unbuilt() -> None:
    layer = RGASpatial(16, spatial_reduction=64)
    with pytest.raises(ValueError, match="spatial_reduction=64 leaves no channels"):
        layer(features(2, 16, 8, 4))  # 32 positions
    assert layer.spatial_size is None
    assert layer(features(2, 16, 16, 8)).shape == (2, 1, 16, 8)  # 128 // 64 = 2 relations
    assert (layer.spatial_reduction, layer.down_ratio) == (64, 3)


def test_wrong_channels_raise_before_anything_is_built() -> None:
    layer = RGASpatial(16)
    with pytest.raises(ValueError, match="in_channels=16"):
        layer(features(2, 8, 8, 4))
    assert layer.spatial_size is None


def test_state_dicts_need_the_first_call() -> None:
    trained = RGASpatial(16, (8, 4))
    layer = RGASpatial(16)
    fix = r"call it once on a feature map .* spatial_size=\(H, W\) before"
    with pytest.raises(RuntimeError, match=fix + " loading a state dict"):
        layer.load_state_dict(trained.state_dict())
    with pytest.raises(RuntimeError, match=fix + " saving a state dict"):
        torch.nn.Sequential(layer).state_dict()
    layer(features(1, 16, 8, 4))
    layer.load_state_dict(trained.state_dict())
    x = features(2, 16, 8, 4)
    assert torch.equal(layer.eval()(x), trained.eval()(x))


def test_inside_attention_mask() -> None:
    mask = AttentionMask(RGASpatial(16), detach_input=True)
    g, m = mask(features(2, 16, 12, 6))
    assert g.shape == (2, 16, 12, 6)
    assert m.shape == (2, 1, 12, 6)
    assert mask.attention.spatial_size == (12, 6)
    assert repr(RGASpatial(16)).endswith("built at the first input)")


def test_a_copy_made_before_the_first_call_is_built_on_its_own() -> None:
    layer = RGASpatial(16)
    copy = deepcopy(layer)
    copy(features(2, 16, 8, 4))
    assert (copy.spatial_size, layer.spatial_size) == ((8, 4), None)
    copy.load_state_dict(RGASpatial(16, (8, 4)).state_dict())
    assert all(isinstance(p, UninitializedParameter) for p in layer.parameters())


def test_what_was_set_before_the_first_call_is_kept() -> None:
    layer = torch.nn.SyncBatchNorm.convert_sync_batchnorm(RGASpatial(16))
    layer.gg_spatial[1].momentum = 0.01
    seen = []
    layer.W_spatial[4].register_forward_hook(lambda module, args, out: seen.append(out.shape))
    layer.eval()
    x = features(3, 16, 8, 4)
    out = layer(x)  # SyncBatchNorm in eval mode runs without a process group
    assert seen == [(3, 1, 8, 4)]
    assert {type(m).__name__ for m in layer.modules() if "Norm" in type(m).__name__} == {
        "SyncBatchNorm"
    }
    assert layer.gg_spatial[1].momentum == 0.01
    assert not any(m.training for m in layer.modules())
    # Eval mode from the first call on: running statistics, so each row is its own.
    assert torch.equal(layer(x[:1]), out[:1])
    assert torch.equal(layer.gg_spatial[1].running_mean, torch.zeros(8))
    assert layer.gg_spatial[1].num_features == 8


def test_a_first_call_under_inference_mode_leaves_the_layer_trainable() -> None:
    layer = RGASpatial(16)
    with torch.inference_mode():
        layer(features(2, 16, 8, 4))
    assert not any(p.is_inference() for p in layer.parameters())
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer(features(2, 16, 8, 4)).sum().backward()
    optimizer.step()


def test_a_state_dict_without_the_layers_keys_loads_before_the_first_call() -> None:
    model = torch.nn.ModuleDict({"backbone": torch.nn.Linear(2, 2), "mask": RGASpatial(16)})
    backbone = {f"backbone.{k}": v for k, v in torch.nn.Linear(2, 2).state_dict().items()}
    model.load_state_dict(backbone, strict=False)
    assert torch.equal(model["backbone"].weight, backbone["backbone.weight"])
    with pytest.raises(RuntimeError, match="before loading a state dict"):
        model.load_state_dict({**backbone, "mask.gx_spatial.0.weight": torch.zeros(2)}, False)
