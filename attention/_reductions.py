"""The reductions of the RGA layers: the paper's 8 where they fit, otherwise the largest that
work, and errors that name the argument to change (see :class:`~oamn.attention.RGASpatial`)."""

from __future__ import annotations

from typing import NamedTuple

# The paper's channel_reduction, spatial_reduction and down_ratio (the authors' defaults).
_PAPER_VALUE = 8


class Reduction(NamedTuple):
    """A reduction argument, ``given`` or ``None`` (automatic): ``count // value`` channels.

    ``channel_reduction`` divides the ``C`` channels (the spatial branch's embeddings, the
    channel branch's relations), ``spatial_reduction`` the ``H*W`` positions (the spatial
    branch's relations, the channel branch's embeddings). ``scored``: a branch is on whose
    scorer reads these ``count // value`` relation channels.
    """

    name: str
    given: int | None
    count: int
    symbol: str
    unit: str
    scored: bool

    def counted(self) -> str:
        return f"{self.symbol}{self.count} {self.unit}"

    def scorer(self) -> str:
        return self.name.removesuffix("_reduction")


def resolve_reductions(*reductions: Reduction, down_ratio: int | None) -> tuple[int, ...]:
    """The reductions' values then ``down_ratio``'s: the given ones (positive ints, checked by
    the layer) checked against their counts, ``None`` chosen by the rule of :class:`RGASpatial`."""
    target = _PAPER_VALUE if down_ratio is None else down_ratio
    values = []
    for reduction in reductions:
        if reduction.given is None:
            needed = max(target - 1, 1) if reduction.scored else 1
            values.append(max(1, min(_PAPER_VALUE, reduction.count // needed)))
            continue
        value = reduction.given
        if reduction.count // value < 1:
            raise ValueError(
                f"{reduction.name}={value} leaves no channels for {reduction.counted()} "
                f"({reduction.count} // {value} = 0): use {reduction.name}<={reduction.count}"
            )
        values.append(value)
    widths = [
        (reduction, reduction.count // value)
        for reduction, value in zip(reductions, values, strict=True)
        if reduction.scored
    ]
    if down_ratio is None:
        down_ratio = min([_PAPER_VALUE, *(1 + width for _, width in widths)])
    for reduction, width in widths:
        if 1 + width < down_ratio:
            raise ValueError(_scorer_error(reduction, width, down_ratio))
    return (*values, down_ratio)


def _scorer_error(reduction: Reduction, width: int, down_ratio: int) -> str:
    """Why ``width`` relation channels leave no hidden channel at ``down_ratio``, blaming the
    argument(s) the user set: an automatic reduction is already as small as it gets."""
    needed = down_ratio - 1
    if reduction.given is None:
        return (
            f"down_ratio={down_ratio} leaves no hidden channels in the {reduction.scorer()} "
            f"scorer: {reduction.counted()} give at most {width} relation channels "
            f"({reduction.name}=1) and down_ratio={down_ratio} needs {needed}; use "
            f"down_ratio<={1 + width}"
        )
    fixes = f"down_ratio<={1 + width}"
    if reduction.count >= needed:
        fixes = f"{reduction.name}<={reduction.count // needed} (or {fixes})"
    else:
        fixes += f" (no {reduction.name} leaves {needed} of {reduction.count})"
    return (
        f"{reduction.name}={reduction.given} leaves {width} relation channels over "
        f"{reduction.counted()}, too few for down_ratio={down_ratio} (the {reduction.scorer()} "
        f"scorer needs {needed}): use {fixes}"
    )
