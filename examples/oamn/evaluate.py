r"""Evaluate a trained OAMN checkpoint, with and without occlusion unification.

    python -m examples.oamn.evaluate --checkpoint runs/market/checkpoint_best.pt \
        [--dataset market1501 --data-root DIR] [--output metrics.json] [--figures DIR] \
        [--strategies mask_swap,feature,band] [--no-two-sided] [--no-awareness] \
        [--rerank [20,6,0.3]] [--batch-size 128] [--workers 4] [--device cuda]

The dataset, its root and the input size default to those of the checkpoint's training config.
Prints R1/R5/R10/mAP/mINP (in %) for the rows of :func:`examples.oamn.evaluation.
evaluation_report`: no unification, then per bank strategy (the authors' "mask swap", the
feature-level swap, the band removal) the unified rows, one-sided and two-sided, and on the
synthetic benchmark also under the queries' true types; with the time each bank took to build
and the queries' predicted occlusion types. ``--rerank`` adds k-reciprocal re-ranked rows
(:func:`oamn.reid_eval.rerank`, within each query's type for the unified rows). Then the
occlusion awareness (:mod:`examples.oamn.awareness`): the mask's band / visible ratio and the
grader's accuracy. Writes the same as JSON (fractions in [0, 1]) with the command, the config,
the dataset sizes and the library versions. ``--figures`` then adds PNGs of ranked lists,
attention maps and the awareness (matplotlib needed then only), and their paths to the JSON.
The JSON file and the figures folder are locked while the command runs
(:mod:`examples.oamn.locking`): a second command writing either is refused at once.

The options after ``--device`` are generated from the fields of
:class:`~examples.oamn.evaluation_settings.EvaluationSettings`, which the evaluation takes
whole; ``--workers`` defaults to the training config's, and the checkpoint's
``grader_none_weight`` reweights a 9-way grader's "none"
(:meth:`~examples.oamn.evaluation_settings.EvaluationSettings.for_checkpoint`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import glob
import importlib.util
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from .checkpoint import load_model
from .command_errors import exit_on_errors
from .data import DATASETS, load_dataset
from .dataclass_cli import add_field_options, field_values
from .distributed import resolve_device
from .evaluation import evaluation_report, write_evaluation, write_evaluation_figures
from .evaluation_settings import EvaluationSettings
from .locking import lock_file, lock_folder
from .precision import resolve_amp
from .reporting import format_report
from .run_files import remove_leftovers

__all__ = ["build_parser", "main"]

#: The files this command writes into ``--figures``.
FIGURE_PATTERN = "*.png"


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (see the module docstring): what to evaluate and where to
    write, then one option per command-line field of
    :class:`~examples.oamn.evaluation_settings.EvaluationSettings` (its default)."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.oamn.evaluate",
        description="Evaluate an OAMN checkpoint with and without occlusion unification.",
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        required=True,
        help="a checkpoint written by examples.oamn.train (checkpoint_best.pt)",
    )
    parser.add_argument(
        "--dataset",
        help=f"test dataset, one of {', '.join(DATASETS)} "
        "(default: the checkpoint's training dataset)",
    )
    parser.add_argument(
        "--data-root", type=Path, help="the dataset's folder (default: the checkpoint's data_root)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="metrics JSON (default: metrics_<dataset>.json beside the checkpoint)",
    )
    parser.add_argument(
        "--figures",
        type=Path,
        help="folder for PNGs of ranked lists and attention maps (default: none)",
    )
    parser.add_argument(
        "--device", default="auto", help="auto (cuda when available, default), cpu, cuda or cuda:N"
    )
    add_field_options(parser, EvaluationSettings, with_defaults=True)
    return parser


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the evaluation (see the module docstring); returns the JSON written.

    A file that cannot be read or written (an image, the output folder, a full disk), or
    outputs that another command is writing, end the command with one line naming the file and
    the cause; Ctrl-C ends it with one line and exit status 130. The metrics are written before
    any figure, so a figure that fails loses no metric.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    with exit_on_errors(parser.prog, (OSError,), lambda: _KEPT):
        return _evaluate(parser, args, argv)


_KEPT = "the files reported as written above are complete, and nothing is half-written"


def _evaluate(
    parser: argparse.ArgumentParser, args: argparse.Namespace, argv: Sequence[str] | None
) -> dict:
    if not args.checkpoint.is_file():
        parser.error(
            f"--checkpoint {args.checkpoint}: no such file; pass a checkpoint written by "
            "examples.oamn.train (e.g. OUTPUT_DIR/checkpoint_best.pt)"
        )
    try:
        settings = EvaluationSettings(**field_values(args, EvaluationSettings))
        device = resolve_device(args.device)
    except ValueError as error:
        parser.error(str(error))
    try:
        amp = resolve_amp(settings.amp, device)
    except ValueError as error:
        parser.error(f"--amp: {error}")
    if args.figures is not None and importlib.util.find_spec("matplotlib") is None:
        parser.error("--figures needs matplotlib: pip install matplotlib, or leave --figures out")
    try:
        model, config = load_model(args.checkpoint, device)
    except ValueError as error:  # the file's fault (corrupt, foreign): one line, no usage
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    # The mode auto resolved to is the one recorded.
    settings = dataclasses.replace(settings.for_checkpoint(config), amp=amp)
    dataset_name = args.dataset or config.dataset
    output = args.output or args.checkpoint.parent / f"metrics_{dataset_name}.json"
    with contextlib.ExitStack() as locks:
        # Before the minutes of extraction: a second command writing these files stops now.
        locks.enter_context(lock_file(output, option="--output"))
        remove_leftovers(output.parent, [glob.escape(output.name)])
        if args.figures is not None:
            locks.enter_context(lock_folder(args.figures, option="--figures"))
            remove_leftovers(args.figures, [FIGURE_PATTERN])
        data_root = args.data_root or (Path(config.data_root) if config.data_root else None)
        if data_root is None or not data_root.is_dir():
            parser.error(
                f"--data-root {data_root}: no such folder; pass the {dataset_name} folder with "
                "--data-root (the checkpoint's data_root is used by default)"
            )
        try:
            dataset = load_dataset(dataset_name, data_root)
        except (FileNotFoundError, ValueError) as error:
            parser.error(f"cannot load {dataset_name} from {data_root}: {error}")
        report, features = evaluation_report(
            model,
            dataset.query,
            dataset.gallery,
            data_root,
            height=config.height,
            width=config.width,
            device=device,
            settings=settings,
        )
        print(
            f"{dataset_name} ({data_root}): {report['num_query']} queries, "
            f"{report['num_gallery']} gallery images; checkpoint {args.checkpoint}"
        )
        print(format_report(report))
        command = sys.argv[1:] if argv is None else list(argv)
        result = write_evaluation(
            output,
            report,
            config,
            dataset,
            settings=settings,
            dataset_name=dataset_name,
            data_root=data_root,
            checkpoint=args.checkpoint,
            device=device,
            command=shlex.join(["python", "-m", "examples.oamn.evaluate", *command]),
        )
        print(f"metrics written to {output}", flush=True)
        if args.figures is not None:
            result = write_evaluation_figures(
                output,
                result,
                features,
                model,
                dataset,
                args.figures,
                device=device,
                num_figures=settings.num_figures,
            )
            print(f"figures: {', '.join(result['figures'])}")
        return result


if __name__ == "__main__":
    main()
