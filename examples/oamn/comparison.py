r"""The demo's comparison: a baseline and OAMN trained alike, evaluated alike on occluded queries.

Both models train from the same :class:`~examples.oamn.config.TrainConfig`
(:func:`demo_configs`: :data:`DEMO_SETTINGS`, the same backbone, input size, batches, schedule
and seed), differing only in the method's switches (the first row of the paper's Table 6,
:data:`BASELINE_SWITCHES`): the baseline has no occlusion augmentation, no mask module, a plain
batch-hard triplet and the identity loss; OAMN every component with the pipeline's defaults.
A model whose ``checkpoint_last.pt`` finished training under the same settings is reused
(:func:`trained_checkpoint`), so a second run only re-evaluates and redraws.

:func:`run_demo` trains (or reuses) both, evaluates them (:func:`evaluate_models`: the occluded
queries, OAMN also unified and its occlusion awareness, and on the synthetic benchmark the same
query shots without the occluder, :func:`holistic_queries`), draws the figures
(:func:`examples.oamn.summary_figures.save_demo_figure`, the awareness) and writes
``OUTPUT_DIR/results.json``. The command line is :mod:`examples.oamn.demo`.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import load_checkpoint, load_model
from .config import TrainConfig, resume_differences
from .data import ReIDDataset, ReIDItem, build_test_loader
from .evaluation import evaluation_report
from .evaluation_settings import EvaluationSettings
from .extraction import EvaluationFeatures, extract_features
from .precision import resolve_amp
from .reporting import TABLE_COLUMNS, format_table, library_versions, metrics_report
from .run_files import write_json
from .summary_figures import save_awareness_figure, save_demo_figure
from .synthetic import generate_synthetic_reid
from .training import train_or_resume

__all__ = [
    "BASELINE_SWITCHES",
    "DEFAULT_STRATEGIES",
    "DEMO_FILES",
    "DEMO_SETTINGS",
    "MODELS",
    "QUICK_SETTINGS",
    "QUICK_SYNTHETIC",
    "demo_configs",
    "evaluate_models",
    "holistic_queries",
    "run_demo",
    "synthetic_benchmark",
    "trained_checkpoint",
]

#: Training settings shared by both models (on top of :class:`TrainConfig`'s defaults): a
#: ResNet-18 learns from scratch at 128x64 (both models trained in 4.9 minutes on the project's
#: 2-core CPU, in bfloat16; docs/SPEED.md). The backbone gets
#: the full learning rate (its 0.1 multiplier is for ImageNet weights); the mask module sees an
#: 8x4 map after layer3, where its RGA-S reductions are 2 and 2, those of the measured runs in
#: the README (the automatic values would be 4 and 8).
DEMO_SETTINGS: dict[str, Any] = {
    "dataset": "market1501",
    "backbone": "resnet18",
    "split_after": "layer3",
    "height": 128,
    "width": 64,
    "ids_per_batch": 16,
    "instances_per_id": 4,
    "workers": 0,
    "epochs": 10,
    "warmup_epochs": 2,
    "lr": 0.05,
    "lr_steps": (7,),
    "lr_step_values": (0.005,),
    "lr_mult_backbone": 1.0,
    "lr_mult_mask": 1.0,
    "mask_spatial_reduction": 2,
    "mask_down_ratio": 2,
}

#: The baseline's switches: Table 6's first row (holistic images only, no mask, plain triplet).
BASELINE_SWITCHES: dict[str, Any] = {
    "occlusion": False,
    "mask_module": False,
    "loss_mask": False,
    "grouped_triplet": False,
    "loss_score": False,
}

#: ``--quick``: a tiny synthetic benchmark (generated in about a second) ...
QUICK_SYNTHETIC: dict[str, Any] = {
    "num_train_ids": 8,
    "num_test_ids": 6,
    "cameras": 3,
    "images_per_id_per_camera": 2,
    "queries_per_id": 1,
    "min_share": 1,
    "num_distractors": 2,
    "num_junk": 2,
}
#: ... and two small steps per model.
QUICK_SETTINGS: dict[str, Any] = {
    "epochs": 1,
    "warmup_epochs": 1,
    "lr_steps": (),
    "lr_step_values": (),
    "max_steps_per_epoch": 2,
    "ids_per_batch": 4,
    "instances_per_id": 2,
}

MODELS: tuple[str, ...] = ("baseline", "oamn")
#: Banks of OAMN's unified rows by default: the band removed from the attentive features (one
#: E^I pass per image).
DEFAULT_STRATEGIES: tuple[str, ...] = ("band",)
#: The files :func:`run_demo` writes into its folder (glob patterns).
DEMO_FILES = ("results.json", "demo.png", "awareness.png")
_TITLES = {"baseline": "baseline", "oamn": "OAMN"}


def demo_configs(
    data_root: str | Path, output_dir: str | Path, *, quick: bool = False, **overrides: Any
) -> dict[str, TrainConfig]:
    """The two training configurations: identical but for :data:`BASELINE_SWITCHES`.

    Args:
        data_root: the dataset folder.
        output_dir: the demo folder; each model trains into ``output_dir/<name>``.
        quick: the smoke run's :data:`QUICK_SETTINGS` replace :data:`DEMO_SETTINGS`' values.
        overrides: :class:`TrainConfig` fields that replace both.

    Returns:
        ``{"baseline": config, "oamn": config}``.

    Example:
        >>> configs = demo_configs("data", "runs/demo", epochs=3)
        >>> configs["baseline"].occlusion, configs["oamn"].occlusion, configs["oamn"].epochs
        (False, True, 3)
        >>> diff = {k for k, v in configs["oamn"].to_dict().items()
        ...         if configs["baseline"].to_dict()[k] != v}
        >>> sorted(diff - {"output_dir"}) == sorted(BASELINE_SWITCHES)
        True
    """
    quick_settings = QUICK_SETTINGS if quick else {}
    settings = {**DEMO_SETTINGS, **quick_settings, **overrides, "data_root": str(data_root)}
    switches = {"baseline": BASELINE_SWITCHES, "oamn": {}}
    return {
        name: TrainConfig(**settings, **switches[name], output_dir=str(Path(output_dir) / name))
        for name in MODELS
    }


def trained_checkpoint(path: str | Path, config: TrainConfig) -> bool:
    """Whether ``path`` holds a model that finished training under ``config``, so that a
    second demo run (to redraw the figure, or after an interruption) does not retrain it.

    The settings that do not change the weights (``output_dir``, ``progress``, ``device``, ...:
    :data:`~examples.oamn.config.RUN_ONLY_FIELDS`) are not compared.
    """
    path = Path(path)
    if not path.is_file():
        return False
    stored = load_checkpoint(path, verify=False)  # the model is loaded, and verified, later
    return not resume_differences(stored.config, config) and stored.epoch == config.epochs


def holistic_queries(dataset: ReIDDataset) -> tuple[ReIDItem, ...] | None:
    """The synthetic benchmark's ``query_holistic/`` twins of the queries, in the same order;
    ``None`` when the dataset has no such folder (real datasets)."""
    folder = Path(dataset.root) / "query_holistic"
    if not folder.is_dir():
        return None
    twins = tuple(dataclasses.replace(item, path=folder / item.path.name) for item in dataset.query)
    missing = [str(item.path) for item in twins if not item.path.is_file()]
    if missing:
        raise FileNotFoundError(f"query_holistic/ lacks the twins of {len(missing)} queries")
    return twins


def evaluate_models(
    models: Mapping[str, nn.Module],
    dataset: ReIDDataset,
    *,
    height: int,
    width: int,
    device: str | torch.device,
    strategies: Sequence[str] = DEFAULT_STRATEGIES,
    batch_size: int = 128,
    amp: str = "auto",
    progress: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, EvaluationFeatures], dict[str, dict]]:
    """Evaluate each model on the occluded queries (OAMN also unified, with its occlusion
    awareness; :func:`~examples.oamn.evaluation.evaluation_report`) and the holistic twins.

    Args:
        models: ``{"baseline": model, "oamn": model}`` on ``device``.
        dataset: the test dataset (its ``query`` and ``gallery``).
        height: input height of the models.
        width: input width.
        device: where the forward passes run.
        strategies: OAMN's gallery-bank strategies (:data:`oamn.reid_eval.BANK_STRATEGIES`
            names), one unified row each.
        batch_size: images per forward pass.
        amp: the autocast mode of the forward passes (:mod:`~examples.oamn.precision`).
        progress: show progress bars.

    Returns:
        The table rows (``model``, ``queries`` (``"occluded"`` or ``"holistic"``), ``setting``
        (``"no unification"`` or the unified row's name), ``R1`` .. ``mINP`` as fractions,
        ``num_valid_queries``), each model's :class:`EvaluationFeatures` of the occluded
        queries (for the figure) and OAMN's occlusion awareness
        (:func:`~examples.oamn.awareness.awareness_report`, under ``"oamn"``).
    """
    twins = holistic_queries(dataset)
    rows: list[dict[str, Any]] = []
    features: dict[str, EvaluationFeatures] = {}
    awareness: dict[str, dict] = {}
    for name, model in models.items():
        oamn = name == "oamn"  # the baseline has no mask, and its grader is never trained
        settings = EvaluationSettings(
            strategies=strategies if oamn else (),
            awareness=oamn,
            batch_size=batch_size,
            workers=0,
            amp=amp,
            progress=progress,
        )
        report, features[name] = evaluation_report(
            model,
            dataset.query,
            dataset.gallery,
            dataset.root,
            height=height,
            width=width,
            device=device,
            settings=settings,
        )
        if "awareness" in report:
            awareness[name] = report["awareness"]
        reports = {"occluded": report}
        if twins is not None:
            loader = build_test_loader(twins, height, width, batch_size, 0, split="query_holistic")
            holistic = extract_features(model, loader, device, amp, progress)
            reports["holistic"] = metrics_report(
                EvaluationFeatures(holistic, features[name].gallery)
            )
        for queries, report in reports.items():
            for row in report["rows"].values():
                rows.append(
                    {
                        "model": _TITLES[name],
                        "queries": queries,
                        "setting": row["name"],
                        **{column: row[column] for column in TABLE_COLUMNS},
                        "num_valid_queries": row["num_valid_queries"],
                    }
                )
    return rows, features, awareness


def synthetic_benchmark(cache: str | Path, *, seed: int = 0, quick: bool = False) -> Path:
    """The demo's synthetic benchmark (:func:`~examples.oamn.synthetic.generate_synthetic_reid`
    at :data:`DEMO_SETTINGS`' input size; with ``quick`` the tiny :data:`QUICK_SYNTHETIC`),
    generated into ``cache`` or found there; returns its folder."""
    size = {"height": DEMO_SETTINGS["height"], "width": DEMO_SETTINGS["width"]}
    return generate_synthetic_reid(cache, seed=seed, **size, **(QUICK_SYNTHETIC if quick else {}))


def run_demo(
    configs: Mapping[str, TrainConfig],
    dataset: ReIDDataset,
    output_dir: str | Path,
    *,
    device: torch.device,
    strategies: Sequence[str] = DEFAULT_STRATEGIES,
    command: str,
    seconds: Mapping[str, float] | None = None,
    started: float | None = None,
) -> dict[str, Any]:
    """Train (or reuse) both models, evaluate them, write ``results.json``, draw the figures
    (then add their paths and times to it: a figure that fails loses no result).

    Args:
        configs: :func:`demo_configs`' two configurations (each model trains into its
            ``output_dir``; its dataset, data root and input size are the test set's).
        dataset: the loaded test dataset of the configurations.
        output_dir: the demo folder, for ``demo.png``, ``awareness.png`` and ``results.json``.
        device: where the evaluation runs (each training runs on its config's device).
        strategies: OAMN's gallery-bank strategies, see :func:`evaluate_models`.
        command: the command line, as recorded.
        seconds: the times of the stages already done (e.g. ``"data"``), recorded first.
        started: :func:`time.perf_counter` when the command started, for the total time
            (default: now).

    Returns:
        What ``results.json`` holds: ``"command"``, ``"dataset"`` (name, root and split
        sizes), ``"rows"`` (:func:`evaluate_models`), ``"table"`` (the rows as text, settings
        shortened), ``"seconds"`` of each stage (data, training of each model, evaluation,
        figures, total; rounded to 0.1 s), ``"torch_threads"``, ``"amp"`` (the mode each
        model trained under, and the evaluation's), ``"configs"``, OAMN's ``"awareness"``,
        ``"figures"`` (the paths written) and ``"versions"``.
    """
    started = time.perf_counter() if started is None else started
    seconds = dict(seconds or {})
    output_dir = Path(output_dir)
    models, trained = {}, {}
    for name, config in configs.items():
        checkpoint = Path(config.output_dir) / "checkpoint_last.pt"
        start = time.perf_counter()
        if trained_checkpoint(checkpoint, config):
            print(f"reusing the trained {_TITLES[name]} {checkpoint}", file=sys.stderr)
        else:
            print(f"training the {_TITLES[name]} ({config.output_dir})", file=sys.stderr)
            train_or_resume(config)
        seconds[f"train_{name}"] = time.perf_counter() - start
        models[name], trained[name] = load_model(checkpoint, device)
    oamn = configs["oamn"]
    size = {"height": oamn.height, "width": oamn.width, "device": device}
    amp = resolve_amp(oamn.amp, device)
    start = time.perf_counter()
    rows, features, awareness = evaluate_models(
        models, dataset, **size, strategies=strategies, amp=amp, progress=oamn.progress
    )
    seconds["evaluate"] = time.perf_counter() - start
    short = [{**row, "setting": _short_setting(row["setting"])} for row in rows]
    result = {
        "command": command,
        "dataset": {
            "name": oamn.dataset,
            "root": oamn.data_root,
            "num_train": len(dataset.train),
            "num_query": len(dataset.query),
            "num_gallery": len(dataset.gallery),
        },
        "rows": rows,
        "table": format_table(short, ("model", "queries", "setting")),
        "seconds": {name: round(value, 1) for name, value in seconds.items()},
        "torch_threads": torch.get_num_threads(),
        "amp": {
            **{name: config.amp for name, config in trained.items()},
            "evaluation": amp,
        },
        "configs": {name: config.to_dict() for name, config in configs.items()},
        "awareness": awareness,
        "versions": library_versions(),
    }
    # The results first: a figure that cannot be written (a full disk) loses none of them.
    write_json(output_dir / "results.json", result)
    start = time.perf_counter()
    figure = save_demo_figure(output_dir / "demo.png", models, features, rows, dataset, **size)
    figures = [figure]
    if "oamn" in awareness:
        figures.append(save_awareness_figure(awareness["oamn"], output_dir / "awareness.png"))
    seconds["figure"] = time.perf_counter() - start
    seconds["total"] = time.perf_counter() - started
    result["seconds"] = {name: round(value, 1) for name, value in seconds.items()}
    result["figures"] = [str(path) for path in figures]
    write_json(output_dir / "results.json", result)
    return result


def _short_setting(setting: str) -> str:
    """A row's setting as the table shows it: ``"unified, band bank, two-sided"`` ->
    ``"unified band, two-sided"``."""
    return setting.replace("unified, ", "unified ").replace(" bank", "")
