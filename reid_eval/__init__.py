"""Fast exact ReID evaluation: CMC / mAP / mINP, and occlusion-unified ("occlude them all") ranking.

Takes distances or features as torch tensors on any device, numpy arrays or Python lists. Ranks
are exact (a stable sort after junk removal) but computed without an argsort: only the items
that sort before a query's last true match count, and they are keyed, value-sorted or counted
(see :mod:`.ranking`). :func:`rerank` is k-reciprocal re-ranking without an ``(N, N)`` matrix.
:func:`occlusion_bank` builds the per-type features that unification compares, from any model's
parts; :func:`evaluate_unified` (a type per query) and :func:`evaluate_soft_unified` (type
probabilities per query) rank with them. :class:`ReIDEvaluator` accumulates a test set batch by
batch, across ``torch.distributed`` ranks too, and evaluates it in any of these :data:`MODES`.
"""

from .bank import BANK_STRATEGIES, NUM_OCCLUSION_TYPES, band_of_type, occlusion_bank
from .distances import METRICS, pairwise_distance
from .features import evaluate_features, evaluate_soft_unified, evaluate_unified
from .k_reciprocal import rerank
from .metrics import AP_KINDS, REPORTED_RANKS, RankMetrics, evaluate_rank, evaluate_rank_torchreid
from .occlusion_type import BOUNDARIES, SCORE_LOCATIONS, predict_occlusion_type
from .streaming import MODES, ReIDEvaluator

__all__ = [
    "AP_KINDS",
    "BANK_STRATEGIES",
    "BOUNDARIES",
    "METRICS",
    "MODES",
    "NUM_OCCLUSION_TYPES",
    "REPORTED_RANKS",
    "SCORE_LOCATIONS",
    "RankMetrics",
    "ReIDEvaluator",
    "band_of_type",
    "evaluate_features",
    "evaluate_rank",
    "evaluate_rank_torchreid",
    "evaluate_soft_unified",
    "evaluate_unified",
    "occlusion_bank",
    "pairwise_distance",
    "predict_occlusion_type",
    "rerank",
]
