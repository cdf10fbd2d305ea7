"""The training configuration: every hyper-parameter and its default, checked, as JSON.

:class:`TrainConfig` holds everything a run depends on. Its defaults are the paper's training
recipe (docs/METHOD.md §7: ResNet-50 split after layer3, 256x128, 32 ids x 2 images, SGD
Nesterov, warm-up to 0.1 over 10 epochs then steps at 17 and 24, 30 epochs, lambda_2..4 =
0.5 / 1 / 1, margin 0.5) with this project's remedies (docs/METHOD.md §10);
:data:`RECIPES` holds the paper's and the authors' settings of those fields. Which fields shape
the model and which a resumed run may change are listed here too (:data:`ARCHITECTURE_FIELDS`,
:data:`RUN_ONLY_FIELDS`). The command line is generated from the fields in
:mod:`~examples.oamn.config_cli`, the model built in
:func:`~examples.oamn.model_factory.build_model`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oamn.occlusion_aug import AREAS, BAND_LOCATIONS

from .config_checks import check_config
from .dataclass_cli import normalize_fields, option, option_flag
from .model import BACKBONES, GRADER_HEADS, GRADERS, POOLINGS, STAGES
from .precision import AMP_MODES
from .routing import ROUTINGS
from .run_files import write_json

__all__ = [
    "ARCHITECTURE_FIELDS",
    "MASK_LOSS_SCALES",
    "RECIPES",
    "RUN_ONLY_FIELDS",
    "TrainConfig",
    "config_differences",
    "read_settings",
    "resume_differences",
]

#: Mask losses as printed (``"paper"``), or scale-normalised (``"invariant"``, see
#: ``oamn.losses.mask``).
MASK_LOSS_SCALES = ("paper", "invariant")

#: The fields that differ from the defaults in the paper's and in the authors' setting (the
#: command line's ``--recipe``; docs/METHOD.md §10): the mask losses as printed with the paper's
#: lambda_1, the authors' pooled grader, and one backward through everything (``"paper"``) or
#: the mask losses kept out of the encoder (``"authors"``, the defaults' routing).
RECIPES: dict[str, dict[str, Any]] = {
    "paper": {
        "mask_loss_scale": "paper",
        "lambda_mask": 5.0,
        "grader": "pooled",
        "routing": "paper",
    },
    "authors": {
        "mask_loss_scale": "paper",
        "lambda_mask": 5.0,
        "grader": "pooled",
        "routing": "official",
    },
}


@dataclass
class TrainConfig:
    r"""Every setting of an OAMN training run. The defaults are the paper's recipe
    (docs/METHOD.md §7) with the remedies that make the mask and the grader work
    (docs/AWARENESS.md): ``mask_loss_scale="invariant"``, ``lambda_mask=1``,
    ``routing="official"`` and ``grader="feature_profiles"``. The paper's and the authors'
    settings of these fields are :data:`RECIPES`, e.g.
    ``TrainConfig(**RECIPES["paper"])``.

    Table 6 of the paper (ablation on Occluded-Duke) is one switch per row: baseline
    ``occlusion=False`` (the batch is the ``B`` holistic images only; ``L_mask`` and ``L_score``
    need occluded copies and are skipped, and the triplet loss is the plain batch-hard one);
    ``+OA`` adds ``occlusion`` with ``grouped_triplet=False, loss_mask=False,
    loss_score=False``; ``+grouped triplet`` sets ``grouped_triplet``; ``+L_mask`` sets
    ``loss_mask``; ``loss_score`` trains the grader that occlusion unification needs.
    Table 3 (occlusion types) is ``occlusion_locations`` and ``occlusion_areas``.

    Gradient routing (``routing``): ``"paper"`` is one backward of ``L1 + L2`` through the
    whole network (``L_score`` reaches only the grader, whose input the model detaches).
    ``"official"`` (default) emulates the authors' two optimisers in one backward: the mask
    losses read ``f.detach()`` so they update the mask module only, and the mask module sees
    ``f.detach()`` (the model's ``detach_mask_input``), so the encoder learns only through
    ``g = m * f``; see :mod:`examples.oamn.objective` for what this does and does not reproduce.

    All values are checked on construction (:mod:`~examples.oamn.config_checks`); a bad one
    raises ``ValueError`` naming the field and its command-line option.

    Example:
        >>> config = TrainConfig(backbone="resnet18", epochs=2)
        >>> config.lr, config.lr_steps, config.occlusion_locations
        (0.1, (17, 24), ('top', 'bottom', 'left', 'right'))
        >>> TrainConfig.from_dict(config.to_dict()) == config
        True
    """

    # Data.
    dataset: str = option("market1501", "dataset layout (see examples.oamn.data.DATASETS)")
    data_root: str | None = option(None, "dataset root folder (required to train)")
    height: int = option(256, "input image height in pixels")
    width: int = option(128, "input image width in pixels")
    ids_per_batch: int = option(32, "P: distinct identities per batch (per process)")
    instances_per_id: int = option(2, "K: images per identity in a batch")
    workers: int = option(4, "data-loading worker processes (0: load in the main process)")
    pad: int = option(10, "zero padding in pixels before the random crop back to height x width")
    flip_prob: float = option(0.5, "probability of a horizontal flip")
    rotation: float = option(
        0.0, "random rotation range in degrees (the authors' code used 5; the paper states none)"
    )
    val_ids: float = option(
        0.0,
        "training identities held out for validation: a count (>= 1) or a fraction (< 1); "
        "0 trains on all identities without validation, as the paper does",
    )
    val_every: int = option(5, "validate every N epochs (and after the last epoch)")
    val_batch_size: int = option(128, "batch size of validation feature extraction")
    # Model.
    backbone: str = option("resnet50", "torchvision backbone", BACKBONES)
    split_after: str = option("layer3", "backbone stage after which the mask module sits", STAGES)
    last_stride: int = option(2, "stride of the backbone's last stage (1 or 2)")
    weights: str | None = option(
        None,
        "ImageNet weights of the backbone: a local state-dict file, or a torchvision weight name "
        "such as IMAGENET1K_V1, DEFAULT or ResNet50_Weights.IMAGENET1K_V2 (read from the torch "
        "hub cache, downloaded into it when online); none: random initialisation",
    )
    pooling: str = option("max", "global pooling of the head", POOLINGS)
    dropout: float = option(0.5, "dropout probability before the classifier")
    mask_module: bool = option(True, "use the attention mask module (off: m = 1)")
    mask_spatial_reduction: int | None = option(
        None,
        "RGA-S spatial_reduction (none: automatic, the paper's 8 where it fits, else the "
        "largest that works, e.g. 4 for the 8x4 map at 128x64)",
    )
    mask_down_ratio: int | None = option(
        None, "RGA-S down_ratio (none: automatic, 8 unless the feature map is tiny)"
    )
    grader: str = option(
        "feature_profiles",
        "occlusion grader: feature_profiles (row and column profiles of f / rms(f): sees where, "
        "blind to the mask), profiles (of g / rms(g)), profiles_mlp, or pooled (the authors' "
        "GAP of g, blinded by a collapsed mask; see docs/AWARENESS.md)",
        GRADERS,
    )
    grader_none_weight: float = option(
        1.0,
        "test time, 9-way grader: weight of its 'none' probability before renormalising (a "
        "prior shift; its 'none' is learnt from training images, some of them occluded); "
        "chosen on the validation identities' labelled occluders",
    )
    grader_head: str = option(
        "locations",
        "grader output: locations (the paper's 4 scores read by eq. 8's thresholds) or types "
        "(9 classes, none and the 8 occlusion types, trained by cross-entropy on holistic and "
        "occluded views)",
        tuple(GRADER_HEADS),
    )
    # Occlusion augmentation (paper §3.1, Table 3).
    occlusion: bool = option(True, "occlusion augmentation: 4 occluded copies per image")
    occlusion_locations: tuple[str, ...] = option(
        BAND_LOCATIONS, f"occlusion locations, a comma list of {','.join(BAND_LOCATIONS)}"
    )
    occlusion_areas: tuple[float, ...] = option(AREAS, "occlusion band areas, comma list")
    occluders: str = option(
        "bands",
        "occluders of the augmentation: bands (the paper's: a corner patch of another image "
        "stretched over a half or quarter band), objects (another identity's whole image "
        "squeezed into a shape of depth 0.2-0.6, extent 0.5-1 of the side and ragged edge, "
        "labelled with the nearest band; oamn.occlusion_aug.ObjectOcclusion) or people (the "
        "same shapes showing another identity at the image's own scale, as a pedestrian beside "
        "or in front: ObjectOcclusion(content='unscaled'))",
        ("bands", "objects", "people"),
    )
    # Objective (paper §3.2-3.5).
    lambda_mask: float = option(
        1.0, "lambda_1, weight of L_mask (the paper's 5 with --mask-loss-scale paper)"
    )
    lambda_triplet: float = option(0.5, "lambda_2, weight of the triplet loss")
    lambda_id: float = option(1.0, "lambda_3, weight of the identity loss")
    lambda_score: float = option(1.0, "lambda_4, weight of the grader loss L_score")
    lambda_visibility: float = option(
        0.0,
        "weight of the mask's supervision by the augmentation's occluded pixels (BCE of m "
        "against each cell's visible fraction, oamn.losses.mask_visibility_loss; not in the "
        "paper; 0: off)",
    )
    mask_alpha1: float = option(1.0, "alpha_1, weight of L_mask1 inside L_mask")
    mask_alpha2: float = option(1.0, "alpha_2, weight of L_mask2 inside L_mask")
    loss_mask: bool = option(True, "L_mask (needs occlusion and the mask module)")
    loss_triplet: bool = option(True, "the triplet loss")
    grouped_triplet: bool = option(
        True, "mine triplets within each occlusion location (L_tri-g); off: plain batch-hard"
    )
    loss_id: bool = option(True, "the identity (cross-entropy) loss over all 5B logits")
    loss_score: bool = option(True, "the grader loss L_score (needs occlusion)")
    margin: float = option(0.5, "triplet margin")
    label_smoothing: float = option(0.0, "label smoothing of the identity loss")
    mask_reduction: str = option(
        "mean", "reduction of the mask losses (see oamn.losses.mask)", ("mean", "batchmean")
    )
    grader_convention: str = option(
        "paper",
        "grader targets and loss (see oamn.losses.grader_targets)",
        ("paper", "official", "distribution"),
    )
    routing: str = option(
        "official",
        "gradient routing of the mask losses: official (the authors': they train the mask "
        "module only) or paper (through the encoder too)",
        ROUTINGS,
    )
    mask_loss_scale: str = option(
        "invariant",
        "mask losses invariant to the mask's and the features' scale (masks over the holistic "
        "mask's mean), or as printed in the paper (lowered by shrinking the whole mask, see "
        "docs/AWARENESS.md)",
        MASK_LOSS_SCALES,
    )
    # Optimisation (docs/METHOD.md §7).
    epochs: int = option(30, "number of epochs")
    lr: float = option(0.1, "base learning rate (reached at the end of the warm-up)")
    momentum: float = option(0.9, "SGD momentum")
    nesterov: bool = option(True, "Nesterov momentum")
    weight_decay: float = option(5e-4, "weight decay of every parameter")
    lr_mult_backbone: float = option(0.1, "learning-rate multiplier of the backbone")
    lr_mult_mask: float = option(0.1, "learning-rate multiplier of the mask module")
    lr_mult_head: float = option(1.0, "learning-rate multiplier of the grader, neck, classifier")
    warmup_epochs: int = option(10, "epochs of linear warm-up: epoch e < N uses lr*(e+1)/N")
    lr_steps: tuple[int, ...] = option((17, 24), "epochs at which the lr steps, comma list")
    lr_step_values: tuple[float, ...] = option(
        (1e-3, 1e-4), "base lr from each of lr_steps on, comma list"
    )
    # Run.
    seed: int = option(0, "seed of every random draw: all randomness is a function of it")
    device: str = option("auto", "device: auto (cuda when available), cpu, cuda, cuda:N")
    amp: str = option(
        "auto",
        "mixed precision: auto (bf16 where the device has bfloat16 arithmetic: a CPU with AMX or "
        "AVX-512 BF16, a CUDA GPU of compute capability 8 and up; float32 elsewhere; a resumed "
        "run keeps its checkpoint's mode), none (float32), bf16 (CUDA or CPU) or fp16 (CUDA, with "
        "a GradScaler). The run records the mode it resolved to",
        AMP_MODES,
    )
    channels_last: bool = option(
        True,
        "channels_last memory format of the model and its inputs (on a 2-core CPU with bf16, "
        "the default ResNet-50 step is about 4x faster than contiguous float32; docs/SPEED.md)",
    )
    output_dir: str = option("runs/oamn", "run directory (config, logs, checkpoints)")
    resume: str | None = option(None, "checkpoint to resume from (its config is the base)")
    max_steps_per_epoch: int = option(0, "stop each epoch after N steps (0: whole epochs)")
    keep_epoch_checkpoints: bool = option(False, "also keep checkpoint_epoch{N}.pt files")
    overwrite: bool = option(
        False, "replace the run already in --output-dir (its config, logs and checkpoints)"
    )
    verify_images: bool = option(
        True, "decode every image of the dataset before training, to report bad files up front"
    )
    progress: bool = option(True, "show tqdm progress bars")

    def __post_init__(self) -> None:
        normalize_fields(self)
        check_config(self)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as a JSON-compatible dict (tuples become lists)."""
        return {
            name: list(value) if isinstance(value, tuple) else value
            for name, value in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """A configuration from a dict such as :meth:`to_dict`'s; missing keys take defaults.

        Raises:
            ValueError: for a key that is not a field (with the list of valid ones).
        """
        if not isinstance(values, Mapping):
            raise TypeError(f"a configuration must be a mapping, got {type(values).__name__}")
        known = {spec.name for spec in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown configuration keys {unknown}; valid keys: {', '.join(sorted(known))}"
            )
        return cls(**values)

    def save(self, path: str | Path) -> None:
        """Write the configuration as indented, strict JSON, atomically (see
        :mod:`~examples.oamn.run_files`)."""
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """Read a JSON configuration file written by :meth:`save` (or by hand); missing keys
        take defaults."""
        return cls.from_dict(read_settings(path))


#: The settings that shape the model's parameters: a checkpoint's weights fit only a model
#: built with its values of these.
ARCHITECTURE_FIELDS = (
    "backbone", "split_after", "last_stride", "height", "width", "mask_module",
    "mask_spatial_reduction", "mask_down_ratio", "grader", "grader_head",
)  # fmt: skip
#: The settings that change neither the weights a run trains nor its random draws (``device``
#: and ``channels_last`` at most their rounding): a resumed run may give them other values
#: (``epochs`` may also grow, see :func:`resume_differences`).
RUN_ONLY_FIELDS = (
    "data_root", "workers", "val_every", "val_batch_size", "device", "channels_last",
    "output_dir", "resume", "overwrite", "keep_epoch_checkpoints", "verify_images", "progress",
    "grader_none_weight",
)  # fmt: skip


def config_differences(
    reference: TrainConfig, config: TrainConfig, names: Sequence[str], reference_name: str
) -> list[str]:
    """The fields of ``names`` whose values differ, each as ``config``'s command-line option
    with ``reference``'s value in brackets.

    Example:
        >>> config_differences(TrainConfig(), TrainConfig(seed=1, nesterov=False),
        ...                    ("seed", "nesterov", "lr"), "checkpoint")
        ['--seed 1 (checkpoint: --seed 0)', '--no-nesterov (checkpoint: --nesterov)']
    """
    return [
        f"{_option_text(name, getattr(config, name))} "
        f"({reference_name}: {_option_text(name, getattr(reference, name))})"
        for name in names
        if getattr(config, name) != getattr(reference, name)
    ]


def resume_differences(stored: TrainConfig, config: TrainConfig) -> list[str]:
    """The settings of ``config`` that a run resumed from a checkpoint of ``stored`` cannot
    take: every field but :data:`RUN_ONLY_FIELDS`, ``epochs`` when it shrinks, and ``amp``
    unless ``config`` leaves it ``"auto"`` (the resumed run then keeps ``stored``'s mode).

    Example:
        >>> resume_differences(TrainConfig(), TrainConfig(workers=0, epochs=40, lr=0.05))
        ['--lr 0.05 (checkpoint: --lr 0.1)']
    """
    names = [
        spec.name
        for spec in dataclasses.fields(TrainConfig)
        if spec.name not in RUN_ONLY_FIELDS
        and spec.name != "epochs"
        and not (spec.name == "amp" and config.amp == "auto")
    ]
    if config.epochs < stored.epochs:
        names.insert(0, "epochs")
    return config_differences(stored, config, names, "checkpoint")


def _option_text(name: str, value: Any) -> str:
    """How ``value`` of field ``name`` is written on the command line."""
    flag = option_flag(name)
    if isinstance(value, bool):
        return flag if value else "--no-" + flag[2:]
    if isinstance(value, tuple):
        return f"{flag} {','.join(map(str, value))}"
    if isinstance(value, float):
        return f"{flag} {value:g}"  # --val-ids 5, not 5.0
    return f"{flag} {'none' if value is None else value}"


def read_settings(path: str | Path) -> dict[str, Any]:
    """The settings of a JSON configuration file (a JSON object of field names and values).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not JSON, or not a JSON object.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"configuration file {path} does not exist")
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"configuration file {path} is not valid JSON: {error}") from None
    if not isinstance(values, dict):
        raise ValueError(f"configuration file {path} must hold a JSON object of settings")
    return values
