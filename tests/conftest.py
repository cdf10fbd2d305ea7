"""Fixtures shared by the whole suite."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

#: Real ReID images live beside the repository, never inside it (their licences forbid it).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here"),
    ),
]


@pytest.fixture
def market_mini() -> Path:
    """The Market-1501 subset in ../shared/data, or a skip that says why."""
    root = SHARED_DATA / "market1501_mini"
    if not root.is_dir():
        pytest.skip(f"real images not found at {root} (the shared data folder is absent)")
    return root


@pytest.fixture
def one_thread():
    """One intra-op torch thread for the test (modules use it with ``pytestmark``): the suite
    shares 2 cores with other runs, where two threads per process oversubscribe them (several
    times slower for small operations), and CPU results that must match a subprocess or a
    checkpoint depend on the count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
