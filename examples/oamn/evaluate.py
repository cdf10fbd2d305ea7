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
occlusion awareness
(:mod:`examples.oamn.awareness`): the mask's band / visible ratio and the grader's accuracy.
Writes the same as JSON (fractions in [0, 1]) with the command, the config, the dataset sizes
and the library versions. ``--figures`` then adds PNGs of ranked lists, attention maps and the
awareness (matplotlib needed then only), and their paths to the JSON. The JSON file and the
figures folder are locked while the command runs (:mod:`examples.oamn.locking`): a second
command writing either is refused at once.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import importlib.util
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from oamn.reid_eval import BANK_STRATEGIES

from .checkpoint import load_model
from .command_errors import exit_on_errors
from .data import DATASETS, load_dataset
from .distributed import resolve_device
from .evaluation import evaluation_report, write_evaluation, write_evaluation_figures
from .extraction import parse_strategies
from .locking import lock_file, lock_folder
from .precision import AMP_MODES, resolve_amp
from .reporting import format_report
from .run_files import remove_leftovers

__all__ = ["DEFAULT_RERANK", "build_parser", "main", "parse_rerank"]

#: ``--rerank`` without a value: the k1, k2, lambda of Zhong et al. (CVPR 2017).
DEFAULT_RERANK = (20, 6, 0.3)
#: The files this command writes into ``--figures``.
FIGURE_PATTERN = "*.png"


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (see the module docstring)."""
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
        "--strategies",
        type=parse_strategies,
        default=BANK_STRATEGIES,
        help="comma-separated gallery-bank strategies of the unified rows, or "
        f"'none' for no unification (default: {','.join(BANK_STRATEGIES)})",
    )
    parser.add_argument(
        "--no-two-sided",
        action="store_true",
        help="leave out the two-sided unified rows (no query bank)",
    )
    parser.add_argument(
        "--no-awareness",
        action="store_true",
        help="skip the mask and grader awareness measurement (and the true-type rows)",
    )
    parser.add_argument(
        "--awareness-seed",
        type=int,
        default=0,
        help="seed of the augmentation bands of the awareness measurement (default: 0)",
    )
    parser.add_argument("--batch-size", type=int, default=128, help="images per forward pass")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="loader worker processes (default: the training config's)",
    )
    parser.add_argument(
        "--device", default="auto", help="auto (cuda when available, default), cpu, cuda or cuda:N"
    )
    parser.add_argument(
        "--amp",
        choices=AMP_MODES,
        default="auto",
        help="autocast dtype of the forward passes: auto (bf16 where the device has bfloat16 "
        "arithmetic, float32 elsewhere; the default), none (float32), bf16, or fp16 (CUDA only)",
    )
    parser.add_argument(
        "--ap",
        choices=("step", "trapezoid"),
        default="step",
        help="AP formula: step (usual) or trapezoid (the authors' code, lower)",
    )
    parser.add_argument(
        "--boundary",
        choices=("paper", "official"),
        default="paper",
        help="grader thresholds' boundary convention (METHOD.md §4)",
    )
    parser.add_argument(
        "--rerank",
        nargs="?",
        const=DEFAULT_RERANK,
        type=parse_rerank,
        metavar="K1,K2,LAMBDA",
        help="add k-reciprocal re-ranked rows (Zhong et al. 2017; within each query's type for "
        "the unified rows); the value defaults to 20,6,0.3 (default: no re-ranking)",
    )
    parser.add_argument(
        "--num-figures",
        type=int,
        default=6,
        help="queries shown in the figures (default: %(default)s)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser


def parse_rerank(text: str) -> tuple[int, int, float]:
    """``"20,6,0.3"`` -> ``(20, 6, 0.3)``: k-reciprocal re-ranking's ``k1, k2, lambda_value``.

    Raises:
        argparse.ArgumentTypeError: not three comma-separated numbers, ``k1`` or ``k2`` not an
            integer ``>= 1``, or ``lambda_value`` outside ``[0, 1]``.

    Example:
        >>> parse_rerank("20,6,0.3"), parse_rerank(" 10, 3, 0 ")
        ((20, 6, 0.3), (10, 3, 0.0))
    """
    expected = argparse.ArgumentTypeError(
        f"{text!r}: expected K1,K2,LAMBDA with integers K1, K2 >= 1 and LAMBDA in [0, 1], "
        "e.g. 20,6,0.3"
    )
    parts = [part.strip() for part in text.split(",")]
    if len(parts) != 3:
        raise expected
    try:
        k1, k2, lambda_value = int(parts[0]), int(parts[1]), float(parts[2])
    except ValueError:
        raise expected from None
    if k1 < 1 or k2 < 1 or not 0 <= lambda_value <= 1:
        raise expected
    return k1, k2, lambda_value


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
        device = resolve_device(args.device)
    except ValueError as error:
        parser.error(str(error))
    try:
        amp = resolve_amp(args.amp, device)
    except ValueError as error:
        parser.error(f"--amp: {error}")
    if args.figures is not None and importlib.util.find_spec("matplotlib") is None:
        parser.error("--figures needs matplotlib: pip install matplotlib, or leave --figures out")
    try:
        model, config = load_model(args.checkpoint, device)
    except ValueError as error:  # the file's fault (corrupt, foreign): one line, no usage
        parser.exit(2, f"{parser.prog}: error: {error}\n")
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
            batch_size=args.batch_size,
            workers=config.workers if args.workers is None else args.workers,
            strategies=args.strategies,
            two_sided=not args.no_two_sided,
            awareness=not args.no_awareness,
            awareness_seed=args.awareness_seed,
            amp=amp,
            ap=args.ap,
            boundary=args.boundary,
            rerank=args.rerank,
            none_weight=config.grader_none_weight,
            progress=not args.no_progress,
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
            dataset_name=dataset_name,
            data_root=data_root,
            checkpoint=args.checkpoint,
            device=device,
            amp=amp,
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
                num_figures=args.num_figures,
            )
            print(f"figures: {', '.join(result['figures'])}")
        return result


if __name__ == "__main__":
    main()
