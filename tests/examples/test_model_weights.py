"""Backbone weights from a local torchvision state dict or a torchvision weight enum (read from
a temporary torch hub cache; downloads are blocked): values land, bad inputs say why."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
from torchvision.models import MobileNet_V2_Weights, ResNet18_Weights

from examples.oamn.config_cli import config_from_args
from examples.oamn.model import OAMN, build_torchvision_model, load_backbone_weights
from examples.oamn.model_factory import build_model

MOBILENET_WEIGHTS = Path(__file__).resolve().parents[3] / "shared/weights/mobilenet_v2_imagenet.pth"


def encoder_state(model: OAMN) -> dict[str, torch.Tensor]:
    """The encoders' tensors under their torchvision names (MobileNetV2 without "features.")."""
    return {
        name.split(".", 1)[1]: value
        for name, value in model.state_dict().items()
        if name.startswith(("encoder_low.", "encoder_high."))
    }


def saved_resnet18(folder: Path, **changes: torch.Tensor | None) -> tuple[Path, dict]:
    torch.manual_seed(123)
    state = build_torchvision_model("resnet18").state_dict()
    for key, value in changes.items():
        if value is None:
            del state[key]
        else:
            state[key] = value
    path = folder / "resnet18.pth"
    torch.save(state, path)
    return path, state


@pytest.mark.parametrize("last_stride", [1, 2])
def test_resnet_weights_land_in_both_encoders(tmp_path: Path, last_stride: int) -> None:
    path, state = saved_resnet18(tmp_path)
    model = OAMN(5, "resnet18", "layer2", last_stride, input_size=(128, 64), weights=path)
    loaded = encoder_state(model)
    expected = {k: v for k, v in state.items() if not k.startswith("fc.")}
    assert loaded.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(loaded[key], value, atol=0, rtol=0, msg=key)
    # Not a coincidence of the seed: a random model differs.
    assert not torch.equal(
        OAMN(5, "resnet18", input_size=(256, 128)).encoder_low.conv1.weight, state["conv1.weight"]
    )


def test_classifier_of_another_size_is_ignored(tmp_path: Path) -> None:
    path, state = saved_resnet18(tmp_path, **{"fc.weight": torch.zeros(10, 512), "fc.bias": None})
    model = build_torchvision_model("resnet18")
    load_backbone_weights(model, path)
    torch.testing.assert_close(model.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])


def test_files_without_num_batches_tracked_load(tmp_path: Path) -> None:
    # Old torchvision checkpoints predate the BatchNorm counter.
    state = build_torchvision_model("resnet18").state_dict()
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "old.pth")
    model = build_torchvision_model("resnet18")
    load_backbone_weights(model, tmp_path / "old.pth")
    torch.testing.assert_close(model.bn1.weight, state["bn1.weight"])


def test_missing_file_names_it_and_the_alternatives(tmp_path: Path) -> None:
    missing = tmp_path / "resnet50_imagenet.pth"
    with pytest.raises(
        FileNotFoundError, match=r"resnet50_imagenet\.pth.*--weights PATH.*IMAGENET1K_V1"
    ):
        OAMN(5, weights=missing)


def test_other_weight_types_are_refused() -> None:
    with pytest.raises(TypeError, match=r"weights must be a path .* enum member .*got int"):
        OAMN(5, weights=1)


class BlockedDownloads:
    """Stands in for ``torch.hub.download_url_to_file``: records the call, raises offline."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, url: str, destination: str, *args: object, **kwargs: object) -> None:
        self.calls.append((url, destination))
        raise urllib.error.URLError("no network (blocked by the test)")


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, BlockedDownloads]:
    """An empty torch hub cache under ``$TORCH_HOME`` and downloads that fail at once."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert Path(torch.hub.get_dir()) == tmp_path / "torch" / "hub"  # no set_dir() overrides it
    blocked = BlockedDownloads()
    monkeypatch.setattr(torch.hub, "download_url_to_file", blocked)
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    return checkpoints, blocked


@pytest.mark.parametrize(
    "weights",
    [
        ResNet18_Weights.IMAGENET1K_V1,
        "IMAGENET1K_V1",
        "DEFAULT",
        "ResNet18_Weights.IMAGENET1K_V1",
    ],
)
def test_weight_enums_and_names_load_from_the_hub_cache(hub_cache, weights: object) -> None:
    checkpoints, blocked = hub_cache
    # torchvision's file name for ResNet18_Weights.IMAGENET1K_V1 (the end of its URL).
    _, state = saved_resnet18(checkpoints)
    (checkpoints / "resnet18.pth").rename(checkpoints / "resnet18-f37072fd.pth")
    model = OAMN(5, "resnet18", "layer2", input_size=(128, 64), weights=weights)
    loaded = encoder_state(model)
    for key, value in state.items():
        if not key.startswith("fc."):
            torch.testing.assert_close(loaded[key], value, atol=0, rtol=0, msg=key)
    assert blocked.calls == []


def test_weight_names_of_mobilenet_load_from_the_hub_cache(hub_cache) -> None:
    checkpoints, _ = hub_cache
    torch.manual_seed(5)
    state = build_torchvision_model("mobilenet_v2").state_dict()
    torch.save(state, checkpoints / "mobilenet_v2-b0353104.pth")  # IMAGENET1K_V1's file
    model = OAMN(5, "mobilenet_v2", input_size=(256, 128), weights="IMAGENET1K_V1")
    torch.testing.assert_close(
        model.encoder_low[0][0].weight, state["features.0.0.weight"], atol=0, rtol=0
    )


def test_weight_names_on_the_command_line(hub_cache) -> None:
    checkpoints, _ = hub_cache
    _, state = saved_resnet18(checkpoints)
    (checkpoints / "resnet18.pth").rename(checkpoints / "resnet18-f37072fd.pth")
    config = config_from_args(["--backbone", "resnet18", "--weights", "DEFAULT"])
    assert config.weights == "DEFAULT"
    model = build_model(config, num_classes=3)
    torch.testing.assert_close(model.encoder_low.conv1.weight, state["conv1.weight"])


def test_an_existing_file_wins_over_a_weight_name(hub_cache, tmp_path, monkeypatch) -> None:
    _, blocked = hub_cache
    path, state = saved_resnet18(tmp_path)
    path.rename(tmp_path / "IMAGENET1K_V1")
    monkeypatch.chdir(tmp_path)
    model = OAMN(5, "resnet18", input_size=(256, 128), weights="IMAGENET1K_V1")
    torch.testing.assert_close(model.encoder_low.conv1.weight, state["conv1.weight"])
    assert blocked.calls == []


def test_offline_download_says_so_and_how_to_pass_a_file(hub_cache) -> None:
    checkpoints, blocked = hub_cache
    url = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    with pytest.raises(ConnectionError) as raised:
        OAMN(5, "resnet18", input_size=(256, 128), weights="IMAGENET1K_V1")
    message = str(raised.value)
    assert f"the download of ResNet18_Weights.IMAGENET1K_V1 from {url} failed" in message
    assert "no network (blocked by the test)" in message  # the cause
    assert "there is no network" in message
    cached = checkpoints / "resnet18-f37072fd.pth"
    fix = f"Pass --weights PATH (weights=PATH) to a local copy of that file, or put it at {cached}"
    assert fix in message
    # torchvision tried its own download into the hub cache, once.
    assert len(blocked.calls) == 1
    assert blocked.calls[0][0] == url
    assert Path(blocked.calls[0][1]).parent == checkpoints


@pytest.mark.parametrize(
    "weights",
    [MobileNet_V2_Weights.IMAGENET1K_V1, "ResNet50_Weights.IMAGENET1K_V2"],
)
def test_another_architectures_weights_are_refused(hub_cache, weights: object) -> None:
    _, blocked = hub_cache
    with pytest.raises(
        ValueError,
        match=r"weights=(MobileNet_V2|ResNet50)_Weights\.IMAGENET1K_V\d are for another "
        r"architecture than backbone='resnet18'; use a member of "
        r"torchvision\.models\.ResNet18_Weights or its name: IMAGENET1K_V1 or DEFAULT",
    ):
        OAMN(5, "resnet18", input_size=(256, 128), weights=weights)
    assert blocked.calls == []


@pytest.mark.parametrize("weights", ["IMAGENET1K_V3", "imagenet1k_v1", "resnet18.pth", "a/b.pth"])
def test_unknown_names_list_the_valid_ones(hub_cache, weights: str) -> None:
    _, blocked = hub_cache
    with pytest.raises(FileNotFoundError) as raised:
        OAMN(5, "resnet18", input_size=(256, 128), weights=weights)
    assert str(raised.value) == (
        f"weights={weights!r} is neither an existing file (no such path was found) nor a "
        "weight name of backbone='resnet18'; use a member of torchvision.models.ResNet18_Weights "
        "or its name: IMAGENET1K_V1 or DEFAULT (= IMAGENET1K_V1), also written "
        "ResNet18_Weights.<name>, or a path to a local torchvision state dict (--weights PATH)"
    )
    assert blocked.calls == []


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"layer1.0.conv1.weight": None}, r"1 missing key\(s\): layer1\.0\.conv1\.weight"),
        ({"head.weight": torch.ones(2)}, r"1 unexpected key\(s\): head\.weight"),
        (
            {"conv1.weight": torch.ones(64, 3, 3, 3)},
            r"another shape.*conv1\.weight \(64, 3, 3, 3\)",
        ),
    ],
)
def test_mismatched_keys_are_listed(tmp_path: Path, changes: dict, match: str) -> None:
    path, _ = saved_resnet18(tmp_path, **changes)
    with pytest.raises(ValueError, match=match):
        load_backbone_weights(build_torchvision_model("resnet18"), path)


def test_wrong_architecture_lists_a_few_keys(tmp_path: Path) -> None:
    path, _ = saved_resnet18(tmp_path)
    with pytest.raises(ValueError, match=r"missing key\(s\): .* and \d+ more.*same torchvision"):
        load_backbone_weights(build_torchvision_model("mobilenet_v2"), path)


def test_not_a_state_dict(tmp_path: Path) -> None:
    torch.save([torch.ones(1)], tmp_path / "list.pth")
    with pytest.raises(ValueError, match=r"does not hold a state dict"):
        load_backbone_weights(build_torchvision_model("resnet18"), tmp_path / "list.pth")


def test_shared_mobilenet_weights_load() -> None:
    if not MOBILENET_WEIGHTS.is_file():
        pytest.skip(f"{MOBILENET_WEIGHTS} is absent (the shared weights folder is missing)")
    state = torch.load(MOBILENET_WEIGHTS, weights_only=True)
    model = OAMN(5, "mobilenet_v2", input_size=(256, 128), weights=MOBILENET_WEIGHTS)
    loaded = encoder_state(model)
    assert {f"features.{k}" for k in loaded} == state.keys()
    for key, value in loaded.items():
        torch.testing.assert_close(value, state[f"features.{key}"], atol=0, rtol=0, msg=key)
