"""Transforms, ImageDataset and the train / test loaders on a generated tree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from examples.oamn.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageDataset,
    ReIDItem,
    SeededBatchSampler,
    build_test_loader,
    build_train_loader,
    load_dataset,
    train_transform,
)
from examples.oamn.data import test_transform as eval_transform

H, W = 32, 16


@pytest.fixture(scope="module")
def market(tiny_market: Path):
    return load_dataset("market1501", tiny_market)


def _normalised(pixels: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return (pixels.float() / 255 - mean) / std


def _image(seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


# --- transforms ---------------------------------------------------------------------------


def test_test_transform_resizes_and_normalises() -> None:
    image = _image()
    out = eval_transform(H, W)(image)
    assert out.dtype == torch.float32
    assert type(out) is torch.Tensor
    # Same size: resizing is the identity, so the output is the normalisation written by hand.
    expected = _normalised(torch.from_numpy(np.array(image)).permute(2, 0, 1))
    torch.testing.assert_close(out, expected)
    assert eval_transform(2 * H, W)(image).shape == (3, 2 * H, W)


def test_train_transform_flip_only() -> None:
    image = _image()
    flipped = train_transform(H, W, pad=0, flip_prob=1.0)(image)
    torch.testing.assert_close(flipped, eval_transform(H, W)(image).flip(-1))
    unchanged = train_transform(H, W, pad=0, flip_prob=0.0)(image)
    torch.testing.assert_close(unchanged, eval_transform(H, W)(image))


def test_train_transform_crop_is_a_window_of_the_padded_image() -> None:
    image = _image()
    pad = 3
    padded = torch.nn.functional.pad(torch.from_numpy(np.array(image)).permute(2, 0, 1), [pad] * 4)
    windows = {
        (dy, dx): _normalised(padded[:, dy : dy + H, dx : dx + W])
        for dy in range(2 * pad + 1)
        for dx in range(2 * pad + 1)
    }
    torch.manual_seed(0)
    offsets = set()
    for _ in range(30):
        out = train_transform(H, W, pad=pad, flip_prob=0.0)(image)
        found = [key for key, window in windows.items() if torch.allclose(out, window, atol=1e-5)]
        assert len(found) == 1
        offsets.add(found[0])
    assert len(offsets) > 5  # the crop moves


def test_train_transform_with_rotation_keeps_the_shape() -> None:
    out = train_transform(H, W, rotation=5.0)(_image())
    assert out.shape == (3, H, W)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"height": 0}, "height must be a positive int"),
        ({"width": 2.5}, "width must be a positive int"),
        ({"pad": -1}, "pad must be an int >= 0"),
        ({"flip_prob": 1.5}, r"flip_prob must be in \[0, 1\]"),
        ({"rotation": -5.0}, "rotation must be >= 0"),
        ({"mean": (0.5, 0.5)}, "mean must have 3 values"),
        ({"std": (0.2, 0.0, 0.2)}, "std must be positive"),
    ],
)
def test_transform_errors(kwargs, match) -> None:
    arguments = {"height": H, "width": W, **kwargs}
    with pytest.raises(ValueError, match=match):
        train_transform(**arguments)


# --- ImageDataset -------------------------------------------------------------------------


def test_image_dataset_item(market) -> None:
    dataset = ImageDataset(market.query, eval_transform(H, W))
    image, pid, camid, index = dataset[4]
    assert (pid, camid, index) == (market.query[4].pid, market.query[4].camid, 4)
    with Image.open(market.query[4].path) as file:
        torch.testing.assert_close(image, eval_transform(H, W)(file.convert("RGB")))
    assert len(dataset) == len(market.query)
    assert dataset[-1][3] == len(market.query) - 1


def test_seeded_item_is_reproducible_and_leaves_global_rng_alone(market) -> None:
    dataset = ImageDataset(market.train, train_transform(H, W))
    state = torch.get_rng_state()
    first = dataset[(3, 12345)][0]
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(dataset[(3, 12345)][0], first)
    others = [dataset[(3, seed)][0] for seed in range(8)]
    assert any(not torch.equal(other, first) for other in others)


def test_image_dataset_errors(market) -> None:
    with pytest.raises(ValueError, match="items is empty"):
        ImageDataset([], eval_transform(H, W))
    with pytest.raises(TypeError, match="items must hold ReIDItem records"):
        ImageDataset([("a.jpg", 1, 1)], eval_transform(H, W))
    with pytest.raises(TypeError, match="transform must be callable"):
        ImageDataset(market.query, "resize")
    with pytest.raises(IndexError, match="index 18 out of range for 18 images"):
        ImageDataset(market.query, eval_transform(H, W))[18]


# --- loaders ------------------------------------------------------------------------------


def _epoch_batches(loader, epoch: int) -> list[tuple[torch.Tensor, ...]]:
    loader.batch_sampler.set_epoch(epoch)
    return list(loader)


def test_train_loader_batches(market) -> None:
    loader = build_train_loader(
        market.train, H, W, ids_per_batch=3, instances_per_id=2, seed=0, workers=0
    )
    assert loader.pin_memory == torch.cuda.is_available()
    batches = _epoch_batches(loader, 0)
    assert len(batches) == len(loader) == 6  # 6 ids x 3 chunks of 2 / 3 ids per batch
    for images, pids, camids, indices in batches:
        assert images.shape == (6, 3, H, W)
        assert images.dtype == torch.float32
        assert pids.tolist() == [market.train[i].pid for i in indices.tolist()]
        assert camids.tolist() == [market.train[i].camid for i in indices.tolist()]
        assert len(set(pids[::2].tolist())) == 3
        assert torch.equal(pids[::2], pids[1::2])


def test_train_loader_same_pixels_with_any_worker_count_and_after_resume(market) -> None:
    def loader(workers: int):
        return build_train_loader(market.train, H, W, 3, 2, seed=5, workers=workers)

    in_process = loader(0)
    reference = [_epoch_batches(in_process, epoch) for epoch in (0, 1)]
    with_workers = loader(2)
    assert with_workers.persistent_workers
    for epoch in (0, 1):
        for got, want in zip(_epoch_batches(with_workers, epoch), reference[epoch], strict=True):
            for got_part, want_part in zip(got, want, strict=True):
                assert torch.equal(got_part, want_part)
    # A fresh loader set to epoch 1 (a resumed run) repeats epoch 1 exactly.
    resumed = _epoch_batches(loader(0), 1)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(resumed, reference[1], strict=True))
    assert not torch.equal(reference[0][0][0], reference[1][0][0])


def test_train_loader_shards(market) -> None:
    shards = [
        build_train_loader(market.train, H, W, 3, 2, seed=0, workers=0, num_replicas=2, rank=r)
        for r in range(2)
    ]
    indices = [[batch[3].tolist() for batch in _epoch_batches(shard, 0)] for shard in shards]
    assert len(indices[0]) == len(indices[1]) == 3
    single = _single_process_indices(market)
    assert [indices[i % 2][i // 2] for i in range(6)] == single


def _single_process_indices(market) -> list[list[int]]:
    loader = build_train_loader(market.train, H, W, 3, 2, seed=0, workers=0)
    return [batch[3].tolist() for batch in _epoch_batches(loader, 0)]


def test_test_loader_keeps_order_and_values(market) -> None:
    loader = build_test_loader(market.gallery, H, W, batch_size=16, workers=0)
    batches = list(loader)
    assert [len(batch[0]) for batch in batches] == [16, 16, 8]
    pids = torch.cat([batch[1] for batch in batches])
    assert pids.tolist() == [item.pid for item in market.gallery]
    assert torch.cat([batch[3] for batch in batches]).tolist() == list(range(40))
    dataset = ImageDataset(market.gallery, eval_transform(H, W))
    assert torch.equal(batches[2][0][-1], dataset[39][0])
    assert all(torch.equal(a[0], b[0]) for a, b in zip(list(loader), batches, strict=True))


def test_loader_errors(market) -> None:
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        build_test_loader(market.query, H, W, batch_size=0)
    with pytest.raises(ValueError, match="workers must be an int >= 0"):
        build_test_loader(market.query, H, W, workers=-1)
    with pytest.raises(ValueError, match="ids_per_batch=7 exceeds the 6 identities"):
        build_train_loader(market.train, H, W, 7, 2, seed=0, workers=0)
    with pytest.raises(ValueError, match="seed must be an int >= 0"):
        SeededBatchSampler([[0]], seed=-2)


def test_seeded_batch_sampler_gives_repeats_their_own_seed() -> None:
    batches = list(SeededBatchSampler([[4, 4, 4]], seed=1))
    seeds = [seed for _, seed in batches[0]]
    assert len(set(seeds)) == 3
    assert [index for index, _ in batches[0]] == [4, 4, 4]


def test_items_must_be_reid_items() -> None:
    item = ReIDItem(Path("/nowhere.jpg"), 0, 0)
    with pytest.raises(FileNotFoundError):
        ImageDataset([item], eval_transform(H, W))[0]
