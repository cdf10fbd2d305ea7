r"""The main demo: a baseline and OAMN trained alike, compared on occluded queries, one command.

    python -m examples.oamn.demo [--output-dir runs/demo] [--epochs N] [--backbone resnet18]
        [--weights resnet18.pth] [--data-root DIR --dataset NAME] [--quick]

With no data and no GPU it generates the synthetic occluded-pedestrian benchmark
(:func:`examples.oamn.synthetic.generate_synthetic_reid`, cached under ``--data-cache``),
then trains two models with :func:`examples.oamn.train.train`, both from the same
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
:data:`DEMO_SETTINGS`) finish within 15 minutes on 2 CPU cores. ``--weights`` starts the
backbone from ImageNet weights instead (a local state dict, or a torchvision weight name such as
``IMAGENET1K_V1``, which needs the torch hub cache or a network). ``--quick`` is a smoke run: a tiny
synthetic set and two steps per model (seconds). A model whose ``checkpoint_last.pt`` in
``OUTPUT_DIR`` finished training under the same settings is reused, not retrained
(:func:`trained_checkpoint`), so running the command again only re-evaluates and redraws.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from oamn.reid_eval import predict_occlusion_type

from .checkpoint import load_checkpoint, load_model
from .config import TrainConfig, resume_differences
from .data import DATASETS, ReIDDataset, ReIDItem, build_test_loader, load_dataset
from .distributed import resolve_device
from .evaluation import evaluation_report
from .extraction import EvaluationFeatures, extract_features, parse_strategies
from .reporting import (
    TABLE_COLUMNS,
    format_table,
    library_versions,
    metrics_report,
    occlusion_type_names,
)
from .synthetic import generate_synthetic_reid
from .training import train_or_resume
from .visualize import (
    MATCH_COLOURS,
    attention_masks,
    denormalize,
    draw_image,
    match_kinds,
    ranked_indices,
    save_awareness_figure,
)

__all__ = [
    "BASELINE_SWITCHES",
    "DEMO_SETTINGS",
    "QUICK_SETTINGS",
    "QUICK_SYNTHETIC",
    "build_parser",
    "demo_configs",
    "evaluate_models",
    "holistic_queries",
    "main",
    "save_demo_figure",
    "trained_checkpoint",
]

#: Training settings shared by both models (on top of :class:`TrainConfig`'s defaults): a
#: ResNet-18 learns from scratch at 128x64 within the 15-minute CPU budget. The backbone gets
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
    "channels_last": True,
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
_TITLES = {"baseline": "baseline", "oamn": "OAMN"}
_FIGURE_QUERIES = 4
_TOP_K = 5


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.oamn.demo",
        description="Train a baseline and OAMN alike and compare them on occluded queries "
        "(default: the synthetic benchmark, generated on the fly).",
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
        choices=("resnet18", "resnet34", "resnet50", "mobilenet_v2"),
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
        "--quick", action="store_true", help="smoke run: tiny synthetic set, 2 steps per model"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser


def demo_configs(
    data_root: str | Path, output_dir: str | Path, **overrides: Any
) -> dict[str, TrainConfig]:
    """The two training configurations: identical but for :data:`BASELINE_SWITCHES`.

    Args:
        data_root: the dataset folder.
        output_dir: the demo folder; each model trains into ``output_dir/<name>``.
        overrides: :class:`TrainConfig` fields that replace :data:`DEMO_SETTINGS`' values.

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
    settings = {**DEMO_SETTINGS, **overrides, "data_root": str(data_root)}
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
    state = load_checkpoint(path)
    stored = TrainConfig.from_dict(state["config"])
    return not resume_differences(stored, config) and state["epoch"] == config.epochs


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
        strategies: OAMN's gallery-bank strategies (:data:`examples.oamn.model.BANK_STRATEGIES`
            names), one unified row each.
        batch_size: images per forward pass.
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
        report, features[name] = evaluation_report(
            model,
            dataset.query,
            dataset.gallery,
            dataset.root,
            height=height,
            width=width,
            device=device,
            batch_size=batch_size,
            workers=0,
            strategies=strategies if oamn else (),
            awareness=oamn,
            progress=progress,
        )
        if "awareness" in report:
            awareness[name] = report["awareness"]
        reports = {"occluded": report}
        if twins is not None:
            loader = build_test_loader(twins, height, width, batch_size, 0, split="query_holistic")
            holistic = extract_features(model, loader, device, progress=progress)
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


def save_demo_figure(
    path: str | Path,
    models: Mapping[str, nn.Module],
    features: Mapping[str, EvaluationFeatures],
    rows: Sequence[Mapping[str, Any]],
    dataset: ReIDDataset,
    *,
    height: int,
    width: int,
    device: str | torch.device,
    num_queries: int = _FIGURE_QUERIES,
    top_k: int = _TOP_K,
) -> Path:
    """One PNG: occluded queries with OAMN's mask and the baseline's activation, each model's
    top-``k`` (OAMN unified with its first bank, if any), and R1/mAP bars of every table row.

    The queries are ``num_queries`` evenly spaced ones (first and last included). The baseline
    has no mask; its map is the channel mean of its ``f`` (after the same backbone stage). Each
    map is drawn scaled to its own range, which its caption gives.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    query_set = build_test_loader(dataset.query, height, width, 1, 0, split="query").dataset
    gallery_set = build_test_loader(dataset.gallery, height, width, 1, 0, split="gallery").dataset
    oamn, baseline = features["oamn"], features["baseline"]
    count = min(num_queries, len(oamn.query))
    chosen = torch.linspace(0, len(oamn.query) - 1, count).round().long()
    images = torch.stack([query_set[i][0] for i in chosen.tolist()])
    maps = {
        "OAMN m": attention_masks(models["oamn"], images, device),
        "baseline f": _activation_maps(models["baseline"], images, device),
    }
    types = predict_occlusion_type(oamn.query.grader_scores[chosen])
    type_names = occlusion_type_names()
    # The first bank's slice of each query's predicted type: the unified ranking (two-sided
    # when there is a query bank: each query under its own predicted type too).
    strategy = next(iter(oamn.banks), None)
    oamn_gallery = oamn.gallery.features if strategy is None else oamn.banks[strategy][types]
    oamn_queries = oamn.query.features[chosen]
    if strategy in oamn.query_banks:
        oamn_queries = oamn.query_banks[strategy][types, chosen]
    ranked = {
        "baseline top-5": ranked_indices(
            baseline.query.features[chosen], baseline.gallery.features, top_k
        ),
        "OAMN top-5 (unified)": ranked_indices(oamn_queries, oamn_gallery, top_k),
    }
    columns = 1 + len(maps) + len(ranked) * top_k
    figure = Figure(figsize=(0.85 * columns + 0.4, 1.9 * count + 3.2), dpi=100)
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(count + 2, columns, height_ratios=[1.9] * count + [0.25, 2.6])
    pictures = denormalize(images)
    for row, query in enumerate(chosen.tolist()):
        pid, camid = int(oamn.query.pids[query]), int(oamn.query.camids[query])
        predicted = type_names[int(types[row])].replace("_", " ")
        caption = f"query {pid}\nOAMN: {predicted}"
        draw_image(figure.add_subplot(grid[row, 0]), pictures[row], "black", caption)
        for col, (title, heat) in enumerate(maps.items(), start=1):
            axes = figure.add_subplot(grid[row, col])
            # Each map is scaled to its own range (given in the caption): a mask of values
            # in [0.01, 0.03] still shows where it looks.
            low, high = float(heat[row].min()), float(heat[row].max())
            caption = (
                f"{title}\n[{low:.2g}, {high:.2g}]" if row == 0 else f"[{low:.2g}, {high:.2g}]"
            )
            draw_image(axes, pictures[row], "black", caption)
            upsampled = torch.nn.functional.interpolate(
                _min_max(heat[row])[None], size=(height, width), mode="bilinear"
            )
            axes.imshow(upsampled[0, 0].numpy(), cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)
        for block, (title, indices) in enumerate(ranked.items()):
            gallery = features["baseline" if block == 0 else "oamn"].gallery
            kinds = match_kinds(
                pid, camid, gallery.pids[indices[row]], gallery.camids[indices[row]]
            )
            for rank, (index, kind) in enumerate(zip(indices[row].tolist(), kinds, strict=True)):
                axes = figure.add_subplot(grid[row, 1 + len(maps) + block * top_k + rank])
                image = denormalize(gallery_set[index][0])
                draw_image(axes, image, MATCH_COLOURS[kind], f"{rank + 1}", dashed=kind == "junk")
                if row == 0 and rank == 0:  # the block's title, above its rank captions
                    axes.text(0, 1.25, title, transform=axes.transAxes, fontsize=8, ha="left")
    bars = figure.add_subplot(grid[count + 1, :])
    labels = [
        f"{r['model']}\n{r['queries']}\n{r['setting'].replace('unified, ', 'unified ')}"
        for r in rows
    ]
    positions = torch.arange(len(rows)).float()
    for offset, metric, colour in ((-0.2, "R1", "#4575b4"), (0.2, "mAP", "#fdae61")):
        values = [100 * r[metric] for r in rows]
        drawn = bars.bar(
            (positions + offset).tolist(), values, width=0.4, color=colour, label=metric
        )
        bars.bar_label(drawn, fmt="%.0f", fontsize=6)
    bars.set_xticks(positions.tolist(), labels, fontsize=6)
    bars.set_ylabel("%")
    bars.set_ylim(0, 105)
    bars.legend(fontsize=7, loc="upper left")
    figure.subplots_adjust(left=0.05, right=0.99, bottom=0.08, top=0.96, wspace=0.08, hspace=0.35)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", facecolor="white")
    return path


def _activation_maps(model: nn.Module, images: Tensor, device: str | torch.device) -> Tensor:
    """Channel mean of each image's ``f``: ``(n, 1, h, w)`` float32 on the CPU."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return model(images.to(device)).f.float().mean(1, keepdim=True).cpu()
    finally:
        model.train(was_training)


def _short_setting(setting: str) -> str:
    """A row's setting as the table shows it: ``"unified, band bank, two-sided"`` ->
    ``"unified band, two-sided"``."""
    return setting.replace("unified, ", "unified ").replace(" bank", "")


def _min_max(heat: Tensor) -> Tensor:
    """``(1, h, w)`` map scaled to ``[0, 1]`` (a constant map becomes 0)."""
    return (heat - heat.min()) / (heat.max() - heat.min()).clamp_min(1e-12)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the demo (see the module docstring); returns what ``results.json`` holds."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    output_dir: Path = args.output_dir
    if args.data_root is not None:
        if not args.data_root.is_dir():
            parser.error(f"--data-root {args.data_root}: no such folder")
        data_root, dataset_name = args.data_root, args.dataset
    else:
        cache = args.data_cache or output_dir / "data"
        size = {"height": DEMO_SETTINGS["height"], "width": DEMO_SETTINGS["width"]}
        synthetic = QUICK_SYNTHETIC if args.quick else {}
        data_root = generate_synthetic_reid(cache, seed=args.seed, **size, **synthetic)
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
        "progress": not args.no_progress,
    }
    if args.quick:
        overrides |= QUICK_SETTINGS
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    try:
        configs = demo_configs(data_root, output_dir, **overrides)
    except ValueError as error:
        parser.error(str(error))
    device = resolve_device(args.device)
    models = {}
    for name, config in configs.items():
        checkpoint = Path(config.output_dir) / "checkpoint_last.pt"
        start = time.perf_counter()
        if trained_checkpoint(checkpoint, config):
            print(f"reusing the trained {_TITLES[name]} {checkpoint}", file=sys.stderr)
        else:
            print(f"training the {_TITLES[name]} ({config.output_dir})", file=sys.stderr)
            train_or_resume(config)
        seconds[f"train_{name}"] = time.perf_counter() - start
        models[name], _ = load_model(checkpoint, device)
    size = {"height": configs["oamn"].height, "width": configs["oamn"].width, "device": device}
    start = time.perf_counter()
    rows, features, awareness = evaluate_models(
        models, dataset, **size, strategies=args.strategies, progress=not args.no_progress
    )
    seconds["evaluate"] = time.perf_counter() - start
    start = time.perf_counter()
    figure = save_demo_figure(output_dir / "demo.png", models, features, rows, dataset, **size)
    figures = [figure]
    if "oamn" in awareness:
        figures.append(save_awareness_figure(awareness["oamn"], output_dir / "awareness.png"))
    seconds["figure"] = time.perf_counter() - start
    seconds["total"] = time.perf_counter() - started
    short = [{**row, "setting": _short_setting(row["setting"])} for row in rows]
    table = format_table(short, ("model", "queries", "setting"))
    print(
        f"{dataset_name} ({data_root}): {len(dataset.query)} queries, "
        f"{len(dataset.gallery)} gallery images"
    )
    print(table)
    print(f"figures: {', '.join(map(str, figures))}; total {seconds['total']:.0f} s")
    command = sys.argv[1:] if argv is None else list(argv)
    result = {
        "command": shlex.join(["python", "-m", "examples.oamn.demo", *command]),
        "dataset": {
            "name": dataset_name,
            "root": str(data_root),
            "num_train": len(dataset.train),
            "num_query": len(dataset.query),
            "num_gallery": len(dataset.gallery),
        },
        "rows": rows,
        "table": table,
        "seconds": {name: round(value, 1) for name, value in seconds.items()},
        "torch_threads": torch.get_num_threads(),
        "configs": {name: config.to_dict() for name, config in configs.items()},
        "awareness": awareness,
        "figures": [str(path) for path in figures],
        "versions": library_versions(),
    }
    (output_dir / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
