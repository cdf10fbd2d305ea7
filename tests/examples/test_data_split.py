"""split_validation: held-out training identities as a query/gallery protocol."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from examples.oamn.data import ReIDItem, load_dataset, split_validation


def _train(layout: dict[int, dict[int, int]]) -> list[ReIDItem]:
    """Images from ``{pid: {camid: count}}``."""
    return [
        ReIDItem(Path(f"/d/{pid}_{cam}_{i}.jpg"), pid, cam)
        for pid, cams in layout.items()
        for cam, count in cams.items()
        for i in range(count)
    ]


def _check(train, rest, query, gallery, held_out: int) -> None:
    val_ids = {item.pid for item in query + gallery}
    assert len(val_ids) == held_out
    # Validation ids are disjoint from the ids left for training, and no image is lost.
    kept = [item for item in train if item.pid not in val_ids]
    assert [item.path for item in rest] == [item.path for item in kept]
    assert sorted(item.path for item in query + gallery) == sorted(
        item.path for item in train if item.pid in val_ids
    )
    assert sorted({item.pid for item in rest}) == list(range(len({item.pid for item in kept})))
    # One query at most per (id, camera); every query has a cross-camera gallery match.
    assert len({(item.pid, item.camid) for item in query}) == len(query)
    for q in query:
        assert any(g.pid == q.pid and g.camid != q.camid for g in gallery)
    assert {item.pid for item in query} == val_ids


def test_hand_case() -> None:
    layout = {
        10: {1: 2, 2: 1},  # eligible: query c2 (matches c1's second image), c1's query moved
        11: {1: 1, 2: 1, 3: 1},  # not eligible: no camera with 2 images
        12: {1: 5},  # not eligible: one camera
        13: {1: 2, 2: 2},  # eligible: both queries kept
    }
    train = _train(layout)
    rest, query, gallery = split_validation(train, num_ids=2, seed=0)
    _check(train, rest, query, gallery, held_out=2)
    assert Counter((item.pid, item.camid) for item in query) == {(10, 2): 1, (13, 1): 1, (13, 2): 1}
    assert Counter(item.pid for item in gallery) == {10: 2, 13: 2}
    assert [item.pid for item in rest] == [0, 0, 0, 1, 1, 1, 1, 1]


def test_not_enough_eligible_ids() -> None:
    train = _train({1: {1: 2, 2: 1}, 2: {1: 1, 2: 1}, 3: {1: 3}})
    with pytest.raises(ValueError, match="asks for 2 validation identities but only 1"):
        split_validation(train, num_ids=2, seed=0)


def test_deterministic_and_seed_dependent(market_mini: Path) -> None:
    train = load_dataset("market1501", market_mini).train
    first = split_validation(train, num_ids=10, seed=3)
    assert first == split_validation(list(train), num_ids=10, seed=3)
    assert first != split_validation(train, num_ids=10, seed=4)
    _check(train, *first, held_out=10)


@pytest.mark.parametrize(("fraction", "held_out"), [(0.1, 8), (0.5, 40), (0.001, 1)])
def test_fraction(market_mini: Path, fraction: float, held_out: int) -> None:
    train = load_dataset("market1501", market_mini).train
    _check(train, *split_validation(train, num_ids=fraction, seed=0), held_out=held_out)


def test_zero_keeps_everything() -> None:
    train = _train({4: {1: 1}, 2: {1: 1}})
    rest, query, gallery = split_validation(train, num_ids=0, seed=0)
    assert [item.pid for item in rest] == [1, 0]
    assert query == gallery == ()


@pytest.mark.parametrize(
    ("num_ids", "seed", "error", "match"),
    [
        (3, 0, ValueError, "would hold out 3 of the 3 training identities"),
        (-1, 0, ValueError, "num_ids must be >= 0"),
        (1.0, 0, ValueError, r"a float is a fraction of the identities, in \(0, 1\)"),
        ("2", 0, TypeError, "num_ids must be an int or a float"),
        (1, 0.5, TypeError, "seed must be an int"),
    ],
)
def test_errors(num_ids, seed, error, match) -> None:
    train = _train({1: {1: 2, 2: 1}, 2: {1: 2, 2: 1}, 3: {1: 2, 2: 1}})
    with pytest.raises(error, match=match):
        split_validation(train, num_ids=num_ids, seed=seed)


def test_empty_train() -> None:
    with pytest.raises(ValueError, match="train is empty"):
        split_validation([], num_ids=1, seed=0)
