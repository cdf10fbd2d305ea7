"""extract_features / extract_gallery_bank: batching, order, modes, devices and errors."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from examples.oamn import precision
from examples.oamn.extraction import FeatureSet, extract_features, extract_gallery_bank
from examples.oamn.model import OAMN
from oamn.reid_eval import BANK_STRATEGIES
from tests.conftest import DEVICES

NUM_IMAGES = 7


@pytest.fixture(scope="module")
def tiny_oamn() -> OAMN:
    torch.manual_seed(0)
    model = OAMN(
        5, backbone="resnet18", split_after="layer2", input_size=(64, 32), mask_down_ratio=2
    )
    # Random BN statistics so the eval-mode features depend on them (not the identity).
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def make_loader(batch_size: int, seed: int = 0) -> tuple[DataLoader, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(NUM_IMAGES, 3, 64, 32, generator=generator)
    pids = torch.tensor([4, 4, 9, 1, 9, 0, -1])
    camids = torch.tensor([0, 1, 0, 2, 1, 5, 3])
    dataset = TensorDataset(images, pids, camids, torch.arange(NUM_IMAGES))
    return DataLoader(dataset, batch_size=batch_size, shuffle=False), images


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch_size", [3, NUM_IMAGES])
def test_features_equal_one_extract_in_loader_order(
    tiny_oamn, device, batch_size, monkeypatch
) -> None:
    # cuDNN's TF32 convolutions (on by default) round to 10 mantissa bits, and the batch size
    # picks the algorithm: loader batches and one batch then differ by ~2e-4 (seen on an H200).
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    model = tiny_oamn.to(device)
    loader, images = make_loader(batch_size)
    result = extract_features(model, loader, device, progress=False)
    expected_features, expected_scores = model.extract(images.to(device))
    assert isinstance(result, FeatureSet)
    assert result.features.device.type == "cpu"
    assert result.features.dtype == torch.float32
    torch.testing.assert_close(result.features, expected_features.cpu(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(result.grader_scores, expected_scores.cpu(), atol=1e-5, rtol=1e-5)
    assert result.pids.tolist() == [4, 4, 9, 1, 9, 0, -1]
    assert result.camids.tolist() == [0, 1, 0, 2, 1, 5, 3]
    assert result.pids.dtype == torch.int64
    assert len(result) == NUM_IMAGES


@pytest.mark.parametrize("strategy", BANK_STRATEGIES)
def test_bank_equals_one_gallery_bank_call(tiny_oamn, strategy) -> None:
    loader, images = make_loader(3)
    fill = torch.tensor([-2.0, -1.5, -1.0])
    bank = extract_gallery_bank(tiny_oamn, loader, strategy, "cpu", fill, progress=False)
    expected = tiny_oamn.gallery_bank(images, strategy, fill)
    assert bank.shape == (9, NUM_IMAGES, tiny_oamn.feature_dim)
    torch.testing.assert_close(bank, expected, atol=1e-5, rtol=1e-5)
    plain = extract_features(tiny_oamn, loader, "cpu", progress=False).features
    torch.testing.assert_close(bank[0], plain, atol=1e-5, rtol=1e-5)


def test_fill_reaches_the_model_on_its_device() -> None:
    class Recorder(torch.nn.Module):
        def gallery_bank(self, images, strategy, image_fill):
            self.seen = (strategy, image_fill)
            return images.mean((2, 3)).expand(9, -1, -1)

    model = Recorder()
    loader, _ = make_loader(4)
    extract_gallery_bank(model, loader, "mask_swap", "cpu", [-1.0, -2.0, -3.0], progress=False)
    strategy, fill = model.seen
    assert strategy == "mask_swap"
    assert fill.tolist() == [-1.0, -2.0, -3.0]
    assert fill.dtype == torch.float32


@pytest.mark.parametrize(
    ("device", "amp"),
    [
        ("cpu", "bf16"),
        pytest.param("cuda", "bf16", marks=DEVICES[1].marks),
        pytest.param("cuda", "fp16", marks=DEVICES[1].marks),
    ],
)
def test_autocast_gives_close_float32_features(tiny_oamn, device, amp) -> None:
    model = tiny_oamn.to(device)
    loader, _ = make_loader(4)
    exact = extract_features(model, loader, device, progress=False)
    mixed = extract_features(model, loader, device, amp=amp, progress=False)
    assert mixed.features.dtype == mixed.grader_scores.dtype == torch.float32
    # Unit-norm features: 0.05 is a few bfloat16 roundings (8 mantissa bits) of each layer.
    torch.testing.assert_close(mixed.features, exact.features, atol=0.05, rtol=0.0)
    assert not torch.equal(mixed.features, exact.features)  # autocast really ran


def test_auto_amp_follows_the_device(tiny_oamn, monkeypatch) -> None:
    loader, _ = make_loader(4)
    exact = extract_features(tiny_oamn, loader, "cpu", progress=False)
    bf16 = extract_features(tiny_oamn, loader, "cpu", amp="bf16", progress=False)
    for native, expected in ((True, bf16), (False, exact)):
        flags = frozenset({"avx512_bf16"} if native else ())
        monkeypatch.setattr(precision, "cpu_bf16_flags", lambda flags=flags: flags)
        auto = extract_features(tiny_oamn, loader, "cpu", amp="auto", progress=False)
        assert torch.equal(auto.features, expected.features)


def test_fp16_refused_off_cuda(tiny_oamn) -> None:
    loader, _ = make_loader(4)
    with pytest.raises(ValueError, match="amp fp16 needs CUDA but the device is cpu; use bf16"):
        extract_features(tiny_oamn, loader, "cpu", amp="fp16")


def test_non_finite_features_under_autocast_are_an_error() -> None:
    class Overflowing(torch.nn.Module):  # finite in float32, not under autocast
        def extract(self, images):
            value = torch.inf if torch.is_autocast_enabled("cpu") else 1.0
            return torch.full((len(images), 2), value), torch.full((len(images), 4), 0.25)

    loader, _ = make_loader(4)
    assert extract_features(Overflowing(), loader, "cpu", progress=False).features.max() == 1
    with pytest.raises(FloatingPointError, match=r"under amp bf16 are not finite.*--amp none"):
        extract_features(Overflowing(), loader, "cpu", amp="bf16", progress=False)


def test_train_mode_restored_and_inference_mode_used(tiny_oamn) -> None:
    seen = {}

    class Probe(torch.nn.Module):
        def extract(self, images):
            seen["training"] = self.training
            seen["inference"] = torch.is_inference_mode_enabled()
            return images.mean((2, 3)), torch.full((len(images), 4), 0.25)

    model = Probe().train()
    loader, _ = make_loader(7)
    extract_features(model, loader, "cpu", progress=False)
    assert seen == {"training": False, "inference": True}
    assert model.training
    tiny_oamn.train()
    try:
        extract_features(tiny_oamn, loader, "cpu", progress=False)  # extract() needs eval
        assert tiny_oamn.training
    finally:
        tiny_oamn.eval()


def test_progress_bar_is_shown_unless_disabled(tiny_oamn, capsys) -> None:
    loader, _ = make_loader(4)
    extract_features(tiny_oamn, loader, "cpu", progress=True)
    assert "features" in capsys.readouterr().err
    extract_features(tiny_oamn, loader, "cpu", progress=False)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda m, loader: extract_features(m, loader, "cpu", amp="fp8"),
            ValueError,
            "amp must be one of",
        ),
        (
            lambda m, loader: extract_features(m, [], "cpu"),
            ValueError,
            "the loader yielded no batch",
        ),
        (
            lambda m, loader: extract_features(m, [torch.zeros(2, 3, 64, 32)], "cpu"),
            TypeError,
            r"must yield \(images, pids, camids, \.\.\.\) batches",
        ),
        (
            lambda m, loader: extract_features(torch.nn.Linear(2, 2), loader, "cpu"),
            TypeError,
            r"model must have OAMN's extract\(\) method",
        ),
        (
            lambda m, loader: extract_gallery_bank(m, loader, "pixel", "cpu", 0.0),
            ValueError,
            r"unknown bank strategies \['pixel'\]",
        ),
        (
            lambda m, loader: extract_gallery_bank(
                torch.nn.Linear(2, 2), loader, "feature", "cpu", 0.0
            ),
            TypeError,
            r"gallery_bank\(\) method",
        ),
    ],
)
def test_errors(tiny_oamn, call, error, match) -> None:
    loader, _ = make_loader(4)
    with pytest.raises(error, match=match):
        call(tiny_oamn, loader)


def test_feature_set_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="one row per image"):
        FeatureSet(torch.zeros(3, 2), torch.zeros(3, 4), torch.zeros(3), torch.zeros(2))
