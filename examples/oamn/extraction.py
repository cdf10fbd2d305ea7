r"""Batched feature extraction of a trained OAMN model: query and gallery features, gallery banks.

The model is anything with OAMN's inference interface (see :class:`examples.oamn.model.OAMN`):

* ``model.extract(images) -> (features (B, D), grader_scores (B, 4) or (B, 9))``;
* ``model.gallery_bank(images, strategy, image_fill) -> (9, B, D)``, the features of each image
  under the 9 occlusion types (README convention: 0 none, 1-4 half top/bottom/left/right, 5-8
  quarter top/bottom/left/right).

A loader yields ``(images, pids, camids, ...)`` batches (:func:`examples.oamn.data.
build_test_loader` does), in the order of its items. Every forward pass runs in eval mode under
:func:`torch.inference_mode` (:func:`evaluation_mode`, the model's mode restored after), under
the autocast of the ``amp`` mode (:mod:`examples.oamn.precision`). Everything returned lives on
the CPU in float32, whatever the device and autocast dtype of the forward passes.

:func:`extract_for_evaluation` gathers what the metrics (:mod:`examples.oamn.reporting`) are
computed from, as an :class:`~examples.oamn.evaluation_settings.EvaluationSettings` asks: the
query and gallery features and, per bank strategy (:data:`oamn.reid_eval.BANK_STRATEGIES`, read
from a command line by :func:`~examples.oamn.evaluation_settings.parse_strategies`), the
gallery's bank and the queries' own (for the two-sided rows).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .data import IMAGENET_MEAN, IMAGENET_STD, ReIDItem, build_test_loader
from .evaluation_settings import EvaluationSettings, check_strategies
from .precision import autocast, resolve_amp

__all__ = [
    "EvaluationFeatures",
    "FeatureSet",
    "evaluation_mode",
    "extract_features",
    "extract_for_evaluation",
    "extract_gallery_bank",
]


@dataclass(frozen=True)
class FeatureSet:
    """Features of a list of images, in the loader's order, on the CPU.

    Attributes:
        features: ``(N, D)`` float32, the model's test features (L2-normalised by OAMN).
        grader_scores: ``(N, 4)`` float32 occlusion-grader softmax, columns top, bottom, left,
            right; ``(N, 9)`` for a 9-way grader, columns none and the 8 types in type order.
        pids: ``(N,)`` int64 identities as the loader gave them.
        camids: ``(N,)`` int64 camera ids.
    """

    features: Tensor
    grader_scores: Tensor
    pids: Tensor
    camids: Tensor

    def __post_init__(self) -> None:
        lengths = [len(t) for t in (self.features, self.grader_scores, self.pids, self.camids)]
        if len(set(lengths)) != 1:
            raise ValueError(
                "features, grader_scores, pids and camids must have one row per image, got "
                f"lengths {lengths}"
            )

    def __len__(self) -> int:
        return len(self.pids)


def extract_features(
    model: nn.Module,
    loader: Iterable[Sequence[Tensor]],
    device: str | torch.device,
    amp: str | None = None,
    progress: bool = True,
) -> FeatureSet:
    r"""Features and grader scores of every image of ``loader``, batch by batch, in its order.

    Runs ``model.extract`` under :func:`torch.inference_mode` with the model in eval mode (its
    previous train/eval mode is restored afterwards, so a training loop can validate midway).

    Args:
        model: an OAMN model (the bare module, not a DDP wrapper), already on ``device``.
        loader: yields ``(images (B, 3, H, W) float, pids (B,), camids (B,), ...)`` batches;
            extra items (e.g. the dataset indices) are ignored.
        device: where the forward passes run; batches move there with ``non_blocking=True``
            (fast from a loader with ``pin_memory=True``).
        amp: ``None`` / ``"none"`` (default: no autocast), ``"bf16"``, ``"fp16"`` (CUDA
            only) or ``"auto"`` (:mod:`~examples.oamn.precision`) to run the forward passes
            under :func:`torch.autocast`.
        progress: show a tqdm progress bar.

    Returns:
        The :class:`FeatureSet`, float32 features and scores on the CPU.

    Raises:
        TypeError: ``model`` lacks ``extract`` or a batch is not a sequence of tensors.
        ValueError: an unknown ``amp``, ``"fp16"`` off CUDA, or an empty loader.
        FloatingPointError: a forward pass under autocast gave non-finite features.

    Example:
        >>> class Colour(nn.Module):  # a stand-in with OAMN's interface
        ...     def extract(self, images):
        ...         feats = images.mean((2, 3))
        ...         return feats, torch.full((len(images), 4), 0.25)
        >>> images = torch.rand(5, 3, 8, 4)
        >>> batches = [(images[:3], torch.tensor([1, 1, 2]), torch.tensor([0, 1, 0])),
        ...            (images[3:], torch.tensor([2, 3]), torch.tensor([1, 0]))]
        >>> fs = extract_features(Colour(), batches, "cpu", progress=False)
        >>> fs.features.shape, fs.pids.tolist(), torch.equal(fs.features, images.mean((2, 3)))
        (torch.Size([5, 3]), [1, 1, 2, 2, 3], True)
    """
    _check_method(model, "extract")
    outputs, pids, camids = _map_batches(
        model, loader, device, amp, progress, "features", model.extract
    )
    features, scores = (torch.cat(chunks) for chunks in outputs)
    return FeatureSet(features, scores, pids, camids)


def extract_gallery_bank(
    model: nn.Module,
    loader: Iterable[Sequence[Tensor]],
    strategy: str,
    device: str | torch.device,
    image_fill: float | Sequence[float] | Tensor,
    amp: str | None = None,
    progress: bool = True,
) -> Tensor:
    r"""The gallery bank: features of every image of ``loader`` under each occlusion type.

    Runs ``model.gallery_bank(images, strategy, image_fill)`` batch by batch, like
    :func:`extract_features` (inference mode, eval mode restored afterwards, optional autocast).

    Args:
        model: an OAMN model on ``device``.
        loader: yields ``(images, pids, camids, ...)`` batches; only the images are used.
        strategy: one of :data:`oamn.reid_eval.BANK_STRATEGIES`: ``"mask_swap"`` (the
            authors' black-box images, 9 passes), ``"feature"`` (the band zeroed on the
            feature map, one pass) or ``"band"`` (the band removed from ``m * f``, one pass).
        device: where the forward passes run.
        image_fill: the value of the black box in *normalised* image space (``"mask_swap"``):
            a number or one per channel; black is ``-mean / std``.
        amp: ``None``, ``"none"``, ``"bf16"``, ``"fp16"`` (CUDA only) or ``"auto"``.
        progress: show a tqdm progress bar.

    Returns:
        ``(9, G, D)`` float32 on the CPU: ``bank[t, g]`` is gallery item ``g`` (loader order)
        under occlusion type ``t``.

    Raises:
        TypeError: ``model`` lacks ``gallery_bank`` or a batch is malformed.
        ValueError: an unknown ``strategy`` or ``amp``, or an empty loader.

    Example:
        >>> class Colour(nn.Module):
        ...     def gallery_bank(self, images, strategy, image_fill):
        ...         return images.mean((2, 3)).expand(9, -1, -1)
        >>> batches = [(torch.rand(3, 3, 8, 4), torch.arange(3), torch.zeros(3))] * 2
        >>> extract_gallery_bank(Colour(), batches, "feature", "cpu", 0.0, progress=False).shape
        torch.Size([9, 6, 3])
    """
    _check_method(model, "gallery_bank")
    check_strategies([strategy])
    fill = torch.as_tensor(image_fill, dtype=torch.float32, device=device)

    def bank(images: Tensor) -> tuple[Tensor]:
        return (model.gallery_bank(images, strategy, fill),)

    (chunks,), _, _ = _map_batches(model, loader, device, amp, progress, f"bank ({strategy})", bank)
    return torch.cat(chunks, dim=1)


@dataclass(frozen=True)
class EvaluationFeatures:
    """Everything the metrics are computed from: query and gallery features and the banks.

    Attributes:
        query: the queries' :class:`FeatureSet`.
        gallery: the gallery's :class:`FeatureSet` (its features: the "no unification" row).
        banks: ``{strategy: (9, G, D) float32 bank}`` for each strategy evaluated, in order.
        seconds: wall-clock seconds of each extraction: ``"query"``, ``"gallery"``, each
            strategy name (the time to build that gallery bank, image loading included) and
            ``"<strategy>_query"`` for each query bank.
        query_banks: ``{strategy: (9, Q, D) float32 bank}`` of the queries, for the two-sided
            rows (empty: no two-sided rows).
    """

    query: FeatureSet
    gallery: FeatureSet
    banks: dict[str, Tensor] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    query_banks: dict[str, Tensor] = field(default_factory=dict)


def extract_for_evaluation(
    model: nn.Module,
    query_items: Sequence[ReIDItem],
    gallery_items: Sequence[ReIDItem],
    *,
    height: int,
    width: int,
    device: str | torch.device,
    settings: EvaluationSettings,
) -> EvaluationFeatures:
    r"""Query features, gallery features and a gallery bank per strategy, from image items.

    The images go through :func:`examples.oamn.data.build_test_loader` (resize to
    ``height x width``, ImageNet normalisation), so the black box of the ``"mask_swap"`` bank
    is the normalised black ``-IMAGENET_MEAN / IMAGENET_STD``.

    Args:
        model: an OAMN model on ``device``.
        query_items: the query :class:`~examples.oamn.data.ReIDItem` list (non-empty).
        gallery_items: the gallery items (non-empty).
        height: input height the model was trained at.
        width: input width.
        device: where the forward passes run.
        settings: what to extract and how: a bank per ``strategies`` (none when empty), and
            with ``two_sided`` each strategy's bank of the queries too; ``amp``,
            ``batch_size``, ``loader_workers`` and ``progress`` for the forward passes.

    Returns:
        The :class:`EvaluationFeatures`.

    Raises:
        ValueError: empty item lists, or ``amp`` ``"fp16"`` off CUDA.
    """
    amp = resolve_amp(settings.amp, device)
    for name, items in (("query_items", query_items), ("gallery_items", gallery_items)):
        if len(items) == 0:
            raise ValueError(f"{name} is empty; pass the dataset's {name.split('_')[0]} split")
    loading = (settings.batch_size, settings.loader_workers)
    loaders = {
        name: build_test_loader(items, height, width, *loading, split=name)
        for name, items in (("query", query_items), ("gallery", gallery_items))
    }
    progress = settings.progress
    seconds: dict[str, float] = {}
    feature_sets = {}
    for name, loader in loaders.items():
        start = time.perf_counter()
        feature_sets[name] = extract_features(model, loader, device, amp, progress)
        seconds[name] = time.perf_counter() - start
    black = [-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    banks: dict[str, dict[str, Tensor]] = {"gallery": {}, "query": {}}
    for strategy in settings.strategies:
        for split in ("gallery", "query") if settings.two_sided else ("gallery",):
            start = time.perf_counter()
            banks[split][strategy] = extract_gallery_bank(
                model, loaders[split], strategy, device, black, amp, progress
            )
            key = strategy if split == "gallery" else f"{strategy}_query"
            seconds[key] = time.perf_counter() - start
    return EvaluationFeatures(
        feature_sets["query"], feature_sets["gallery"], banks["gallery"], seconds, banks["query"]
    )


@contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode and :func:`torch.inference_mode` inside; the model's previous mode after.

    Example:
        >>> layer = nn.Dropout().train()
        >>> with evaluation_mode(layer):
        ...     layer.training
        False
        >>> layer.training
        True
    """
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def _map_batches(
    model: nn.Module,
    loader: Iterable[Sequence[Tensor]],
    device: str | torch.device,
    amp: str | None,
    progress: bool,
    description: str,
    forward: Callable[[Tensor], Sequence[Tensor]],
) -> tuple[list[list[Tensor]], Tensor, Tensor]:
    """Run ``forward`` on each batch's images in inference and eval mode.

    Returns ``forward``'s outputs as lists of float32 CPU chunks (one list per output) and the
    concatenated int64 pids and camids of the batches.
    """
    device = torch.device(device)
    amp = resolve_amp(amp, device)
    outputs: list[list[Tensor]] = []
    pids, camids = [], []
    with evaluation_mode(model), autocast(device, amp):
        for batch in tqdm(loader, desc=description, disable=not progress, leave=False):
            images, batch_pids, batch_camids = _unpack(batch)
            results = forward(images.to(device, non_blocking=True))
            if not outputs:
                outputs = [[] for _ in results]
            for chunks, result in zip(outputs, results, strict=True):
                chunks.append(result.float().cpu())
            if amp != "none" and not all(bool(chunks[-1].isfinite().all()) for chunks in outputs):
                raise FloatingPointError(
                    f"the model's {description} under amp {amp} are not finite (a bfloat16 or "
                    "float16 overflow); extract with amp 'none' (--amp none)"
                )
            pids.append(torch.as_tensor(batch_pids).long())
            camids.append(torch.as_tensor(batch_camids).long())
    if not pids:
        raise ValueError("the loader yielded no batch; check that its item list is not empty")
    return outputs, torch.cat(pids), torch.cat(camids)


def _unpack(batch: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """``(images, pids, camids)`` of a loader batch, or a TypeError saying what was expected."""
    if not isinstance(batch, Sequence) or len(batch) < 3 or not isinstance(batch[0], Tensor):
        raise TypeError(
            "the loader must yield (images, pids, camids, ...) batches with images a (B, 3, H, W) "
            f"tensor, as build_test_loader does; got {type(batch).__name__}"
        )
    return batch[0], batch[1], batch[2]


def _check_method(model: nn.Module, name: str) -> None:
    if not callable(getattr(model, name, None)):
        raise TypeError(
            f"model must have OAMN's {name}() method (pass the bare OAMN, not a DDP wrapper: "
            f"model.module); got {type(model).__name__}"
        )
