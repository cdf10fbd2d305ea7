r"""Train OAMN: ``python -m examples.oamn.train --data-root PATH [options]`` (``--help`` lists all).

The options are :class:`~examples.oamn.config.TrainConfig`'s fields
(:mod:`~examples.oamn.config_cli`); the run is :func:`~examples.oamn.training.train`'s, whose
module describes the step, the run directory, resume, reproducibility, mixed precision and
validation. Multi-GPU / multi-node: ``torchrun --nproc_per_node G -m examples.oamn.train ...``
(:mod:`examples.oamn.distributed`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .checkpoint import load_checkpoint
from .command_errors import EXPECTED_ERRORS, exit_on_errors
from .config_cli import config_from_args
from .training import train

__all__ = ["main", "resume_advice"]

_PROG = "python -m examples.oamn.train"


def main(argv: Sequence[str] | None = None) -> None:
    """The command line: resolve the configuration, train, print where the run was written.

    Errors end the command with one line and exit status 1; Ctrl-C ends it with one line
    saying which checkpoint to ``--resume`` from, and exit status 130.
    """
    config = config_from_args(argv)
    with exit_on_errors(_PROG, EXPECTED_ERRORS, lambda: resume_advice(config.output_dir)):
        history = train(config)
    if history and int(os.environ.get("RANK", "0")) == 0:
        last = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in history[-1].items()}
        print(f"trained {last['epoch']} epochs into {config.output_dir}: {last}", file=sys.stderr)


def resume_advice(output_dir: str | os.PathLike[str]) -> str:
    """How to continue a run of ``output_dir`` that was stopped: the checkpoint to resume from
    and its epoch, or that there is none yet.

    Example:
        >>> resume_advice("runs/none")
        'no checkpoint was written yet (runs/none): run the command again to start over'
    """
    last = Path(output_dir) / "checkpoint_last.pt"
    try:
        epoch = load_checkpoint(last, verify=False).epoch
    except (FileNotFoundError, ValueError):
        return f"no checkpoint was written yet ({output_dir}): run the command again to start over"
    return f"epoch {epoch} is saved: continue with {_PROG} --resume {last}"


if __name__ == "__main__":
    main()
