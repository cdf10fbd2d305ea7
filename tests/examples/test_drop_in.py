"""examples/resnet50_drop_in.py: a user's ResNet-50 with every OAMN part, trained and evaluated."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from examples import resnet50_drop_in as drop_in
from oamn.reid_eval import RankMetrics, evaluate_features

pytestmark = pytest.mark.usefixtures("one_thread")


def test_training_moves_the_oamn_parts_and_evaluation_ranks(tiny_market: Path) -> None:
    torch.manual_seed(0)
    size = (64, 32)
    images, pids, _ = drop_in.read_folder(tiny_market / "bounding_box_train", size, None)
    pids = pids.unique(return_inverse=True)[1]
    model = drop_in.ResNet50ReID(int(pids.max()) + 1, (4, 2), weights=None)
    assert model.mask.attention.spatial_size is None  # built at the first batch
    with torch.no_grad():
        model.eval()(images[:2])
    assert model.mask.attention.spatial_size == (4, 2)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    loss = drop_in.train(model, images, pids, steps=2, num_ids=3)
    assert 0 < loss < float("inf")
    for part in ("mask.attention.W_spatial.0.weight", "grader.2.weight", "layer4.0.conv1.weight"):
        assert not torch.equal(dict(model.named_parameters())[part], before[part]), part

    query = drop_in.read_folder(tiny_market / "query", size, None)
    gallery = drop_in.read_folder(tiny_market / "bounding_box_test", size, None)
    results = drop_in.evaluate(model, query, gallery)
    assert set(results) == {"plain", "unified"}
    # The plain row is the evaluation of the unoccluded embeddings, written out here.
    with torch.inference_mode():
        features = [model.embed(model.mask(model.encoder(x))[0]) for x, _, _ in (query, gallery)]
    expected = evaluate_features(
        *features, query[1], gallery[1], query[2], gallery[2], metric="cosine"
    )
    torch.testing.assert_close(results["plain"].ap, expected.ap, rtol=0, atol=1e-6)
    assert results["unified"].num_valid_queries == expected.num_valid_queries > 0


def test_a_folder_without_market_images_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no Market-1501 images .* in .*empty"):
        drop_in.read_folder(tmp_path / "empty", (64, 32), None)


def test_runs_on_real_images(market_mini: Path, capsys) -> None:
    results = drop_in.main(["--data-root", str(market_mini), "--steps", "2", "--max-images", "64"])
    assert all(isinstance(metrics, RankMetrics) for metrics in results.values())
    assert results["unified"].num_valid_queries > 0
    printed = capsys.readouterr().out
    assert "last training loss" in printed
    assert "unified: R1" in printed
