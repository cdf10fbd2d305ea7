"""The occlusion graders: the authors' pooled input and the scale-free row and column profiles."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from examples.oamn.model import GRADERS, OAMN, build_grader
from oamn.attention import GlobalAveragePool, ScaleFreeProfiles

from .helpers_model import SMALL, images, small_model, trained_statistics


@pytest.fixture(scope="module")
def trained() -> dict[str, OAMN]:
    """A small model of each grader kind with non-trivial BatchNorm statistics, in eval mode."""
    return {kind: trained_statistics(small_model(grader=kind)) for kind in GRADERS}


def profiles_reference(g: torch.Tensor) -> torch.Tensor:
    """One image and one channel at a time: ``g / rms(g)``, then its row means and column means."""
    rows = []
    for image in g:
        normalised = image / image.pow(2).mean().sqrt()
        rows.append(
            torch.cat(
                [torch.cat([channel.mean(dim=1), channel.mean(dim=0)]) for channel in normalised]
            )
        )
    return torch.stack(rows)


def lit(rows: slice, channels: int = 3, size: tuple[int, int] = (4, 2)) -> torch.Tensor:
    """``(1, C, h, w)`` zeros with the given rows set to 1 in every channel."""
    g = torch.zeros(1, channels, *size)
    g[:, :, rows] = 1.0
    return g


def test_profiles_by_hand() -> None:
    # C = 2, h = 3, w = 2; squares 4 + 4 + 4 = 12 over 12 entries: rms 1.
    g = torch.zeros(1, 2, 3, 2)
    g[0, 0, 0] = 2.0  # channel 0: the top row lit
    g[0, 1, 2, 0] = 2.0  # channel 1: the bottom-left corner
    expected = torch.tensor([[2.0, 0, 0, 2 / 3, 2 / 3, 0, 0, 1.0, 2 / 3, 0]])
    torch.testing.assert_close(ScaleFreeProfiles()(g), expected)
    torch.testing.assert_close(ScaleFreeProfiles()(5.0 * g), expected)
    torch.testing.assert_close(ScaleFreeProfiles()(0.25 * g), expected)


def test_profiles_equal_the_reference_and_ignore_per_image_scales() -> None:
    g = torch.randn(3, 4, 5, 2, generator=torch.Generator().manual_seed(0))
    profiles = ScaleFreeProfiles()(g)
    assert profiles.shape == (3, 4 * (5 + 2))
    torch.testing.assert_close(profiles, profiles_reference(g))
    scale = torch.tensor([0.01, 1.0, 250.0]).view(3, 1, 1, 1)
    torch.testing.assert_close(ScaleFreeProfiles()(scale * g), profiles, atol=1e-6, rtol=1e-5)
    # The pool, by contrast, follows the scale.
    torch.testing.assert_close(GlobalAveragePool()(scale * g), scale.view(3, 1) * g.mean((2, 3)))


def test_profiles_of_an_all_zero_map_are_zero() -> None:
    g = torch.zeros(2, 3, 4, 2)
    g[1] = torch.rand(3, 4, 2)
    profiles = ScaleFreeProfiles()(g)
    assert torch.equal(profiles[0], torch.zeros(3 * 6))
    torch.testing.assert_close(profiles[1], profiles_reference(g[1:])[0])


def test_profiles_tell_top_from_bottom_where_the_pool_cannot() -> None:
    top, bottom = lit(slice(0, 2)), lit(slice(2, 4))
    assert torch.equal(GlobalAveragePool()(top), GlobalAveragePool()(bottom))
    top_profiles, bottom_profiles = ScaleFreeProfiles()(top), ScaleFreeProfiles()(bottom)
    assert not torch.allclose(top_profiles, bottom_profiles)
    # Channel 0's rows (rms sqrt(1/2)): sqrt(2) where lit; the column profiles agree.
    root2 = 2**0.5
    torch.testing.assert_close(top_profiles[0, :4], torch.tensor([root2, root2, 0, 0]))
    torch.testing.assert_close(bottom_profiles[0, :4], torch.tensor([0, 0, root2, root2]))
    torch.testing.assert_close(top_profiles[0, 4:6], bottom_profiles[0, 4:6])
    # Through the graders (eval mode): the pooled one scores both alike, the profiles one not.
    torch.manual_seed(0)
    pooled, profiles = (build_grader(kind, 3, (4, 2)).eval() for kind in ("pooled", "profiles"))
    assert torch.equal(pooled(top), pooled(bottom))
    assert not torch.allclose(profiles(top), profiles(bottom))


@pytest.mark.parametrize(
    ("kind", "summary", "width"),
    [("pooled", GlobalAveragePool, 8), ("profiles", ScaleFreeProfiles, 48)],
)
def test_build_grader_layers(kind: str, summary: type, width: int) -> None:
    grader = build_grader(kind, 8, (4, 2))
    assert isinstance(grader, nn.Sequential)
    assert len(grader) == 3
    assert isinstance(grader[0], summary)
    assert isinstance(grader[1], nn.BatchNorm1d)
    assert grader[1].num_features == width
    assert isinstance(grader[2], nn.Linear)
    assert (grader[2].in_features, grader[2].out_features) == (width, 4)
    assert grader(torch.randn(5, 8, 4, 2)).shape == (5, 4)


def test_build_grader_rejects_an_unknown_kind() -> None:
    assert GRADERS == ("pooled", "profiles", "profiles_mlp", "feature_profiles")
    choices = r"\('pooled', 'profiles', 'profiles_mlp', 'feature_profiles'\)"
    with pytest.raises(ValueError, match=rf"grader must be one of {choices}, got 'gap'"):
        build_grader("gap", 8, (4, 2))
    with pytest.raises(ValueError, match=rf"grader must be one of {choices}"):
        OAMN(5, **SMALL, grader="gap")


def test_pooled_model_keeps_the_authors_grader() -> None:
    model = small_model(grader="pooled")
    channels = model.mask_channels
    assert isinstance(model.grader[0], GlobalAveragePool)
    assert isinstance(model.grader[1], nn.BatchNorm1d)
    assert model.grader[1].num_features == channels
    assert isinstance(model.grader[2], nn.Linear)
    assert (model.grader[2].in_features, model.grader[2].out_features) == (channels, 4)


def test_profiles_model_structure_and_initialisation() -> None:
    model = small_model(grader="profiles")
    channels, (height, width) = model.mask_channels, model.feature_size
    width = channels * (height + width)
    assert isinstance(model.grader[0], ScaleFreeProfiles)
    assert model.grader[1].num_features == width
    assert (model.grader[2].in_features, model.grader[2].out_features) == (width, 4)
    assert torch.count_nonzero(model.grader[2].bias) == 0
    assert 0.0008 < float(model.grader[2].weight.detach().std()) < 0.0012
    assert torch.equal(model.grader[1].weight, torch.ones(width))


def test_profiles_model_scores_follow_the_profiles_of_g(trained: dict[str, OAMN]) -> None:
    model = trained["profiles"]
    x = images(3)
    with torch.no_grad():
        out = model(x)
        g = model.mask.attention(model.encoder_low(x)) * model.encoder_low(x)
        expected = model.grader[2](model.grader[1](profiles_reference(g))).softmax(1)
    torch.testing.assert_close(out.grader_scores, expected)
    torch.testing.assert_close(model.extract(x)[1], out.grader_scores, atol=0, rtol=0)


class ScaledAttention(nn.Module):
    """The wrapped attention's mask times one positive scale per image."""

    def __init__(self, attention: nn.Module, scale: torch.Tensor) -> None:
        super().__init__()
        self.attention, self.scale = attention, scale

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.attention(f) * self.scale.view(-1, 1, 1, 1)


@pytest.mark.parametrize("grader", GRADERS)
def test_profiles_scores_ignore_the_mask_scale(trained: dict[str, OAMN], grader: str) -> None:
    model = trained[grader]
    x = images(3)
    _, scores = model.extract(x)
    scale = torch.tensor([0.05, 1.0, 20.0])
    attention = model.mask.attention
    # (Not monkeypatch.setattr: its undo deletes a submodule, which is not in the instance dict.)
    model.mask.attention = ScaledAttention(attention, scale)
    try:
        _, scaled = model.extract(x)
        with torch.no_grad():
            m = model(x).m
    finally:
        model.mask.attention = attention
    with torch.no_grad():
        torch.testing.assert_close(m, attention(model.encoder_low(x)) * scale.view(3, 1, 1, 1))
    if grader != "pooled":  # profiles of g / rms(g), or of f: blind to the mask's scale
        torch.testing.assert_close(scaled, scores, atol=1e-6, rtol=1e-5)
    else:  # the authors' pooled grader reads the mask's scale
        assert float((scaled - scores).abs().max()) > 1e-4


def test_profiles_grader_sees_a_scaled_g_alike(trained: dict[str, OAMN]) -> None:
    model = trained["profiles"]
    with torch.no_grad():
        out = model(images(3))
        scale = torch.tensor([1e-3, 0.5, 40.0]).view(3, 1, 1, 1)
        torch.testing.assert_close(
            model.grader(scale * out.g).softmax(1), out.grader_scores, atol=1e-6, rtol=1e-5
        )
        assert not torch.allclose(F.softmax(model.grader(out.g.flip(2)), 1), out.grader_scores)


def test_build_profiles_mlp_layers() -> None:
    grader = build_grader("profiles_mlp", 8, (4, 2))
    assert isinstance(grader, nn.Sequential)
    assert [type(layer) for layer in grader] == [
        ScaleFreeProfiles,
        nn.BatchNorm1d,
        nn.Linear,
        nn.ReLU,
        nn.Linear,
    ]
    assert grader[1].num_features == 48
    assert (grader[2].in_features, grader[2].out_features) == (48, 256)
    assert (grader[4].in_features, grader[4].out_features) == (256, 4)
    assert grader(torch.randn(5, 8, 4, 2)).shape == (5, 4)
    # The feature grader has the linear grader's layers (it differs only in what the model feeds).
    features = build_grader("feature_profiles", 8, (4, 2))
    assert [type(layer) for layer in features] == [ScaleFreeProfiles, nn.BatchNorm1d, nn.Linear]
    assert (features[2].in_features, features[2].out_features) == (48, 4)


def test_profiles_mlp_model_initialises_its_output_layer() -> None:
    model = small_model(grader="profiles_mlp")
    channels, (height, width) = model.mask_channels, model.feature_size
    width = channels * (height + width)
    assert len(model.grader) == 5
    assert model.grader[1].num_features == width
    assert (model.grader[2].in_features, model.grader[2].out_features) == (width, 256)
    output = model.grader[-1]
    assert output is model.grader[4]
    assert (output.in_features, output.out_features) == (256, 4)
    assert torch.count_nonzero(output.bias) == 0
    assert 0.0008 < float(output.weight.detach().std()) < 0.0012
    assert abs(float(output.weight.detach().mean())) < 0.0002
    # The hidden layer keeps PyTorch's default initialisation (much wider than 0.001).
    assert float(model.grader[2].weight.detach().std()) > 0.002
    assert torch.count_nonzero(model.grader[2].bias) > 0
    assert (model.grader_reads_positions, model.grader_reads_features) == (True, False)


def test_feature_profiles_model_scores_are_the_grader_of_f(trained: dict[str, OAMN]) -> None:
    model = trained["feature_profiles"]
    assert (model.grader_reads_positions, model.grader_reads_features) == (True, True)
    x = images(3)
    with torch.no_grad():
        out = model(x)
        expected = model.grader(model.encoder_low(x)).softmax(1)
        from_profiles = model.grader[2](model.grader[1](profiles_reference(out.f))).softmax(1)
    torch.testing.assert_close(out.grader_scores, expected, atol=0, rtol=0)
    torch.testing.assert_close(out.grader_scores, from_profiles)
    torch.testing.assert_close(model.extract(x)[1], out.grader_scores, atol=0, rtol=0)
    # Not the grader of g.
    assert not torch.allclose(model.grader(out.g).softmax(1), out.grader_scores)


class ReplacedAttention(nn.Module):
    """Ignores ``f``'s content: a fixed ``(1, 1, h, w)`` map broadcast over the batch."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.mask = mask

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.mask.expand(f.shape[0], 1, *f.shape[2:]).to(f.dtype)


def scores_with_attention(model: OAMN, x: torch.Tensor, attention: nn.Module) -> tuple:
    """``(extract scores, forward scores, forward m)`` with the mask's attention replaced."""
    original = model.mask.attention
    model.mask.attention = attention
    try:
        _, scores = model.extract(x)
        with torch.no_grad():
            out = model(x)
    finally:
        model.mask.attention = original
    return scores, out.grader_scores, out.m


@pytest.mark.parametrize("replacement", ["constant", "random", "zeros"])
def test_feature_profiles_scores_ignore_the_mask(trained: dict[str, OAMN], replacement) -> None:
    x = images(3)
    height, width = trained["feature_profiles"].feature_size
    mask = {
        "constant": torch.full((1, 1, height, width), 0.3),
        "random": torch.rand(1, 1, height, width, generator=torch.Generator().manual_seed(5)),
        "zeros": torch.zeros(1, 1, height, width),
    }[replacement]
    for kind in GRADERS:
        model = trained[kind]
        _, scores = model.extract(x)
        replaced, forward_scores, m = scores_with_attention(model, x, ReplacedAttention(mask))
        assert torch.equal(m, mask.expand(3, 1, height, width))  # the replacement is in use
        torch.testing.assert_close(forward_scores, replaced, atol=0, rtol=0)
        if kind == "feature_profiles":
            assert torch.equal(replaced, scores)
        elif kind == "pooled" or replacement == "random":
            # The pool reads any mask; the profiles of g are blind to a constant only.
            assert float((replaced - scores).abs().max()) > 1e-4, kind


def test_feature_profiles_grader_sends_no_gradient_to_the_encoder() -> None:
    model = small_model(grader="feature_profiles")
    out = model(images(4))
    weight = list(model.encoder_low.parameters())[-3]  # the last conv of E^I
    mask_params = model.parameter_groups()["mask"]
    grads = torch.autograd.grad(
        out.grader_scores[:, 0].sum(),
        [out.f, weight, *mask_params, model.grader[-1].weight],
        allow_unused=True,
    )
    assert all(grad is None for grad in grads[:-1])
    assert float(grads[-1].abs().max()) > 0
    # The encoder still learns through the identity head.
    f_grad, weight_grad = torch.autograd.grad(out.pooled.sum(), [out.f, weight])
    assert float(f_grad.abs().max()) > 0
    assert float(weight_grad.abs().max()) > 0


@pytest.mark.parametrize("grader", ["profiles", "profiles_mlp", "feature_profiles"])
def test_profile_grader_without_mask_rejects_another_input_size(grader: str) -> None:
    model = small_model(grader=grader, use_mask=False).eval()
    assert model.mask is None
    model.extract(images(2))  # the built size works
    match = (
        r"images are 128x64 .* input_size=\(64, 32\): its grader reads profiles of the fixed "
        r"\(8, 4\) positions .*Resize"
    )
    with pytest.raises(ValueError, match=match):
        model.extract(images(2, size=(128, 64)))
    with pytest.raises(ValueError, match=match):
        model(images(2, size=(128, 64)))


def test_pooled_grader_without_mask_accepts_another_input_size() -> None:
    model = small_model(use_mask=False, grader="pooled").eval()
    features, scores = model.extract(images(2, size=(128, 64)))
    assert features.shape[0] == scores.shape[0] == 2
