r"""Gradient routing: what each ``routing`` setting detaches, in the model and in the objective.

* ``"paper"``: one backward of ``L1 + L2`` through the whole network; every term reaches every
  parameter it depends on (``L_score`` reaches only the grader, whose input the model always
  detaches).
* ``"official"`` (default; with the scale-invariant mask losses the ``"paper"`` routing
  collapses the features, docs/AWARENESS.md): the authors' code stepped two optimisers, one for
  ``L_mask`` over the mask module only, and discarded the mask losses' gradients into the
  encoder ``E^I``. Here, in one backward, the mask losses read ``f.detach()`` (``L_mask1`` as
  ``(f - f^p).detach() * m^p``, ``L_mask2`` on ``m * f.detach()``), so they reach the mask module
  and not ``E^I``, and the mask module sees ``f.detach()``, so ``E^I`` learns only through
  ``g = m * f``, as in their code. Not reproduced: the two sequential updates (their second step
  saw parameters the first had just changed) and the separate momentum buffers of the two
  optimisers; the mask module here gets the sum of its mask-loss and ``L1``-through-``g``
  gradients in one step, with one momentum buffer.

The model factory (:func:`~examples.oamn.model_factory.build_model`) reads
:attr:`Routing.mask_input_detached`, the objective (:mod:`~examples.oamn.objective`)
:attr:`Routing.mask_losses_detach_features`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ROUTINGS", "Routing"]


@dataclass(frozen=True)
class Routing:
    """The detachments of one routing setting.

    Attributes:
        mask_input_detached: the mask module sees ``f.detach()`` (the model's
            ``detach_mask_input``).
        mask_losses_detach_features: the mask losses read ``f.detach()`` and ``m * f.detach()``
            instead of ``f`` and ``g``.
    """

    mask_input_detached: bool
    mask_losses_detach_features: bool


#: The routing settings by name (the choices of ``--routing``).
ROUTINGS: dict[str, Routing] = {
    "paper": Routing(mask_input_detached=False, mask_losses_detach_features=False),
    "official": Routing(mask_input_detached=True, mask_losses_detach_features=True),
}
