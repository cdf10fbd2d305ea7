"""Time and peak memory of the RGA attention layers beside the authors' layer.

    python benchmarks/bench_attention.py [--batches 64 320] [--repeats 5] [--no-full]

Features of ResNet-50 layer3 at 256x128 input, (B, 1024, 16, 8) float32 on the CPU. Compared:

* spatial: the authors' ``RGA_Module(1024, 128, use_channel=False)`` (transcribed in
  tests/attention/reference.py), which returns ``sigmoid(W_ys.expand_as(x)) * x``, beside
  ``AttentionMask(RGASpatial(1024, (16, 8)))``, which returns ``(m * f, m)``;
* full (B = 64 only, skip with --no-full): the authors' ``RGA_Module(1024, 128)`` beside
  ``RGA(1024, (16, 8))``, spatial then channel attention.

Both layers of a pair hold the same weights (checked: the outputs must agree). "fwd" runs under
``torch.inference_mode()``; "fwd+bwd" backpropagates a fixed random gradient into the input
(which requires grad, as an encoder's features do) and the parameters. Times are medians of
``--repeats`` calls, the two layers interleaved. Peak memory is measured for one call in a fresh
subprocess per case: the peak resident set size (``VmHWM``, reset through
``/proc/self/clear_refs``) minus the resident size just before the call, so the input, its output
gradient and the weights are excluded. The subprocess runs with ``MALLOC_MMAP_THRESHOLD_=65536``
so that glibc returns every freed tensor to the system at once: the resident size then follows
the live tensors (plus library workspaces), not the allocator's cache.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import einops
import torch
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for the reference layer, which lives with the tests

from oamn.attention import RGA, AttentionMask, RGASpatial  # noqa: E402
from tests.attention.reference import RGAModule  # noqa: E402

CHANNELS, SPATIAL_SIZE = 1024, (16, 8)
LAYERS = ("authors", "oamn")
MODES = ("fwd", "fwd+bwd")


def build(layer: str, variant: str) -> nn.Module:
    """The layer; both layers of a variant get the same weights (seeded, loaded strictly)."""
    full = variant == "full"
    torch.manual_seed(0)
    authors = RGAModule(CHANNELS, SPATIAL_SIZE[0] * SPATIAL_SIZE[1], use_channel=full)
    if layer == "authors":
        return authors
    oamn = RGA(CHANNELS, SPATIAL_SIZE) if full else RGASpatial(CHANNELS, SPATIAL_SIZE)
    oamn.load_state_dict(authors.state_dict(), strict=True)
    return oamn if full else AttentionMask(oamn)


def features(batch: int) -> tuple[Tensor, Tensor]:
    """The input (requiring grad) and the gradient of the output to backpropagate."""
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(batch, CHANNELS, *SPATIAL_SIZE, generator=generator).requires_grad_()
    return x, torch.randn(x.shape, generator=generator)


def attended(module: nn.Module, x: Tensor) -> Tensor:
    """The attended features: the authors' output, or g of AttentionMask's (g, m)."""
    out = module(x)
    return out[0] if isinstance(out, tuple) else out


def call(module: nn.Module, mode: str, x: Tensor, grad: Tensor) -> Callable[[], None]:
    def forward() -> None:
        with torch.inference_mode():
            attended(module, x)

    def forward_backward() -> None:
        x.grad = None
        module.zero_grad(set_to_none=True)
        attended(module, x).backward(grad)

    return forward if mode == "fwd" else forward_backward


def interleaved_medians(calls: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    for fn in calls.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _proc_status_mib(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def measure_peak_mib(layer: str, variant: str, batch: int, mode: str) -> float:
    """Run in a fresh process: peak RSS above the pre-call RSS for one call, in MiB."""
    module = build(layer, variant)
    x, grad = features(batch)
    fn = call(module, mode, x, grad)
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _proc_status_mib("VmRSS")
    fn()
    return _proc_status_mib("VmHWM") - before


def peak_mib_in_subprocess(layer: str, variant: str, batch: int, mode: str) -> float:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    command = [sys.executable, __file__, "--peak-of", layer, variant, str(batch), mode]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def check_same_output(variant: str, batch: int) -> float:
    x, _ = features(min(batch, 8))
    with torch.inference_mode():
        outs = [attended(build(layer, variant), x) for layer in LAYERS]
    return (outs[0] - outs[1]).abs().max().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 320])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-full", action="store_true", help="skip the full RGA at B=64")
    parser.add_argument("--peak-of", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peak_of:
        layer, variant, batch, mode = args.peak_of
        print(measure_peak_mib(layer, variant, int(batch), mode))
        return

    cases = [("spatial", batch) for batch in args.batches]
    if not args.no_full:
        cases.append(("full", 64))
    print(
        f"torch {torch.__version__}, einops {einops.__version__}, Python "
        f"{sys.version.split()[0]}, CPU, {torch.get_num_threads()} threads; features "
        f"(B, {CHANNELS}, {SPATIAL_SIZE[0]}, {SPATIAL_SIZE[1]}) float32; median of "
        f"{args.repeats} interleaved calls; peak = one call, fresh process\n"
    )
    header = (
        f"{'layer':<8} {'B':>4} {'mode':<8} {'authors ms':>11} {'oamn ms':>8} {'speedup':>8} "
        f"{'authors MiB':>12} {'oamn MiB':>9} {'memory':>7}"
    )
    print(header)
    print("-" * len(header))
    for variant, batch in cases:
        difference = check_same_output(variant, batch)
        if difference > 1e-4:
            raise RuntimeError(f"{variant}: outputs differ by {difference:.2e}")
        modules = {layer: build(layer, variant) for layer in LAYERS}
        x, grad = features(batch)
        for mode in MODES:
            calls = {layer: call(module, mode, x, grad) for layer, module in modules.items()}
            seconds = interleaved_medians(calls, args.repeats)
            peaks = {layer: peak_mib_in_subprocess(layer, variant, batch, mode) for layer in LAYERS}
            print(
                f"{variant:<8} {batch:>4} {mode:<8} {seconds['authors'] * 1e3:>11.1f} "
                f"{seconds['oamn'] * 1e3:>8.1f} {seconds['authors'] / seconds['oamn']:>7.2f}x "
                f"{peaks['authors']:>12.1f} {peaks['oamn']:>9.1f} "
                f"{peaks['oamn'] / peaks['authors']:>6.2f}x"
            )


if __name__ == "__main__":
    main()
