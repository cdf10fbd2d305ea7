"""The OAMN losses (paper §3.2-3.5), each as a pure function and as a small ``nn.Module``.

* :func:`batch_hard_triplet_loss` and :func:`grouped_triplet_loss` (``L_tri-g``, eq. 6): batch-hard
  triplet losses, the latter mining only inside each occlusion-location group, and
  :func:`triplet_loss_details` for the anchors they exclude and the rows they mine;
* :func:`mask_consistency_loss` (``L_mask1``, eq. 2) and :func:`mask_complement_loss`
  (``L_mask2``, eq. 3): the attention-mask constraints;
* :func:`grader_targets` and :func:`grader_loss` (``L_score``, eq. 7): the occlusion grader;
* :func:`mask_visibility_loss`: the mask supervised by the augmentation's known occluders (not
  in the paper).

Where the paper and the authors' code differ (distances, reductions, grader targets), both are
available and documented; each function says which one the paper's loss weights assume.

The identity loss ``L_ide`` (eq. 9) is a cross-entropy over the logits of all images and copies:
use ``torch.nn.CrossEntropyLoss``, whose ``label_smoothing=`` option covers the label-smoothed
variant common in ReID (the authors' code uses plain cross-entropy). It is not re-implemented
here.

Location codes follow the project convention: 0 none, 1 top, 2 bottom, 3 left, 4 right.

Under ``torch.autocast`` (bfloat16 or float16) every loss and :func:`batch_distance_matrix`
computes in float32: autocast is off inside them and 16-bit inputs are widened, so the result
and the gradients they pass back are float32 (a 16-bit distance matrix would blur the hardest
positive and negative). Outside autocast they compute in their inputs' dtype.
"""

from .distances import batch_distance_matrix
from .grader import GraderLoss, grader_loss, grader_targets
from .mask import (
    MaskComplementLoss,
    MaskConsistencyLoss,
    mask_complement_loss,
    mask_consistency_loss,
)
from .triplet import (
    NO_VALID_ANCHOR,
    BatchHardTripletLoss,
    GroupedTripletLoss,
    TripletLossDetails,
    batch_hard_triplet_loss,
    grouped_triplet_loss,
    triplet_loss_details,
)
from .visibility import MaskVisibilityLoss, mask_visibility_loss, visibility_target

__all__ = [
    "NO_VALID_ANCHOR",
    "BatchHardTripletLoss",
    "GraderLoss",
    "GroupedTripletLoss",
    "MaskComplementLoss",
    "MaskConsistencyLoss",
    "MaskVisibilityLoss",
    "TripletLossDetails",
    "batch_distance_matrix",
    "batch_hard_triplet_loss",
    "grader_loss",
    "grader_targets",
    "grouped_triplet_loss",
    "mask_complement_loss",
    "mask_consistency_loss",
    "mask_visibility_loss",
    "triplet_loss_details",
    "visibility_target",
]
