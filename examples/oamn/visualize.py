r"""PNG figures of an evaluation: ranked lists and attention heat maps, and the drawing helpers
of every figure (the summary figures are :mod:`~examples.oamn.summary_figures`).

matplotlib is imported only when a figure is drawn, and through its object-oriented API with
the Agg canvas (no ``pyplot``, no change to the process-wide backend), so the rest of the
pipeline works without it.

* Ranked lists: one row per query, the query then its top-``k`` gallery items, each framed
  green (same identity, another camera: a true match), red (another identity) or grey and
  dashed (junk: same identity and camera, or a junk identity; the protocol ignores them).
* Attention maps: each query above its mask ``m`` (bilinearly upsampled to the image) laid over
  it as a heat map on a fixed 0-1 scale.

The maps come from forward passes in eval and inference mode
(:func:`~examples.oamn.extraction.evaluation_mode`, the model's mode restored).

Images come normalised from the test transform and are de-normalised for display. Each PNG is
written atomically: an error (a full disk) leaves the previous file or none, never a part.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from oamn.occlusion_aug import OCCLUSION_TYPES
from oamn.reid_eval import predict_occlusion_type

from .data import IMAGENET_MEAN, IMAGENET_STD, ImageDataset, ReIDItem, test_transform
from .extraction import EvaluationFeatures, evaluation_mode
from .run_files import write_atomic

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from torch.utils.data import Dataset

    from .model import OAMNOutput

__all__ = [
    "MATCH_COLOURS",
    "attention_masks",
    "denormalize",
    "draw_heat",
    "draw_image",
    "evaluation_images",
    "evenly_spaced",
    "match_kinds",
    "model_output",
    "new_figure",
    "ranked_indices",
    "save_attention_maps",
    "save_figures",
    "save_png",
    "save_ranked_lists",
]

#: Frame colour of a gallery item by its kind (see :func:`match_kinds`).
MATCH_COLOURS: dict[str, str] = {"match": "#1a9850", "wrong": "#d73027", "junk": "#9e9e9e"}

_CELL_INCHES = (0.9, 1.9)  # width, height of one image cell
_CAPTION_INCHES = 0.3
_DPI = 100


def denormalize(
    images: Tensor,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Tensor:
    r"""Undo the test transform's normalisation, for display.

    Args:
        images: ``(..., 3, H, W)`` floating images normalised as ``(x - mean) / std``.
        mean: the per-channel means of the normalisation.
        std: the per-channel standard deviations.

    Returns:
        ``images * std + mean`` clamped to ``[0, 1]``, same shape, dtype and device.

    Example:
        >>> x = torch.tensor([-0.485 / 0.229, 0.0, 10.0]).view(3, 1, 1)
        >>> denormalize(x).flatten()
        tensor([0.0000, 0.4560, 1.0000])
    """
    view = (3, 1, 1)
    mean_t = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(view)
    std_t = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(view)
    return (images * std_t + mean_t).clamp(0, 1)


def match_kinds(
    query_pid: int,
    query_camid: int,
    gallery_pids: Tensor,
    gallery_camids: Tensor,
    junk_pids: Sequence[int] = (-1,),
) -> list[str]:
    r"""Kind of each gallery item for one query under the Market-1501 protocol.

    Args:
        query_pid: the query's identity.
        query_camid: the query's camera.
        gallery_pids: ``(k,)`` integer identities of the gallery items shown.
        gallery_camids: ``(k,)`` integer cameras.
        junk_pids: identities that are always junk (as in :func:`oamn.reid_eval.evaluate_rank`).

    Returns:
        ``k`` strings: ``"junk"`` (same identity and camera, or a junk identity), ``"match"``
        (same identity, another camera) or ``"wrong"``.

    Example:
        >>> match_kinds(3, 0, torch.tensor([3, 3, 5, -1]), torch.tensor([0, 1, 1, 1]))
        ['junk', 'match', 'wrong', 'junk']
    """
    same_id = gallery_pids == query_pid
    junk = (same_id & (gallery_camids == query_camid)) | torch.isin(
        gallery_pids, torch.as_tensor(list(junk_pids), dtype=gallery_pids.dtype)
    )
    kinds = torch.where(junk, 0, torch.where(same_id, 1, 2))
    return [("junk", "match", "wrong")[k] for k in kinds.tolist()]


def ranked_indices(query_features: Tensor, gallery_features: Tensor, k: int) -> Tensor:
    r"""The ``k`` nearest gallery items of each query, by Euclidean distance, ties in gallery
    order (a stable sort, as :mod:`oamn.reid_eval` ranks).

    Args:
        query_features: ``(n, D)`` floating features.
        gallery_features: ``(G, D)`` shared by every query, or ``(n, G, D)``: one gallery per
            query (e.g. ``bank[query_types]`` for the unified ranking).
        k: items kept, at most ``G``.

    Returns:
        ``(n, k)`` int64 gallery indices, nearest first.

    Example:
        >>> g = torch.tensor([[0.0], [2.0], [1.0], [1.0]])
        >>> ranked_indices(torch.tensor([[0.9], [2.0]]), g, 3)
        tensor([[2, 3, 0],
                [1, 2, 3]])
    """
    gallery = gallery_features.expand(len(query_features), -1, -1)
    distances = torch.cdist(query_features[:, None].to(gallery.dtype), gallery).squeeze(1)
    return torch.sort(distances, dim=1, stable=True).indices[:, :k]


def attention_masks(model: nn.Module, images: Tensor, device: str | torch.device) -> Tensor:
    r"""The model's attention mask ``m`` of each image (its ``forward(images).m``).

    Args:
        model: an OAMN model on ``device``; run in eval and inference mode (its mode restored,
            :func:`~examples.oamn.extraction.evaluation_mode`).
        images: ``(n, 3, H, W)`` normalised images.
        device: where the forward pass runs.

    Returns:
        ``(n, 1, h, w)`` float32 masks in ``(0, 1)`` on the CPU, at the feature map's size.
    """
    return model_output(model, images, device).m.float().cpu()


def model_output(model: nn.Module, images: Tensor, device: str | torch.device) -> OAMNOutput:
    """The model's output for ``images``, in eval and inference mode
    (:func:`~examples.oamn.extraction.evaluation_mode`)."""
    with evaluation_mode(model):
        return model(images.to(device))


def save_ranked_lists(
    query_images: Tensor,
    gallery_images: Tensor,
    kinds: Sequence[Sequence[str]],
    path: str | Path,
    *,
    query_titles: Sequence[str] | None = None,
    gallery_titles: Sequence[Sequence[str]] | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Path:
    r"""Save a PNG of ranked lists: one row per query, then its ranked gallery images.

    Args:
        query_images: ``(n, 3, H, W)`` normalised query images.
        gallery_images: ``(n, k, 3, H, W)`` normalised gallery images, nearest first.
        kinds: ``n`` lists of ``k`` kinds, ``"match"``, ``"wrong"`` or ``"junk"``
            (:func:`match_kinds`), giving each frame's colour (:data:`MATCH_COLOURS`).
        path: the PNG file to write (parent folders are created).
        query_titles: ``n`` captions of the queries (default: none).
        gallery_titles: ``n`` lists of ``k`` captions (default: the rank).
        mean: normalisation means, see :func:`denormalize`.
        std: normalisation standard deviations.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: shapes or lengths that do not agree, or an unknown kind.
    """
    n, k = gallery_images.shape[:2]
    if query_images.shape[0] != n or len(kinds) != n or any(len(row) != k for row in kinds):
        raise ValueError(
            f"query_images, gallery_images and kinds must describe the same {n} queries x {k} "
            f"items, got {query_images.shape[0]} queries and kinds of lengths "
            f"{[len(row) for row in kinds]}"
        )
    unknown = {kind for row in kinds for kind in row} - MATCH_COLOURS.keys()
    if unknown:
        raise ValueError(f"unknown kinds {sorted(unknown)}; use {tuple(MATCH_COLOURS)}")
    figure, axes = _grid(n, k + 1)
    queries, gallery = denormalize(query_images, mean, std), denormalize(gallery_images, mean, std)
    for row in range(n):
        draw_image(axes[row][0], queries[row], "black", query_titles[row] if query_titles else "")
        for col in range(k):
            kind = kinds[row][col]
            title = gallery_titles[row][col] if gallery_titles else f"{col + 1}"
            draw_image(
                axes[row][col + 1],
                gallery[row, col],
                MATCH_COLOURS[kind],
                f"{title}\njunk" if kind == "junk" else title,
                dashed=kind == "junk",
            )
    return save_png(figure, path)


def save_attention_maps(
    images: Tensor,
    masks: Tensor,
    path: str | Path,
    *,
    titles: Sequence[str] | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Path:
    r"""Save a PNG of attention heat maps: each image above its mask laid over it.

    Args:
        images: ``(n, 3, H, W)`` normalised images.
        masks: ``(n, 1, h, w)`` masks in ``[0, 1]`` (any ``h, w``: upsampled bilinearly).
        path: the PNG file to write.
        titles: ``n`` captions (default: none); the mask's range is added below each.
        mean: normalisation means, see :func:`denormalize`.
        std: normalisation standard deviations.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: ``masks`` not ``(n, 1, h, w)`` for the ``n`` images.
    """
    n, _, height, width = images.shape
    if masks.ndim != 4 or masks.shape[:2] != (n, 1):
        raise ValueError(
            f"masks must have shape ({n}, 1, h, w), one per image, got {tuple(masks.shape)}"
        )
    pictures = denormalize(images, mean, std)
    figure, axes = _grid(2, n)
    for col in range(n):
        low, high = float(masks[col].min()), float(masks[col].max())
        title = titles[col] if titles else ""
        draw_image(axes[0][col], pictures[col], "black", title)
        draw_image(axes[1][col], pictures[col], "black", f"m in [{low:.2f}, {high:.2f}]")
        draw_heat(axes[1][col], masks[col], height, width)
    return save_png(figure, path)


def save_figures(
    model: nn.Module,
    features: EvaluationFeatures,
    query_items: Sequence[ReIDItem],
    gallery_items: Sequence[ReIDItem],
    folder: str | Path,
    *,
    height: int,
    width: int,
    device: str | torch.device,
    num_queries: int = 6,
    top_k: int = 8,
    thresholds: tuple[float, float] = (0.5, 0.75),
    boundary: str = "paper",
) -> list[Path]:
    r"""Ranked lists for every evaluation row and attention maps, for a few queries.

    The queries are ``num_queries`` evenly spaced ones (the first and the last included), the
    same in every figure. Writes ``ranked_plain.png`` (no unification),
    ``ranked_unified_<strategy>.png`` per bank of ``features`` (each query against the bank
    slice of its predicted type, named in its caption) and ``attention.png``.

    Args:
        model: the evaluated model (for the attention masks), on ``device``.
        features: the features the metrics came from (:func:`~examples.oamn.extraction.
            extract_for_evaluation`), in the order of the items.
        query_items: the query items, to load the images shown.
        gallery_items: the gallery items.
        folder: the output folder (created).
        height: the model's input height.
        width: the model's input width.
        device: where the attention forward pass runs.
        num_queries: queries shown, ``>= 1``.
        top_k: gallery items per ranked list, ``>= 1`` (at most the gallery size).
        thresholds: grader thresholds for the query types, as in the metrics.
        boundary: threshold boundary convention, as in the metrics.

    Returns:
        The paths written.
    """
    for name, value in (("num_queries", num_queries), ("top_k", top_k)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    query, gallery = features.query, features.gallery
    if len(query) != len(query_items) or len(gallery) != len(gallery_items):
        raise ValueError(
            f"features hold {len(query)} queries and {len(gallery)} gallery items but the item "
            f"lists have {len(query_items)} and {len(gallery_items)}: pass the evaluated items"
        )
    chosen = evenly_spaced(num_queries, len(query))
    query_set = evaluation_images(query_items, height, width, "query")
    query_images = torch.stack([query_set[i][0] for i in chosen.tolist()])
    gallery_set = evaluation_images(gallery_items, height, width, "gallery")
    types = predict_occlusion_type(query.grader_scores[chosen], thresholds, boundary)
    type_names = OCCLUSION_TYPES
    captions = [
        f"query {pid}\n{type_names[t].replace('_', ' ')}"
        for pid, t in zip(query.pids[chosen].tolist(), types.tolist(), strict=True)
    ]
    galleries = {"plain": gallery.features}
    galleries.update({f"unified_{s}": bank[types] for s, bank in features.banks.items()})
    folder = Path(folder)
    written = []
    for key, gallery_features in galleries.items():
        ranked = ranked_indices(query.features[chosen], gallery_features, min(top_k, len(gallery)))
        kinds = [
            match_kinds(
                int(query.pids[q]), int(query.camids[q]), gallery.pids[row], gallery.camids[row]
            )
            for q, row in zip(chosen.tolist(), ranked, strict=True)
        ]
        images = torch.stack(
            [torch.stack([gallery_set[i][0] for i in row.tolist()]) for row in ranked]
        )
        titles = [
            [f"{rank + 1}: {int(gallery.pids[i])}" for rank, i in enumerate(row.tolist())]
            for row in ranked
        ]
        written.append(
            save_ranked_lists(
                query_images,
                images,
                kinds,
                folder / f"ranked_{key}.png",
                query_titles=captions,
                gallery_titles=titles,
            )
        )
    masks = attention_masks(model, query_images, device)
    written.append(
        save_attention_maps(query_images, masks, folder / "attention.png", titles=captions)
    )
    return written


def _grid(rows: int, cols: int) -> tuple[Figure, list[list[Axes]]]:
    """A figure of ``rows x cols`` image cells on the Agg canvas (matplotlib imported here)."""
    figure = new_figure(cols * _CELL_INCHES[0], rows * _CELL_INCHES[1])
    axes = figure.subplots(rows, cols, squeeze=False)
    height = rows * _CELL_INCHES[1]
    # Room for the two-line captions above the first row, whatever the number of rows.
    top = 1 - _CAPTION_INCHES / height
    figure.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=top, wspace=0.08, hspace=0.3)
    return figure, [list(row) for row in axes]


def draw_image(axes: Axes, image: Tensor, colour: str, title: str, dashed: bool = False) -> None:
    """Draw a ``(3, H, W)`` image in ``[0, 1]`` framed in ``colour``, ticks hidden."""
    axes.imshow(image.permute(1, 2, 0).float().numpy(), interpolation="bilinear")
    axes.set_xticks([])
    axes.set_yticks([])
    for spine in axes.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(3)
        spine.set_linestyle("--" if dashed else "-")
    axes.set_title(title, fontsize=7, color=colour if colour != "black" else "#333333")


def save_png(figure: Figure, path: str | Path) -> Path:
    """Write ``figure`` as a PNG atomically: drawn in memory, then written whole or not at all
    (:func:`~examples.oamn.run_files.write_atomic`; an error names ``path``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    png = io.BytesIO()
    figure.savefig(png, format="png", facecolor="white")
    write_atomic(path, png.getvalue())
    return path


def new_figure(width_inches: float, height_inches: float) -> Figure:
    """An empty figure of that size on the Agg canvas (matplotlib imported here)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_inches, height_inches), dpi=_DPI)
    FigureCanvasAgg(figure)
    return figure


def evaluation_images(items: Sequence[ReIDItem], height: int, width: int, split: str) -> Dataset:
    """The images of ``items`` exactly as the model saw them (the test loader's transform):
    item ``i`` starts with image ``i``, normalised, ``(3, height, width)``."""
    return ImageDataset(items, test_transform(height, width), split=split)


def evenly_spaced(count: int, total: int) -> Tensor:
    """``min(count, total)`` int64 indices evenly spaced over ``range(total)``, the first and the
    last included (``total >= 1``)."""
    return torch.linspace(0, total - 1, min(count, total)).round().long()


def draw_heat(axes: Axes, heat: Tensor, height: int, width: int) -> None:
    """Lay a ``(1, h, w)`` map in ``[0, 1]`` over the image of ``axes``, bilinearly upsampled to
    ``height x width``, as a heat map on a fixed 0-1 scale."""
    upsampled = F.interpolate(heat[None].float(), size=(height, width), mode="bilinear")
    axes.imshow(upsampled[0, 0].numpy(), cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)
