"""Soft unification, the 9-way types and the model-free bank builder."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from oamn.reid_eval import (
    band_of_type,
    evaluate_rank,
    evaluate_soft_unified,
    evaluate_unified,
    occlusion_bank,
    predict_occlusion_type,
)


def _problem(seed: int, queries: int = 40, gallery: int = 60, types: int = 9, dim: int = 6):
    g = torch.Generator().manual_seed(seed)
    q_bank = torch.randn(types, queries, dim, generator=g, dtype=torch.float64)
    g_bank = torch.randn(types, gallery, dim, generator=g, dtype=torch.float64)
    labels = (
        torch.randint(0, 8, (queries,), generator=g),
        torch.randint(0, 8, (gallery,), generator=g),
        torch.zeros(queries, dtype=torch.int64),
        torch.randint(0, 3, (gallery,), generator=g),
    )
    logits = torch.randn(queries, types, generator=g, dtype=torch.float64) * 2
    probs = logits.softmax(dim=1)
    probs[::5] = F.one_hot(torch.arange(0, queries, 5) % types, types).double()  # some sure
    return q_bank, g_bank, labels, probs


@pytest.mark.parametrize("two_sided", [False, True])
def test_equals_a_per_type_reference(two_sided):
    q_bank, g_bank, labels, probs = _problem(0)
    queries = q_bank if two_sided else q_bank[0]
    reference = sum(
        probs[:, t, None] * torch.cdist(q_bank[t] if two_sided else q_bank[0], g_bank[t])
        for t in range(9)
    )
    expected = evaluate_rank(reference, *labels)
    got = evaluate_soft_unified(queries, probs, g_bank, *labels, chunk_size=16)
    assert torch.equal(got.first_match, expected.first_match)
    torch.testing.assert_close(got.ap, expected.ap)


@pytest.mark.parametrize("two_sided", [False, True])
def test_one_hot_probabilities_give_the_hard_rule(two_sided):
    q_bank, g_bank, labels, _ = _problem(1)
    types = torch.randint(0, 9, (40,), generator=torch.Generator().manual_seed(2))
    queries = q_bank if two_sided else q_bank[0]
    hard = evaluate_unified(queries, types, g_bank, *labels)
    soft = evaluate_soft_unified(queries, F.one_hot(types, 9).double(), g_bank, *labels)
    assert torch.equal(soft.first_match, hard.first_match)
    assert torch.equal(soft.ap, hard.ap)


def test_probability_errors():
    q_bank, g_bank, labels, probs = _problem(3)
    with pytest.raises(ValueError, match=r"q_probs must have shape \(Q, T\)"):
        evaluate_soft_unified(q_bank[0], probs[:, :4], g_bank, *labels)
    with pytest.raises(ValueError, match="sum to 1"):
        evaluate_soft_unified(q_bank[0], probs * 2, g_bank, *labels)
    with pytest.raises(ValueError, match="non-negative"):
        evaluate_soft_unified(q_bank[0], probs - 0.5, g_bank, *labels)


def test_nine_column_scores_give_their_argmax():
    scores = torch.tensor([[0.1, 0.0, 0.6, 0, 0, 0.3, 0, 0, 0], [0.9, 0, 0, 0, 0, 0, 0, 0, 0.1]])
    assert predict_occlusion_type(scores).tolist() == [2, 0]
    with pytest.raises(ValueError, match=r"\(N, 9\)"):
        predict_occlusion_type(torch.rand(2, 5))


def test_bank_builder_on_a_user_model():
    """A model that is not the pipeline's: a torchvision-style stem, a mask, a pooled head."""
    torch.manual_seed(0)
    encode = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.ReLU()).eval()
    attend = nn.Sequential(nn.Conv2d(8, 1, 1), nn.Sigmoid()).eval()
    head = nn.Sequential(nn.Conv2d(8, 16, 1), nn.AdaptiveMaxPool2d(1), nn.Flatten()).eval()
    images = torch.randn(5, 3, 32, 16)
    with torch.inference_mode():
        bank = occlusion_bank(images, encode, attend, head, strategy="band")
        f = encode(images)
        plain = F.normalize(head(attend(f) * f), dim=1)
        bottom_half = f * attend(f) * ~band_of_type(2, 8, 4)
        expected_bottom = F.normalize(head(bottom_half), dim=1)
    assert bank.shape == (9, 5, 16)
    assert torch.equal(bank[0], plain)
    torch.testing.assert_close(bank[2], expected_bottom)
    assert not torch.allclose(bank[2], bank[0])
