"""A stand-in model with OAMN's inference interface and a tiny colour dataset for it.

Identity ``p`` in ``1..3`` is the primary colour ``e_{p-1}`` (red, green, blue). Queries show
their colour; gallery images show it *rolled* one channel on (``e_p``, so identity 3 is red), as
if every gallery image were occluded in a way only the bank's "half top" slice undoes. So:

* no unification: a query's nearest gallery items are those of the previous identity
  (R1 = 0), the figures of :data:`PLAIN` below;
* unified with the "mask_swap" bank, whose type 1 (half top) un-rolls the gallery colour: a
  query of type 1 ranks perfectly. Blue queries (identity 3) are graded "none" (type 0), so
  they keep their plain ranking: :data:`UNIFIED`;
* the "feature" and "band" banks are the plain features under every type: the plain figures
  again;
* two-sided (the queries' own banks, built by the same ``gallery_bank``): under the
  "mask_swap" bank's type 1 a half-top query is rolled back too (``e_{p-2}``), the un-rolled
  colour of the previous identity, just as its plain colour is that identity's rolled one: the
  same distances as without unification, so the plain figures for every bank.

Gallery layout (in this order): each identity in cameras 2 then 3; one query per identity in
camera 1. Plain distances: query 1 (red) is at 0 from identity 3 (rolled blue = red), then
ties at sqrt 2 in gallery order: ranks of its matches 3, 4; query 2 likewise 3, 4; query 3 has
identity 2 at 0 and identity 1 before its own: ranks 5, 6.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from examples.oamn.data import IMAGENET_MEAN, IMAGENET_STD
from examples.oamn.evaluation_settings import EvaluationSettings

PIDS = (1, 2, 3)
HEIGHT, WIDTH = 32, 16
#: What extract_for_evaluation / evaluate_model run on for the colour market (with the settings
#: of colour_settings).
COLOUR_INPUT = {"height": HEIGHT, "width": WIDTH, "device": "cpu"}
HALF_TOP_SCORES = (0.9, 0.05, 0.03, 0.02)  # top at 0.9 >= 0.75: type 1 (half top)

#: The evaluation rows by default (no synthetic manifest): every strategy one- and two-sided,
#: under the grader's then the located types.
DEFAULT_ROWS = [
    "plain",
    *(
        f"unified_{strategy}{side}{types}"
        for strategy in ("mask_swap", "feature", "band")
        for types in ("", "_located")
        for side in ("", "_two_sided")
    ),
]

_AP = {"q1": (1 / 3 + 2 / 4) / 2, "q3": (1 / 5 + 2 / 6) / 2}
#: Expected plain metrics (also those of the "feature" bank).
PLAIN = {
    "R1": 0.0,
    "R5": 1.0,  # first hits at ranks 3, 3 and 5
    "R10": 1.0,
    "mAP": (2 * _AP["q1"] + _AP["q3"]) / 3,
    "mINP": (2 / 4 + 2 / 4 + 2 / 6) / 3,
}
#: Expected metrics unified with the "mask_swap" bank: queries 1 and 2 perfect, 3 plain.
UNIFIED = {"R1": 2 / 3, "R5": 1.0, "R10": 1.0, "mAP": (2 + _AP["q3"]) / 3, "mINP": (2 + 1 / 3) / 3}


def colour_settings(**changes) -> EvaluationSettings:
    """The colour market's evaluation settings: loaders in the main process, float32, no
    progress bars, no awareness measurement; then ``changes``."""
    plain = {"workers": 0, "amp": "none", "progress": False, "awareness": False}
    return EvaluationSettings(**{**plain, **changes})


def colour(pid: int, gallery: bool) -> tuple[int, int, int]:
    """The RGB colour of an image of identity ``pid``."""
    channel = (pid - 1 + int(gallery)) % 3
    return tuple(255 * int(c == channel) for c in range(3))


class ColourModel(nn.Module):
    """Features = the image's mean colour; see the module docstring for the bank and grader."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # gives .to() and a device something to move
        self.fills: list[Tensor] = []
        self.batch_sizes: list[int] = []

    def colours(self, images: Tensor) -> Tensor:
        """``(N, 3)`` de-normalised mean colours rounded to {0, 1} (JPEG noise removed)."""
        mean = torch.tensor(IMAGENET_MEAN, device=images.device)
        std = torch.tensor(IMAGENET_STD, device=images.device)
        return (images.mean((2, 3)) * std + mean).round()

    def scores(self, images: Tensor) -> Tensor:
        """``(N, 4)`` grader scores: uniform (type 0) for blue images, else half top."""
        blue = self.colours(images)[:, 2:] == 1
        half_top = torch.tensor(HALF_TOP_SCORES, device=images.device).expand(len(images), 4)
        return torch.where(blue, torch.full_like(half_top, 0.25), half_top)

    def extract(self, images: Tensor) -> tuple[Tensor, Tensor]:
        self.batch_sizes.append(len(images))
        return self.colours(images), self.scores(images)

    def gallery_bank(self, images: Tensor, strategy: str, image_fill: Tensor) -> Tensor:
        self.fills.append(image_fill)
        plain = self.colours(images)
        bank = plain.expand(9, -1, -1).clone()
        if strategy == "mask_swap":
            bank[1] = plain.roll(-1, dims=1)
        return bank

    def forward(self, images: Tensor) -> SimpleNamespace:
        """OAMN's forward outputs that the attention figure and the awareness read."""
        masks = F.avg_pool2d(images[:, :1], 4).sigmoid()
        return SimpleNamespace(m=masks, grader_scores=self.scores(images))


def market_name(pid: int, camera: int, frame: int) -> str:
    """A Market-1501 file name (cameras 1-based in the name)."""
    return f"{pid:04d}_c{camera}s1_{frame:06d}_00.jpg"


def write_colour_market(root: Path) -> Path:
    """A Market-1501 tree of solid-colour JPEGs (see the module docstring); returns ``root``."""
    layout = {
        "query": [(pid, 1, False) for pid in PIDS],
        "bounding_box_test": [(pid, cam, True) for pid in PIDS for cam in (2, 3)],
        "bounding_box_train": [(pid, cam, False) for pid in (7, 8) for cam in (1, 2)],
    }
    for folder, images in layout.items():
        (root / folder).mkdir(parents=True)
        for frame, (pid, camera, gallery) in enumerate(images):
            image = Image.new("RGB", (WIDTH, HEIGHT), colour(pid, gallery))
            image.save(root / folder / market_name(pid, camera, frame), quality=95)
    return root
