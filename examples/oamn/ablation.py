r"""The paper's Table 6 ablation with one command and one budget.

    python -m examples.oamn.ablation --dataset occluded_duke --data-root DIR \
        --backbone mobilenet_v2 --weights FILE --height 128 --width 64 --epochs E \
        --output-dir runs/ablation [--threads N] [--eval-batch-size 128] [any training option]

Four models are trained with :func:`examples.oamn.training.train`, each in its own folder of
``--output-dir``, with the same options (the ones given here) and its switches:

* ``baseline``: no occlusion augmentation, no mask module, plain batch-hard triplet, no
  ``L_mask``, no grader loss;
* ``oa``: + occlusion augmentation (and the grader loss ``L_score`` it makes possible);
* ``grouped``: + the grouped triplet ``L_tri-g`` and the mask module, without ``L_mask`` (the
  unification needs the mask: without one every bank row is the plain feature);
* ``full``: + ``L_mask``: every loss.

The six rows of Table 6 evaluate them on the test split (:func:`examples.oamn.evaluation.
evaluate_model`): baseline, +OA, +grouped triplet and +L_mask without unification; +OU is the
``grouped`` model with occlusion unification (mask-swap bank), "all" the ``full`` model with it.
The ``full`` model is also evaluated with the feature-level bank (accuracy and bank build time).

Writes ``results.json`` (every row, the training times, each training's exact command, the
evaluation reports) and ``results.md`` (the tables) in ``--output-dir``, after each model, so a
crash leaves the finished rows. A run whose ``checkpoint_last.pt`` has all its epochs is not
trained again, one with fewer is resumed, and a model whose ``evaluation.json`` exists is not
evaluated again: re-running the command continues where it stopped. Models train in the order
baseline, full, oa, grouped, so the comparison that matters most comes first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .checkpoint import load_checkpoint, load_model
from .command_errors import locked_command
from .config import TrainConfig
from .config_cli import config_from_args
from .data import load_dataset
from .distributed import resolve_device
from .evaluation import evaluate_model
from .evaluation_settings import EvaluationSettings
from .reporting import TABLE_COLUMNS
from .run_files import remove_leftovers, write_atomic, write_json
from .training import train

__all__ = ["RUNS", "TABLE_ROWS", "format_markdown", "main"]

#: Each trained model's switches, appended after the shared options (so they win), in
#: training order.
RUNS: dict[str, tuple[str, ...]] = {
    "baseline": (
        "--no-occlusion",
        "--no-mask-module",
        "--no-loss-mask",
        "--no-loss-score",
        "--no-grouped-triplet",
    ),
    "full": (),
    "oa": ("--no-mask-module", "--no-loss-mask", "--no-grouped-triplet"),
    # The mask module stays (untrained by L_mask): both gallery banks act through the mask, so
    # without it the +OU row would equal the plain one by construction.
    "grouped": ("--no-loss-mask",),
}

#: Table 6's rows: (label, trained model, row of its evaluation report).
TABLE_ROWS: tuple[tuple[str, str, str], ...] = (
    ("baseline", "baseline", "plain"),
    ("+OA", "oa", "plain"),
    ("+grouped triplet", "grouped", "plain"),
    ("+L_mask", "full", "plain"),
    ("+OU (grouped, no L_mask)", "grouped", "unified_mask_swap"),
    ("all (L_mask + OU)", "full", "unified_mask_swap"),
)

#: Bank strategies each model is evaluated with (none: no unification row).
_STRATEGIES: dict[str, tuple[str, ...]] = {
    "baseline": (),
    "oa": (),
    "grouped": ("mask_swap",),
    "full": ("mask_swap", "feature"),
}
#: The metric columns of the tables: the evaluation's, without R10.
_METRICS = tuple(column for column in TABLE_COLUMNS if column != "R10")


def build_parser() -> argparse.ArgumentParser:
    """The ablation's own options; every other option goes to the training runs."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.oamn.ablation",
        description="Train and evaluate the Table 6 ablation (baseline, +OA, +grouped triplet, "
        "+L_mask, +OU, all). Options not listed here are training options "
        "(python -m examples.oamn.train --help) shared by every run.",
    )
    parser.add_argument(
        "--output-dir", type=Path, default=Path("runs/ablation"), help="folder of the runs"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's)"
    )
    parser.add_argument(
        "--eval-batch-size", type=int, default=128, help="images per evaluation forward pass"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Train the missing models, evaluate them, write ``results.json`` / ``results.md``."""
    parser = build_parser()
    args, train_options = parser.parse_known_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    shared = config_from_args(train_options)  # fails early on a bad training option
    with locked_command(parser.prog, args.output_dir):
        return _ablation(args.output_dir, shared, train_options, argv, args.eval_batch_size)


def _ablation(
    out: Path,
    shared: TrainConfig,
    train_options: list[str],
    argv: Sequence[str] | None,
    eval_batch_size: int,
) -> dict[str, Any]:
    """Train, evaluate and write every model of :data:`RUNS` (the folder ``out`` locked)."""
    remove_leftovers(out, _RESULT_FILES)
    results: dict[str, Any] = {
        "setup": _setup(shared, train_options, argv),
        "runs": {},
    }
    dataset = load_dataset(shared.dataset, shared.data_root)
    results["setup"]["dataset_sizes"] = {
        "train_images": len(dataset.train),
        "train_ids": len({item.pid for item in dataset.train}),
        "query_images": len(dataset.query),
        "query_ids": len({item.pid for item in dataset.query}),
        "gallery_images": len(dataset.gallery),
        "gallery_ids": len({item.pid for item in dataset.gallery}),
    }
    for name, switches in RUNS.items():
        run_dir = out / name
        run_argv = [*train_options, *switches, "--output-dir", str(run_dir)]
        _train(run_argv, run_dir, shared.epochs)
        history = json.loads((run_dir / "log.json").read_text())
        evaluation = _evaluate(run_dir, dataset, eval_batch_size)
        results["runs"][name] = {
            "command": shlex.join(["python", "-m", "examples.oamn.train", *run_argv]),
            "train_seconds": round(sum(record["seconds"] for record in history), 1),
            "history": history,
            "evaluation": evaluation,
        }
        _write(results, out)
    return results


def _train(run_argv: list[str], run_dir: Path, epochs: int) -> None:
    """Train, resume, or skip (all ``epochs`` done) the run of ``run_dir``."""
    checkpoint = run_dir / "checkpoint_last.pt"
    if checkpoint.is_file():
        if load_checkpoint(checkpoint, verify=False).epoch >= epochs:
            print(f"{run_dir}: trained already, skipped", flush=True)
            return
        run_argv = [*run_argv, "--resume", str(checkpoint)]
    print(f"training {run_dir}: {shlex.join(run_argv)}", flush=True)
    train(config_from_args(run_argv))


def _evaluate(run_dir: Path, dataset, batch_size: int) -> dict[str, Any]:
    """The run's evaluation report (cached in ``evaluation.json``)."""
    cached = run_dir / "evaluation.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    checkpoint = run_dir / "checkpoint_last.pt"
    model, config = load_model(checkpoint)
    device = resolve_device(config.device)
    model.to(device)
    strategies = _STRATEGIES[run_dir.name]
    started = time.perf_counter()
    # Table 6's rows only (no awareness), from float32 forward passes.
    settings = EvaluationSettings(
        strategies=strategies,
        awareness=False,
        batch_size=batch_size,
        workers=config.workers,
        amp="none",
        progress=config.progress,
    )
    report = evaluate_model(
        model,
        dataset.query,
        dataset.gallery,
        height=config.height,
        width=config.width,
        device=device,
        settings=settings,
    )
    report["evaluation_seconds"] = round(time.perf_counter() - started, 1)
    for row in report["rows"].values():
        row.pop("cmc")  # the 50 ranks are not needed for the table; keep results.json short
    remove_leftovers(run_dir, [cached.name])
    write_json(cached, report)
    return report


def _setup(shared: TrainConfig, train_options: list[str], argv: Sequence[str] | None) -> dict:
    command = sys.argv[1:] if argv is None else list(argv)
    return {
        "command": shlex.join(["python", "-m", "examples.oamn.ablation", *command]),
        "shared_training_options": train_options,
        "config": shared.to_dict(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cuda": torch.cuda.is_available(),
    }


#: What :func:`_write` writes into the output folder.
_RESULT_FILES = ("results.json", "results.md")


def _write(results: dict[str, Any], out: Path) -> None:
    write_json(out / "results.json", results)
    write_atomic(out / "results.md", format_markdown(results) + "\n")


def format_markdown(results: dict[str, Any]) -> str:
    """Table 6 and the bank comparison as markdown (metrics in %); missing rows "not run".

    Example:
        >>> metrics = {"R1": 0.5, "R5": 0.75, "mAP": 0.4, "mINP": 0.1, "bank_seconds": None}
        >>> run = {"train_seconds": 60.0, "evaluation": {"rows": {"plain": metrics}}}
        >>> print(format_markdown({"runs": {"baseline": run}}).splitlines()[2])
        | baseline | 50.0 | 75.0 | 40.0 | 10.0 | 1.0 | baseline |
    """
    lines = [
        "| row | R1 | R5 | mAP | mINP | training (min) | model |",
        "|---|---|---|---|---|---|---|",
    ]
    runs = results["runs"]
    for label, run, key in TABLE_ROWS:
        if run not in runs:
            lines.append(f"| {label} | not run | | | | | {run} |")
            continue
        row = runs[run]["evaluation"]["rows"][key]
        values = " | ".join(f"{100 * row[m]:.1f}" for m in _METRICS)
        lines.append(f"| {label} | {values} | {runs[run]['train_seconds'] / 60:.1f} | {run} |")
    if "full" in runs:
        lines += [
            "",
            "| full model | R1 | R5 | mAP | mINP | bank build (s) |",
            "|---|---|---|---|---|---|",
        ]
        for key, row in runs["full"]["evaluation"]["rows"].items():
            values = " | ".join(f"{100 * row[m]:.1f}" for m in _METRICS)
            seconds = "-" if row["bank_seconds"] is None else f"{row['bank_seconds']:.1f}"
            lines.append(f"| {row.get('name', key)} | {values} | {seconds} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
