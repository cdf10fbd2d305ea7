"""Image datasets and data loaders; augmentation seeded per sampled position for reproducibility."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader

from .items import ReIDItem
from .sampler import IdentitySampler
from .transforms import test_transform, train_transform
from .verify import read_image

__all__ = ["ImageDataset", "SeededBatchSampler", "build_test_loader", "build_train_loader"]

#: A dataset key: an index, or ``(index, seed)`` to run the transform under that seed.
ItemKey = int | tuple[int, int]


class ImageDataset(torch.utils.data.Dataset):
    """Images of a split, read with Pillow (as RGB) and transformed.

    Args:
        items: the images.
        transform: PIL image -> float32 ``(3, H, W)`` tensor (``train_transform`` /
            ``test_transform``).
        split: name of the split (``"train"``, ``"query"``, ...), given in read errors.

    Raises:
        OSError: from ``dataset[i]``, an image that cannot be read (missing, empty, truncated, not
            an image, decompression bomb); the message names the file, the split and the cause
            (see :func:`~examples.oamn.data.read_image`). ``load_dataset(...,
            verify_images=True)`` finds such files before training.

    ``dataset[i]`` returns ``(image, pid, camid, i)``; ``dataset[(i, seed)]`` does the same
    with the transform run under ``torch``'s CPU generator seeded with ``seed`` (the global
    state is restored afterwards), which is how :class:`SeededBatchSampler` makes the
    augmentation independent of worker count and process history. Batched by the default
    collate: ``(images (B, 3, H, W) float32, pids (B,) int64, camids (B,) int64, indices (B,)
    int64)``.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> path = Path(tempfile.mkdtemp()) / "0002_c1s1_000451_03.jpg"
        >>> Image.new("RGB", (16, 32)).save(path)
        >>> dataset = ImageDataset([ReIDItem(path, 2, 1)], test_transform(32, 16))
        >>> image, pid, camid, index = dataset[0]
        >>> image.shape, pid, camid, index
        (torch.Size([3, 32, 16]), 2, 1, 0)
    """

    def __init__(
        self,
        items: Sequence[ReIDItem],
        transform: Callable[[Image.Image], Tensor],
        *,
        split: str = "unnamed",
    ) -> None:
        self.items = _check_items(items)
        if not callable(transform):
            raise TypeError(f"transform must be callable, got {type(transform).__name__}")
        if not isinstance(split, str):
            raise TypeError(f"split must be a str such as 'train', got {type(split).__name__}")
        self.transform = transform
        self.split = split

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: ItemKey) -> tuple[Tensor, int, int, int]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        if not -len(self.items) <= index < len(self.items):
            raise IndexError(f"index {index} out of range for {len(self.items)} images")
        index %= len(self.items)
        item = self.items[index]
        image = read_image(item.path, self.split)
        if seed is None:
            tensor = self.transform(image)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(seed)
                tensor = self.transform(image)
        return tensor, item.pid, item.camid, index


class SeededBatchSampler(torch.utils.data.Sampler[list[tuple[int, int]]]):
    """Give every index of a batch sampler's batches its own augmentation seed.

    The seeds come from ``numpy.random.default_rng([seed, epoch, rank])``, so the augmented
    pixels of an epoch depend only on ``(seed, epoch, rank)``: the same with 0 or 8 workers,
    persistent or not, and after resuming from a checkpoint. Repeated indices in a batch get
    different seeds, hence different augmentations.

    Args:
        batch_sampler: yields lists of dataset indices; its ``set_epoch`` (if any) is called
            by :meth:`set_epoch`, its ``rank`` attribute (if any) enters the seed.
        seed: base seed, an int >= 0.

    Yields:
        lists of ``(index, seed)`` keys for :class:`ImageDataset`.

    Example:
        >>> batches = SeededBatchSampler([[0, 1], [1, 1]], seed=0)
        >>> [[index for index, _ in batch] for batch in batches]
        [[0, 1], [1, 1]]
    """

    def __init__(self, batch_sampler: Sequence[list[int]] | IdentitySampler, seed: int) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        self.batch_sampler = batch_sampler
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch, for this wrapper and the wrapped sampler."""
        if hasattr(self.batch_sampler, "set_epoch"):
            self.batch_sampler.set_epoch(epoch)
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        rank = getattr(self.batch_sampler, "rank", 0)
        rng = np.random.default_rng([self.seed, self.epoch, rank])
        for batch in self.batch_sampler:
            seeds = rng.integers(0, 2**63 - 1, size=len(batch))
            yield list(zip(batch, seeds.tolist(), strict=True))


def build_train_loader(
    items: Sequence[ReIDItem],
    height: int,
    width: int,
    ids_per_batch: int,
    instances_per_id: int,
    seed: int,
    workers: int = 2,
    num_replicas: int = 1,
    rank: int = 0,
    *,
    transform: Callable[[Image.Image], Tensor] | None = None,
    drop_last: bool = False,
) -> DataLoader:
    """Training loader: :class:`IdentitySampler` batches of :func:`train_transform` images.

    Call ``loader.batch_sampler.set_epoch(epoch)`` before each epoch: batches and augmentation
    are then a function of ``(seed, epoch, rank)`` only (see :class:`SeededBatchSampler`).

    Args:
        items: training images, identities relabelled ``0..n-1`` (no junk).
        height: image height after the transform.
        width: image width after the transform.
        ids_per_batch: P distinct identities per batch (per rank).
        instances_per_id: K images per identity.
        seed: seed of the batches and of the augmentation.
        workers: loader worker processes (0: load in the main process); they persist between
            epochs.
        num_replicas: number of DDP ranks R (the global batch is ``R * P * K``).
        rank: this process's rank.
        transform: replaces ``train_transform(height, width)``.
        drop_last: see :class:`IdentitySampler`.

    Returns:
        a DataLoader yielding ``(images (P*K, 3, H, W) float32, pids, camids, indices)``, with
        ``pin_memory`` on when CUDA is available.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> folder, items = Path(tempfile.mkdtemp()), []
        >>> for i, pid in enumerate([0, 0, 1, 1, 1]):
        ...     Image.new("RGB", (16, 32), (60 * pid, 0, 0)).save(folder / f"{i}.jpg")
        ...     items.append(ReIDItem(folder / f"{i}.jpg", pid, camid=i % 2))
        >>> loader = build_train_loader(
        ...     items, 32, 16, ids_per_batch=2, instances_per_id=2, seed=0, workers=0)
        >>> loader.batch_sampler.set_epoch(0)
        >>> images, pids, camids, indices = next(iter(loader))
        >>> images.shape, sorted(pids.tolist())
        (torch.Size([4, 3, 32, 16]), [0, 0, 1, 1])
        >>> build_test_loader(items, 32, 16, batch_size=3, workers=0).dataset[4][1:]
        (1, 0, 4)
    """
    dataset = ImageDataset(
        items, train_transform(height, width) if transform is None else transform, split="train"
    )
    sampler = IdentitySampler(
        [item.pid for item in dataset.items],
        ids_per_batch,
        instances_per_id,
        seed=seed,
        num_replicas=num_replicas,
        rank=rank,
        drop_last=drop_last,
    )
    workers = _check_workers(workers)
    return DataLoader(
        dataset,
        batch_sampler=SeededBatchSampler(sampler, seed),
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
    )


def build_test_loader(
    items: Sequence[ReIDItem],
    height: int,
    width: int,
    batch_size: int = 128,
    workers: int = 2,
    *,
    transform: Callable[[Image.Image], Tensor] | None = None,
    split: str = "test",
) -> DataLoader:
    """Evaluation loader: :func:`test_transform` images in the order of ``items``.

    Args:
        items: query or gallery images.
        height: image height after the transform.
        width: image width after the transform.
        batch_size: images per batch, >= 1 (the last batch may be smaller).
        workers: loader worker processes (0: load in the main process).
        transform: replaces ``test_transform(height, width)``.
        split: name of the split (``"query"``, ``"gallery"``), given in read errors.

    Returns:
        a DataLoader yielding ``(images (B, 3, H, W) float32, pids, camids, indices)`` in order.

    Example: see :func:`build_train_loader`.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    workers = _check_workers(workers)
    return DataLoader(
        ImageDataset(
            items, test_transform(height, width) if transform is None else transform, split=split
        ),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
    )


def _check_items(items: Sequence[ReIDItem]) -> tuple[ReIDItem, ...]:
    items = tuple(items)
    if not items:
        raise ValueError("items is empty: pass the images of a non-empty split")
    bad = next((item for item in items if not isinstance(item, ReIDItem)), None)
    if bad is not None:
        raise TypeError(f"items must hold ReIDItem records, got a {type(bad).__name__}")
    return items


def _check_workers(workers: int) -> int:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be an int >= 0, got {workers!r}")
    return workers
