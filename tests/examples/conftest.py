"""Fixtures of the examples tests: tiny generated ReID trees (see fake_data.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.examples.fake_data import make_market_tree

#: The default tiny Market tree: 6 training ids and 6 test ids, 3 cameras, 2 images each,
#: with 2 junk and 2 distractor gallery images.
TINY_MARKET = {"ids": 6, "cams": 3, "per_cam": 2, "junk": 2, "distractors": 2}


@pytest.fixture(scope="session")
def tiny_market(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Market-1501 tree (read-only: copy it before changing it)."""
    return make_market_tree(tmp_path_factory.mktemp("market"), **TINY_MARKET)
