r"""The occlusion-awareness study: model variants x seeds, trained alike, measured alike.

    python -m examples.oamn.study --output-dir runs/study --seeds 0,1,2 \
        [--variants baseline,paper,invariant_losses,profile_grader,remedies] \
        [--data-root DIR --dataset NAME] [--strategies band,feature] [--threads N] \
        [any training option, e.g. --epochs 10 --val-ids 20]

Without ``--data-root`` every seed generates its own synthetic benchmark
(:func:`examples.oamn.synthetic.generate_synthetic_reid` with that seed, cached under
``--data-cache``) and the training settings start from the demo's (:data:`examples.oamn.comparison.
DEMO_SETTINGS`); with it, from :class:`~examples.oamn.config.TrainConfig`'s defaults. Training
options given here replace them for every run; each variant then sets its own switches
(:data:`VARIANTS`) and each run its ``--seed``. Every run trains into
``OUTPUT_DIR/<variant>/seed<k>`` (a finished run is reused, not retrained) and is evaluated by
:func:`examples.oamn.evaluation.evaluation_report`: the plain, unified (one- and two-sided, with
the grader's and, on the synthetic benchmark, the true types) rows and the occlusion awareness.
With ``--val-ids`` the awareness is also measured on the held-out training identities
(``"validation"``), the only numbers the defaults may be chosen on.

Writes ``evaluation.json`` per run, then ``results.json`` (every run, and per variant the mean,
sample standard deviation and count over seeds of each summary number) and ``results.md`` (the
tables of :mod:`~examples.oamn.study_report`), after every run, so an interrupted study keeps
what finished; re-running it continues.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .awareness import awareness_report
from .checkpoint import load_model
from .command_errors import locked_command
from .comparison import BASELINE_SWITCHES, DEMO_SETTINGS, trained_checkpoint
from .config import RECIPES, TrainConfig
from .config_cli import config_parser
from .data import build_test_loader, load_dataset
from .distributed import resolve_device
from .evaluation import evaluation_report
from .evaluation_settings import EvaluationSettings, parse_strategies
from .extraction import extract_features
from .occluder_labels import reweight_none
from .reporting import library_versions
from .run_files import remove_leftovers, write_atomic, write_json
from .study_report import format_intervals, format_markdown, slim, summarise
from .synthetic import generate_synthetic_reid
from .training import train_or_resume
from .validation import training_split

__all__ = ["EXPLORATORY_VARIANTS", "VARIANTS", "build_parser", "main"]

#: Each variant's switches (TrainConfig fields) on top of the shared settings.
VARIANTS: dict[str, dict[str, Any]] = {
    "baseline": BASELINE_SWITCHES,
    # The paper: its mask losses, one backward through everything, the authors' grader; the
    # authors' code: the same, but the mask losses train the mask module only.
    "paper": dict(RECIPES["paper"]),
    "authors": dict(RECIPES["authors"]),
    # Each remedy alone on the authors' setting, then all together (the new defaults).
    "invariant_losses": {
        "mask_loss_scale": "invariant",
        "lambda_mask": 5.0,
        "grader": "pooled",
        "routing": "official",
    },
    "invariant_losses_light": {
        "mask_loss_scale": "invariant",
        "lambda_mask": 1.0,
        "grader": "pooled",
        "routing": "official",
    },
    "feature_grader": {
        "mask_loss_scale": "paper",
        "lambda_mask": 5.0,
        "grader": "feature_profiles",
        "routing": "official",
    },
    "remedies": {
        "mask_loss_scale": "invariant",
        "lambda_mask": 1.0,
        "grader": "feature_profiles",
        "routing": "official",
    },
    # The remedies with realistic occluders, a 9-way grader and the mask told the occluder.
    "real_occluders": {
        "mask_loss_scale": "invariant",
        "lambda_mask": 1.0,
        "grader": "feature_profiles",
        "routing": "official",
        "occluders": "objects",
        "grader_head": "types",
        "lambda_visibility": 1.0,
    },
}
# real_occluders with other people at the image's own scale, and a 9-way grader's "none"
# halved at test time: both chosen on the validation identities' labelled occluders
# (python -m examples.oamn.grader_probe, docs/AWARENESS.md).
VARIANTS["real_occluders_people"] = {
    **VARIANTS["real_occluders"],
    "occluders": "people",
    "grader_none_weight": 0.5,
}

#: Variants tried on the way to the defaults (docs/AWARENESS.md, "what was tried"); run them by
#: name with ``--variants``. Every one uses the paper's ``lambda_1 = 5`` unless it says otherwise.
EXPLORATORY_VARIANTS: dict[str, dict[str, Any]] = {
    # real_occluders without one of its three parts: the paper's bands, eq. 8's 4-way grader,
    # no mask supervision.
    "real_occluders_bands": {**VARIANTS["real_occluders"], "occluders": "bands"},
    "real_occluders_eq8": {**VARIANTS["real_occluders"], "grader_head": "locations"},
    "real_occluders_no_visibility": {**VARIANTS["real_occluders"], "lambda_visibility": 0.0},
    # The people occluders alone: in the authors' setting, and with eq. 8's 4-way grader.
    "authors_people": {**VARIANTS["authors"], "occluders": "people"},
    "real_occluders_people_eq8": {
        **VARIANTS["real_occluders_people"],
        "grader_head": "locations",
        "grader_none_weight": 1.0,
    },
    # The scale-invariant losses through the encoder: the features collapse (R1 near 0).
    "invariant_paper_routing": {
        "mask_loss_scale": "invariant",
        "lambda_mask": 5.0,
        "grader": "pooled",
        "routing": "paper",
    },
    "profile_grader": {
        "mask_loss_scale": "paper",
        "lambda_mask": 5.0,
        "grader": "profiles",
        "routing": "official",
    },
    "profile_grader_kl": {
        "mask_loss_scale": "paper",
        "lambda_mask": 5.0,
        "grader": "profiles",
        "grader_convention": "distribution",
        "routing": "official",
    },
    "feature_grader_kl": {
        "mask_loss_scale": "paper",
        "lambda_mask": 5.0,
        "grader": "feature_profiles",
        "grader_convention": "distribution",
        "routing": "official",
    },
    "invariant_profiles": {
        "mask_loss_scale": "invariant",
        "lambda_mask": 5.0,
        "grader": "profiles",
        "routing": "official",
    },
    "invariant_profiles_mlp": {
        "mask_loss_scale": "invariant",
        "lambda_mask": 5.0,
        "grader": "profiles_mlp",
        "routing": "official",
    },
    "invariant_feature_grader_kl": {
        "mask_loss_scale": "invariant",
        "lambda_mask": 5.0,
        "grader": "feature_profiles",
        "grader_convention": "distribution",
        "routing": "official",
    },
    "remedies_kl": {
        "mask_loss_scale": "invariant",
        "lambda_mask": 1.0,
        "grader": "feature_profiles",
        "grader_convention": "distribution",
        "routing": "official",
    },
}


def build_parser() -> argparse.ArgumentParser:
    """The study's own options; every other option goes to the training runs."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.oamn.study",
        description="Train and evaluate OAMN variants over seeds and measure their occlusion "
        "awareness. Options not listed here are training options shared by every run.",
    )
    parser.add_argument("--output-dir", type=Path, default=Path("runs/study"))
    parser.add_argument("--seeds", type=_int_list, default=(0, 1, 2), help="comma list")
    parser.add_argument(
        "--variants",
        type=_variant_list,
        default=tuple(VARIANTS),
        help=f"comma list of {', '.join(VARIANTS)} (default: these) or of "
        f"{', '.join(EXPLORATORY_VARIANTS)}",
    )
    parser.add_argument(
        "--data-root", type=Path, help="a real dataset (default: the synthetic benchmark)"
    )
    parser.add_argument("--dataset", default="market1501", help="the real dataset's layout")
    parser.add_argument(
        "--data-cache",
        type=Path,
        help="folder of the generated synthetic benchmarks (default: OUTPUT_DIR/data)",
    )
    parser.add_argument(
        "--strategies",
        type=parse_strategies,
        default=("band", "feature"),
        help="bank strategies of the unified rows (default: band,feature)",
    )
    parser.add_argument(
        "--collect",
        action="store_true",
        help="train and evaluate nothing: summarise the evaluation.json files already in "
        "OUTPUT_DIR (e.g. runs made in parallel, one process per seed)",
    )
    parser.add_argument("--eval-batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Train what is missing, evaluate, write ``results.json`` and ``results.md``."""
    parser = build_parser()
    args, train_options = parser.parse_known_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    given = vars(config_parser().parse_args(train_options))
    base = ({} if args.data_root else dict(DEMO_SETTINGS)) | {"dataset": args.dataset} | given
    with locked_command(parser.prog, args.output_dir):
        return _study(args, argv, base)


def _study(args: argparse.Namespace, argv: Sequence[str] | None, base: dict[str, Any]) -> dict:
    """Train what is missing, evaluate, write the results (the study's folder locked)."""
    out: Path = args.output_dir
    remove_leftovers(out, _RESULT_FILES)
    command = sys.argv[1:] if argv is None else list(argv)
    results: dict[str, Any] = {
        "command": shlex.join(["python", "-m", "examples.oamn.study", *command]),
        "settings": base,
        "torch_threads": torch.get_num_threads(),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
        "versions": library_versions(),
        "runs": {},
    }
    if args.collect:
        for variant in args.variants:
            for seed in args.seeds:
                cached = out / variant / f"seed{seed}" / "evaluation.json"
                if cached.is_file():
                    report = json.loads(cached.read_text())
                    results["runs"].setdefault(variant, {})[str(seed)] = report
        _write(results, out)
        return results
    for seed in args.seeds:
        data_root = args.data_root or generate_synthetic_reid(
            args.data_cache or out / "data", seed=seed, height=base["height"], width=base["width"]
        )
        dataset = load_dataset(base["dataset"], data_root)
        for variant in args.variants:
            run_dir = out / variant / f"seed{seed}"
            config = TrainConfig.from_dict(
                {
                    **base,
                    **{**VARIANTS, **EXPLORATORY_VARIANTS}[variant],
                    "seed": seed,
                    "data_root": str(data_root),
                    "output_dir": str(run_dir),
                }
            )
            report = _run(config, dataset, data_root, args)
            results["runs"].setdefault(variant, {})[str(seed)] = report
            _write(results, out)
    return results


#: What :func:`_write` writes into the output folder.
_RESULT_FILES = ("results.json", "results.md")


def _write(results: dict[str, Any], out: Path) -> None:
    """``results.json`` without the per-query lists (each run's ``evaluation.json`` keeps
    them) and ``results.md``."""
    results["summary"] = summarise(results["runs"])
    compact = {
        **results,
        "runs": {v: {s: slim(r) for s, r in runs.items()} for v, runs in results["runs"].items()},
    }
    write_json(out / "results.json", compact, indent=1)
    tables = [format_markdown(results["summary"]), format_intervals(results["runs"])]
    write_atomic(out / "results.md", "\n\n".join(tables) + "\n")


def _run(config: TrainConfig, dataset, data_root: Path, args: argparse.Namespace) -> dict:
    """Train (or reuse) one run and evaluate it (or read its cached ``evaluation.json``)."""
    run_dir = Path(config.output_dir)
    cached = run_dir / "evaluation.json"
    checkpoint = run_dir / "checkpoint_last.pt"
    if not trained_checkpoint(checkpoint, config):
        print(f"training {run_dir}", file=sys.stderr, flush=True)
        train_or_resume(config)
    elif cached.is_file():
        return json.loads(cached.read_text())
    history = json.loads((run_dir / "log.json").read_text())
    device = resolve_device(config.device)
    model, _ = load_model(checkpoint, device)
    size = {"height": config.height, "width": config.width, "device": device}
    settings = EvaluationSettings(
        strategies=args.strategies,
        awareness=True,
        batch_size=args.eval_batch_size,
        amp=config.amp,
        progress=config.progress,
    ).for_checkpoint(config)
    report, _ = evaluation_report(
        model, dataset.query, dataset.gallery, data_root, **size, settings=settings
    )
    for row in report["rows"].values():
        row.pop("cmc")
    report["train_seconds"] = round(sum(record["seconds"] for record in history), 1)
    if config.val_ids:
        report["validation"] = _validation(model, config, dataset, size, settings)
    remove_leftovers(run_dir, [cached.name])
    write_json(cached, report, indent=1)
    return report


def _validation(
    model, config: TrainConfig, dataset, size: dict, settings: EvaluationSettings
) -> dict:
    """Awareness on the held-out training identities' images, and their last validation mAP."""
    _, val_query, val_gallery = training_split(dataset.train, config)
    items = (*val_query, *val_gallery)
    loader = build_test_loader(items, config.height, config.width, settings.batch_size, 0)
    scores = extract_features(model, loader, size["device"], progress=False).grader_scores
    scores = reweight_none(scores, settings.none_weight)
    report, _ = awareness_report(model, items, scores, None, **size, settings=settings)
    history = json.loads((Path(config.output_dir) / "log.json").read_text())
    validated = [record for record in history if "val_mAP" in record]
    return {**report, "val_mAP": validated[-1]["val_mAP"] if validated else None}


def _int_list(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def _variant_list(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    known = {**VARIANTS, **EXPLORATORY_VARIANTS}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown variants {unknown}; choose from {list(known)}")
    return names


if __name__ == "__main__":
    main()
