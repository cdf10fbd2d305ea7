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

from .config_cli import config_from_args
from .run_files import os_error_message
from .training import train

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> None:
    """The command line: resolve the configuration, train, print where the run was written."""
    config = config_from_args(argv)
    try:
        history = train(config)
    # Settings that cannot run (ConnectionError: weights to download offline) and files that
    # cannot be read or written: one line, no traceback.
    except (ValueError, ConnectionError, OSError) as error:
        message = os_error_message(error) if isinstance(error, OSError) else str(error)
        raise SystemExit(f"python -m examples.oamn.train: error: {message}") from error
    if history and int(os.environ.get("RANK", "0")) == 0:
        last = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in history[-1].items()}
        print(f"trained {last['epoch']} epochs into {config.output_dir}: {last}", file=sys.stderr)


if __name__ == "__main__":
    main()
