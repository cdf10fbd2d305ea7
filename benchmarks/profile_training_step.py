"""Where one OAMN training step spends its time, part by part, on the pipeline's own objects.

    python benchmarks/profile_training_step.py --setting demo [--amp none] [--steps 8]
    python benchmarks/profile_training_step.py --setting study \
        --data-root ../shared/data/occluded_duke_dev --dataset occluded_duke \
        --weights ../shared/weights/mobilenet_v2_imagenet.pth

``defaults`` is ``TrainConfig``'s defaults (ResNet-50 at 256x128, 32 ids x 2 images) on the
synthetic benchmark, with the loader in the main process; ``demo`` is the README demo's OAMN
model (``examples.oamn.comparison.DEMO_SETTINGS``: ResNet-18
from scratch, 128x64, 16 ids x 4 images) on the synthetic benchmark (generated into
``--data-cache`` when absent); ``study`` is the real-data study's (docs/RESULTS.md: MobileNetV2
from ImageNet weights, 128x64, 32 ids x 2 images). Each builds the run with
:class:`examples.oamn.training.Trainer`, so data, model, augmentation and objective are the
pipeline's; other ``TrainConfig`` fields can be set with ``--set name=value`` (JSON values).

Each counted step is taken apart: the next batch from the loader (reading, decoding and the
per-image transforms), the occlusion augmentation, the forward pass of E^I, of the RGA-S mask,
of E^II and of the head and grader (timed by forward hooks), the objective, the backward pass
and the optimiser step. Then the same number of whole steps is timed through
:func:`examples.oamn.step.training_step` (which also checks that every value is finite), and a
bare backbone step as the yardstick: torchvision's network of the same name, with its own
classifier, forward and backward on the ``5 B`` views (holistic images only for a run without
occlusion) and one SGD step. Everything runs on the CPU, synchronously, so the parts' wall
times add up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torchvision
from torch import nn

from examples.oamn.comparison import DEMO_SETTINGS, synthetic_benchmark
from examples.oamn.config import TrainConfig
from examples.oamn.distributed import init_distributed
from examples.oamn.precision import autocast
from examples.oamn.step import training_step
from examples.oamn.training import Trainer

#: The real-data study's model and batches (docs/RESULTS.md), on top of TrainConfig's defaults.
STUDY_SETTINGS = {
    "backbone": "mobilenet_v2",
    "split_after": "layer3",
    "height": 128,
    "width": 64,
    "ids_per_batch": 32,
    "instances_per_id": 2,
    "mask_spatial_reduction": 2,
    "mask_down_ratio": 2,
    "channels_last": True,
    "workers": 1,
}
PARTS = (
    "loading",
    "augmentation",
    "E^I",
    "RGA-S mask",
    "E^II",
    "head and grader",
    "objective",
    "backward",
    "optimiser",
)


def build_trainer(args: argparse.Namespace, output_dir: str) -> Trainer:
    if args.setting in ("demo", "defaults"):
        data_root = args.data_root or synthetic_benchmark(args.data_cache)
        settings = dict(DEMO_SETTINGS) if args.setting == "demo" else {"workers": 0}
    else:
        if args.data_root is None:
            raise SystemExit("--setting study needs --data-root (and --dataset, --weights)")
        data_root, settings = args.data_root, dict(STUDY_SETTINGS, weights=args.weights)
    settings |= {"dataset": args.dataset} if args.dataset else {}
    settings |= {name: json.loads(value) for name, value in map(_split_setting, args.set)}
    if args.amp is not None:
        settings["amp"] = args.amp
    config = TrainConfig(
        **settings,
        data_root=str(data_root),
        output_dir=output_dir,
        device="cpu",
        progress=False,
        verify_images=False,
    )
    return Trainer(config, init_distributed(config.device))


def _split_setting(text: str) -> tuple[str, str]:
    name, _, value = text.partition("=")
    return name, value


class PartTimer:
    """Wall seconds of named parts, one list entry per counted step."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = defaultdict(list)
        self.counting = False

    def add(self, name: str, seconds: float) -> None:
        if self.counting:
            self.seconds[name].append(seconds)

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.add(name, time.perf_counter() - started)

    def hook(self, module: nn.Module, name: str) -> None:
        """Time ``module``'s forward calls as ``name`` (forward hooks)."""
        started: list[float] = []
        module.register_forward_pre_hook(lambda *_: started.append(time.perf_counter()))
        module.register_forward_hook(lambda *_: self.add(name, time.perf_counter() - started.pop()))


def profile_parts(trainer: Trainer, batches: Iterator, steps: int, warmup: int) -> PartTimer:
    """Take ``warmup + steps`` training steps apart; the counted ones' times by part."""
    model, timer = trainer.model, PartTimer()
    timer.hook(model.encoder_low, "E^I")
    if model.mask is not None:
        timer.hook(model.mask, "RGA-S mask")
    timer.hook(model.encoder_high, "E^II")
    device, amp = trainer.device, trainer.config.amp
    for step in range(warmup + steps):
        timer.counting = step >= warmup
        with timer.part("loading"):
            images, pids, *_ = next(batches)
        views = None
        if trainer.augmentation is not None:
            with timer.part("augmentation"):
                views = trainer.augmentation(images, torch.Generator().manual_seed(step))
        inputs = images if views is None else views.images
        if trainer.config.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        started = time.perf_counter()
        with autocast(device, amp):
            output = model(inputs)
        encoders = sum(_last(timer, part) for part in ("E^I", "RGA-S mask", "E^II"))
        timer.add("head and grader", time.perf_counter() - started - encoders)
        with timer.part("objective"):
            result = trainer.objective(output, pids, views)
        trainer.optimizer.zero_grad(set_to_none=True)
        with timer.part("backward"):
            result.loss.backward()
        with timer.part("optimiser"):
            trainer.optimizer.step()
    return timer


def _last(timer: PartTimer, name: str) -> float:
    return timer.seconds[name][-1] if timer.counting and timer.seconds[name] else 0.0


def whole_steps(trainer: Trainer, batches: Iterator, steps: int, warmup: int) -> list[float]:
    """Seconds of whole :func:`training_step` calls, loading included."""
    times = []
    for step in range(warmup + steps):
        started = time.perf_counter()
        images, pids, *_ = next(batches)
        training_step(
            trainer.model,
            trainer.objective,
            trainer.optimizer,
            images,
            pids,
            augmentation=trainer.augmentation,
            generator=torch.Generator().manual_seed(step),
            amp=trainer.config.amp,
            channels_last=trainer.config.channels_last,
        )
        if step >= warmup:
            times.append(time.perf_counter() - started)
    return times


def bare_backbone_steps(trainer: Trainer, steps: int, warmup: int) -> list[float]:
    """Seconds of a torchvision backbone's step on as many images as the OAMN step's views."""
    config = trainer.config
    views = 5 if trainer.augmentation is not None else 1
    batch = views * config.ids_per_batch * config.instances_per_id
    network = getattr(torchvision.models, config.backbone)(num_classes=trainer.num_classes)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    network = network.to(memory_format=memory_format).train()
    optimizer = torch.optim.SGD(network.parameters(), lr=0.01, momentum=0.9)
    images = torch.randn(batch, 3, config.height, config.width).contiguous(
        memory_format=memory_format
    )
    labels = torch.randint(trainer.num_classes, (batch,))
    times = []
    for step in range(warmup + steps):
        started = time.perf_counter()
        with autocast(trainer.device, config.amp):
            logits = network(images)
        loss = nn.functional.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= warmup:
            times.append(time.perf_counter() - started)
    return times


def report(timer: PartTimer, whole: list[float], bare: list[float], config: TrainConfig) -> str:
    medians = {
        part: statistics.median(timer.seconds[part]) for part in PARTS if timer.seconds[part]
    }
    total = sum(medians.values())
    step = statistics.median(whole)
    batch = config.ids_per_batch * config.instances_per_id
    views = 5 if config.occlusion else 1
    lines = [
        f"{config.backbone} split after {config.split_after}, {config.height}x{config.width}, "
        f"{batch} images x {views} views, amp {config.amp}, channels_last "
        f"{config.channels_last}, {torch.get_num_threads()} threads, {len(whole)} steps",
        "",
        "| part | ms (median) | share |",
        "|---|---|---|",
        *(f"| {part} | {1000 * s:.0f} | {100 * s / total:.0f} % |" for part, s in medians.items()),
        f"| sum of the parts | {1000 * total:.0f} | 100 % |",
        "",
        f"whole step (training_step, loading included): median {1000 * step:.0f} ms "
        f"(range {1000 * min(whole):.0f}-{1000 * max(whole):.0f}), "
        f"{batch * views / step:.0f} views/s",
        f"bare {config.backbone} step on {batch * views} images: median "
        f"{1000 * statistics.median(bare):.0f} ms; the OAMN step costs "
        f"{step / statistics.median(bare):.2f}x the bare backbone's",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=("demo", "study", "defaults"), default="demo")
    parser.add_argument("--data-root", help="the dataset (demo: the synthetic benchmark)")
    parser.add_argument("--dataset", help="its layout (demo: market1501)")
    parser.add_argument("--data-cache", default="runs/synthetic", help="demo benchmark cache")
    parser.add_argument("--weights", help="ImageNet weights of the study's backbone")
    parser.add_argument("--amp", help="none, bf16 or auto (default: the pipeline's)")
    parser.add_argument("--set", action="append", default=[], help="TrainConfig field=JSON")
    parser.add_argument("--steps", type=int, default=8, help="counted steps of each kind")
    parser.add_argument("--warmup", type=int, default=2, help="uncounted steps first")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as output_dir:
        trainer = build_trainer(args, output_dir)
        trainer.model.train()
        batches = _endless(trainer)
        timer = profile_parts(trainer, batches, args.steps, args.warmup)
        whole = whole_steps(trainer, batches, args.steps, args.warmup)
        bare = bare_backbone_steps(trainer, args.steps, args.warmup)
    print(report(timer, whole, bare, trainer.config))


def _endless(trainer: Trainer) -> Iterator:
    epoch = 0
    while True:
        trainer.loader.batch_sampler.set_epoch(epoch)
        yield from trainer.loader
        epoch += 1


if __name__ == "__main__":
    main()
