"""Mixed precision of the pipeline: the "auto" mode, what runs record, float32 where it matters."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from examples.oamn import precision
from examples.oamn.checkpoint import checkpoint_digest, load_checkpoint
from examples.oamn.config import TrainConfig, resume_differences
from examples.oamn.model import OAMN
from examples.oamn.model.backbones import Float32Conv2d
from examples.oamn.precision import bf16_flags, native_bf16, resolve_amp
from examples.oamn.training import train
from tests.examples.helpers_train import tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")

X86_CPUINFO = """processor\t: 0
flags\t\t: fpu sse avx2 avx512f avx512bw {extra}
bogomips\t: 4800.00
"""


def cpu_with(monkeypatch: pytest.MonkeyPatch, *, native: bool) -> None:
    """Pretend this CPU has (or lacks) native bfloat16 arithmetic."""
    flags = frozenset({"avx512_bf16"} if native else ())
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: flags)


@pytest.mark.parametrize(
    ("extra", "machine", "expected"),
    [
        ("amx_bf16 amx_tile avx512_bf16", "x86_64", {"amx_bf16", "avx512_bf16"}),
        ("avx512_bf16", "x86_64", {"avx512_bf16"}),
        ("avx512_vnni", "x86_64", set()),  # AVX-512 without BF16: oneDNN would emulate it
        ("bf16", "x86_64", set()),  # not an x86 flag
    ],
)
def test_bf16_flags_read_cpuinfo(extra, machine, expected) -> None:
    assert bf16_flags(X86_CPUINFO.format(extra=extra), machine) == expected


def test_bf16_flags_on_arm() -> None:
    assert bf16_flags("Features\t: fp asimd sve bf16 i8mm\n", "aarch64") == {"bf16"}
    assert bf16_flags("Features\t: fp asimd sve\n", "aarch64") == set()


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16"), (False, "none")])
def test_auto_is_bf16_where_native(monkeypatch, native, expected) -> None:
    cpu_with(monkeypatch, native=native)
    assert native_bf16("cpu") is native
    assert resolve_amp("auto", "cpu") == expected
    assert resolve_amp("auto", torch.device("cpu")) == expected


def test_auto_asks_the_cuda_device_itself_for_native_bf16(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    capabilities = {0: (8, 0), 1: (7, 0)}  # an A100 and a V100 (bf16 only emulated)
    asked = []

    def capability(device: torch.device) -> tuple[int, int]:
        asked.append(device.index)
        return capabilities[device.index]

    monkeypatch.setattr(torch.cuda, "get_device_capability", capability)
    assert resolve_amp("auto", "cuda:0") == "bf16"
    assert resolve_amp("auto", "cuda:1") == "none"
    assert asked == [0, 1]
    assert resolve_amp("auto", "meta") == "none"


def test_explicit_modes_are_kept_and_checked(monkeypatch) -> None:
    cpu_with(monkeypatch, native=False)
    assert resolve_amp("bf16", "cpu") == "bf16"  # asked for: emulated, but asked for
    assert resolve_amp("none", "cpu") == resolve_amp(None, "cpu") == "none"
    assert resolve_amp("fp16", "cuda") == "fp16"
    with pytest.raises(ValueError, match="amp fp16 needs CUDA but the device is cpu"):
        resolve_amp("fp16", "cpu")
    with pytest.raises(ValueError, match=r"amp must be one of \('auto', 'none', 'bf16', 'fp16'\)"):
        resolve_amp("fp8", "cpu")
    with pytest.raises(ValueError, match="resolve it with resolve_amp first"):
        precision.check_amp("auto")


def test_auto_is_the_default_of_training_and_its_commands() -> None:
    from examples.oamn import demo, evaluate

    assert TrainConfig().amp == "auto"
    assert evaluate.build_parser().parse_args(["--checkpoint", "x.pt"]).amp == "auto"
    assert demo.build_parser().parse_args([]).amp == "auto"


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16"), (False, "none")])
def test_training_records_the_mode_auto_resolved_to(
    tiny_market, tmp_path, monkeypatch, native, expected
) -> None:
    cpu_with(monkeypatch, native=native)
    config = tiny_config(tiny_market, tmp_path, amp="auto", max_steps_per_epoch=1)
    train(config)
    assert json.loads((tmp_path / "config.json").read_text())["amp"] == expected
    assert load_checkpoint(tmp_path / "checkpoint_last.pt").config.amp == expected


def test_a_resumed_run_keeps_its_checkpoints_mode(tiny_market, tmp_path, monkeypatch) -> None:
    cpu_with(monkeypatch, native=False)
    first = tiny_config(tiny_market, tmp_path, amp="auto", epochs=1, max_steps_per_epoch=1)
    train(first)
    cpu_with(monkeypatch, native=True)  # e.g. resumed on a machine with AMX
    checkpoint = str(tmp_path / "checkpoint_last.pt")
    resumed = tiny_config(
        tiny_market, tmp_path, amp="auto", epochs=2, max_steps_per_epoch=1, resume=checkpoint
    )
    train(resumed)
    assert load_checkpoint(tmp_path / "checkpoint_last.pt").config.amp == "none"
    stored = load_checkpoint(checkpoint).config
    assert resume_differences(stored, resumed) == []
    explicit = tiny_config(tiny_market, tmp_path, amp="bf16", epochs=3, max_steps_per_epoch=1)
    assert resume_differences(stored, explicit) == ["--amp bf16 (checkpoint: --amp none)"]


def test_resuming_an_fp16_run_on_the_cpu_names_the_checkpoint(tiny_market, tmp_path) -> None:
    train(tiny_config(tiny_market, tmp_path, max_steps_per_epoch=1))
    path = tmp_path / "checkpoint_last.pt"
    state = torch.load(path, weights_only=True)
    state["config"] |= {"amp": "fp16", "device": "cuda"}  # as a CUDA run writes it
    state["digest"] = checkpoint_digest(state)
    fp16 = tmp_path / "fp16.pt"
    torch.save(state, fp16)
    resumed = tiny_config(
        tiny_market, tmp_path, amp="auto", epochs=2, max_steps_per_epoch=1, resume=str(fp16)
    )
    with pytest.raises(ValueError, match=r"fp16.pt: the checkpoint trained with --amp fp16"):
        train(resumed)


def test_grader_scores_and_batchnorm_statistics_stay_float32_under_autocast() -> None:
    torch.manual_seed(0)
    model = OAMN(5, backbone="resnet18", split_after="layer2", input_size=(64, 32))
    images = torch.randn(8, 3, 64, 32)
    exact = OAMN(5, backbone="resnet18", split_after="layer2", input_size=(64, 32))
    exact.load_state_dict(model.state_dict())
    exact(images)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(images)
    assert output.f.dtype == torch.bfloat16  # autocast ran
    assert output.grader_scores.dtype == torch.float32
    torch.testing.assert_close(output.grader_scores.sum(1), torch.ones(8))
    for (name, mixed), reference in zip(model.named_buffers(), exact.buffers(), strict=True):
        if mixed.is_floating_point():
            assert mixed.dtype == torch.float32, name
            # One momentum-0.1 update from a batch statistic computed on bfloat16 activations.
            torch.testing.assert_close(mixed, reference, atol=0.02, rtol=0.02, msg=name)


def test_strided_depthwise_convolutions_compute_in_float32_under_autocast() -> None:
    torch.manual_seed(0)
    model = OAMN(5, backbone="mobilenet_v2", input_size=(64, 32), mask_spatial_reduction=2)
    strided = [m for m in model.modules() if isinstance(m, Float32Conv2d)]
    assert len(strided) == 4  # MobileNetV2's stride-2 depthwise 3x3 before layer4's split
    assert all(m.groups == m.in_channels and m.stride == (2, 2) for m in strided)
    reference = nn.Conv2d(96, 96, 3, stride=2, padding=1, groups=96, bias=False)
    convolution = nn.Conv2d(96, 96, 3, stride=2, padding=1, groups=96, bias=False)
    convolution.load_state_dict(reference.state_dict())
    convolution.__class__ = Float32Conv2d
    x = torch.randn(2, 96, 8, 4)
    assert torch.equal(convolution(x), reference(x))  # outside autocast: nn.Conv2d
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert reference(x).dtype == torch.bfloat16
        out = convolution(x.bfloat16())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, reference(x.bfloat16().float()))
    assert list(convolution.state_dict()) == ["weight"]
