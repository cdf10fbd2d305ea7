r"""The main demo: a baseline and OAMN trained alike, compared on occluded queries, one command.

    python -m examples.oamn.demo [--output-dir runs/demo] [--epochs N] [--backbone resnet18]
        [--weights resnet18.pth] [--data-root DIR --dataset NAME] [--quick]

With no data and no GPU it generates the synthetic occluded-pedestrian benchmark
(:func:`examples.oamn.synthetic.generate_synthetic_reid`, cached under ``--data-cache``),
then trains two models with :func:`examples.oamn.training.train_or_resume`, both from the same
:class:`~examples.oamn.config.TrainConfig` (same backbone, input size, batches, schedule and
seed), differing only in the method's switches (the first row of the paper's Table 6):

* **baseline**: no occlusion augmentation, no mask module, plain batch-hard triplet, identity
  loss;
* **OAMN**: every component (occlusion augmentation, attention mask with ``L_mask``, grouped
  triplet, occlusion grader), with the pipeline's defaults (the occlusion-awareness remedies of
  docs/AWARENESS.md).

Each model is evaluated on the occluded queries (OAMN also with occlusion unification: the
band-removing bank by default, one-sided and two-sided, under the grader's types, the located
types and the benchmark's true types; ``--strategies band,mask_swap,feature`` adds the others)
and, as a reference, on the same query shots without the occluder (``query_holistic/``,
synthetic benchmark only). Printed as a table; written to ``OUTPUT_DIR/results.json`` (with the
configurations, OAMN's occlusion awareness, the time of each stage and the command) and drawn in
``OUTPUT_DIR/demo.png``: a few occluded queries with OAMN's attention mask beside the baseline's
feature activation, the top-5 of each model (OAMN's two-sided unified), and R1/mAP bars of every
row; ``OUTPUT_DIR/awareness.png`` draws the mask and grader measurements.

The defaults (ResNet-18 from scratch at 128x64, split after ``layer3``, see
:data:`~examples.oamn.comparison.DEMO_SETTINGS`) took 5.3 minutes on the project's 2-core CPU
with AVX-512 BF16, which trains and evaluates in bfloat16 (``--amp auto``; docs/SPEED.md); a
CPU without bfloat16 instructions runs float32, whose training step took 1.6 times as long there.
``--weights`` starts the backbone from ImageNet weights instead (a local state dict, or a
torchvision weight name such as ``IMAGENET1K_V1``, which needs the torch hub cache or a
network). ``--quick`` is a smoke run: a tiny synthetic set and two steps per model (seconds).
A model whose ``checkpoint_last.pt`` in ``OUTPUT_DIR`` finished training under the same
settings is reused, not retrained (:func:`~examples.oamn.comparison.trained_checkpoint`), so
running the command again only re-evaluates and redraws. The output folder is locked while the
demo runs (:mod:`examples.oamn.locking`): a second demo writing it is refused at once. Ctrl-C
stops it with one line; running the command again resumes an interrupted training.

This module parses the options and delegates: the comparison itself (configurations, training,
evaluation, figures, ``results.json``) is :func:`examples.oamn.comparison.run_demo`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .command_errors import locked_command
from .comparison import (
    DEFAULT_STRATEGIES,
    DEMO_FILES,
    DEMO_SETTINGS,
    demo_configs,
    run_demo,
    synthetic_benchmark,
)
from .data import DATASETS, load_dataset
from .distributed import resolve_device
from .evaluation_settings import parse_strategies
from .model import BACKBONES
from .precision import AMP_MODES
from .run_files import remove_leftovers

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.oamn.demo",
        description="Train a baseline and OAMN alike and compare them on occluded queries "
        "(default: the synthetic benchmark, generated on the fly). Measured: 5.3 minutes on a "
        "2-core CPU with AVX-512 BF16 (bfloat16), whose float32 training step takes 1.6 times as "
        "long.",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=Path("runs/demo"),
        help="run folder (default: %(default)s)",
    )
    parser.add_argument(
        "--data-cache",
        type=Path,
        default=None,
        help="folder of the generated synthetic benchmark (default: OUTPUT_DIR/data)",
    )
    parser.add_argument(
        "--data-root", type=Path, help="a real dataset's folder instead of the synthetic benchmark"
    )
    parser.add_argument(
        "--dataset",
        default="market1501",
        choices=tuple(DATASETS),
        help="layout of --data-root (default: %(default)s)",
    )
    parser.add_argument(
        "--weights",
        help="ImageNet weights of the backbone: a local state dict, or a torchvision weight "
        "name such as IMAGENET1K_V1 (cached or downloaded)",
    )
    parser.add_argument(
        "--backbone",
        default=DEMO_SETTINGS["backbone"],
        choices=BACKBONES,
        help="torchvision backbone of both models (default: %(default)s)",
    )
    parser.add_argument(
        "--epochs", type=int, help=f"training epochs (default: {DEMO_SETTINGS['epochs']})"
    )
    parser.add_argument(
        "--strategies",
        type=parse_strategies,
        default=DEFAULT_STRATEGIES,
        help="gallery-bank strategies of OAMN's unified rows, comma-separated, or 'none' "
        f"(default: {','.join(DEFAULT_STRATEGIES)}; mask_swap, the authors' bank, costs 9 "
        "forward passes per gallery image)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of everything (default: 0)")
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N"
    )
    parser.add_argument(
        "--amp",
        choices=AMP_MODES,
        default="auto",
        help="mixed precision of training and evaluation: auto (bf16 where the device has "
        "bfloat16 arithmetic, float32 elsewhere; the default), none (float32), bf16, fp16 (CUDA)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: tiny synthetic set, 2 steps per model"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the demo (see the module docstring); returns what ``results.json`` holds."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    with locked_command(parser.prog, args.output_dir):
        return _run(parser, args, argv)


def _run(
    parser: argparse.ArgumentParser, args: argparse.Namespace, argv: Sequence[str] | None
) -> dict[str, Any]:
    """The demo of the parsed ``args``, with its folder locked."""
    remove_leftovers(args.output_dir, DEMO_FILES)
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    if args.data_root is not None:
        if not args.data_root.is_dir():
            parser.error(f"--data-root {args.data_root}: no such folder")
        data_root, dataset_name = args.data_root, args.dataset
    else:
        cache = args.data_cache or args.output_dir / "data"
        data_root = synthetic_benchmark(cache, seed=args.seed, quick=args.quick)
        dataset_name = "market1501"
        seconds["data"] = time.perf_counter() - started
    try:
        dataset = load_dataset(dataset_name, data_root)
    except (FileNotFoundError, ValueError) as error:
        parser.error(f"cannot load {dataset_name} from {data_root}: {error}")
    overrides: dict[str, Any] = {
        "dataset": dataset_name,
        "backbone": args.backbone,
        "weights": args.weights,
        "seed": args.seed,
        "device": args.device,
        "amp": args.amp,
        "progress": not args.no_progress,
    }
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    try:
        configs = demo_configs(data_root, args.output_dir, quick=args.quick, **overrides)
    except ValueError as error:
        parser.error(str(error))
    command = sys.argv[1:] if argv is None else list(argv)
    result = run_demo(
        configs,
        dataset,
        args.output_dir,
        device=resolve_device(args.device),
        strategies=args.strategies,
        command=shlex.join(["python", "-m", "examples.oamn.demo", *command]),
        seconds=seconds,
        started=started,
    )
    print(
        f"{dataset_name} ({data_root}): {len(dataset.query)} queries, "
        f"{len(dataset.gallery)} gallery images"
    )
    print(result["table"])
    print(f"figures: {', '.join(result['figures'])}; total {result['seconds']['total']:.0f} s")
    return result


if __name__ == "__main__":
    main()
