"""The OAMN network: a torchvision backbone split around an RGA-S attention mask.

:class:`OAMN` (forward to an :class:`OAMNOutput`, ``extract`` for test features, ``gallery_bank``
for occlusion unification), the backbones (one :class:`BackboneSpec` each in
:data:`BACKBONE_SPECS`) and their split (:mod:`.backbones`), ImageNet weights from a local file or
a torchvision weight enum (:func:`resolve_backbone_weights`, :func:`load_backbone_weights`) and
the occlusion graders (:mod:`.grader`; the bank strategies are
``oamn.reid_eval.occlusion_bank``'s). The package knows nothing of the training configuration:
:func:`examples.oamn.model_factory.build_model` builds the model a configuration describes.
"""

from .backbones import (
    BACKBONE_SPECS,
    BACKBONES,
    STAGES,
    BackboneSpec,
    BackboneSplit,
    build_torchvision_model,
    split_backbone,
)
from .grader import GRADER_HEADS, GRADERS, build_grader
from .oamn import OAMN, POOLINGS, OAMNOutput
from .weights import CLASSIFIER_PREFIXES, load_backbone_weights, resolve_backbone_weights

__all__ = [
    "BACKBONES",
    "BACKBONE_SPECS",
    "CLASSIFIER_PREFIXES",
    "GRADERS",
    "GRADER_HEADS",
    "OAMN",
    "POOLINGS",
    "STAGES",
    "BackboneSpec",
    "BackboneSplit",
    "OAMNOutput",
    "build_grader",
    "build_torchvision_model",
    "load_backbone_weights",
    "resolve_backbone_weights",
    "split_backbone",
]
