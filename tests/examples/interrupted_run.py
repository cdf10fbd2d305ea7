"""Run the training command line and SIGKILL it at a chosen moment (for test_train_interrupted).

``python -m tests.examples.interrupted_run MOMENT -- TRAIN OPTIONS``, where ``MOMENT`` is
``FILE:N`` (halfway through writing the ``N``-th version of run file ``FILE``, e.g.
``checkpoint_best.pt:1``) or ``step:N`` (at the start of the ``N``-th training step); or
``interrupt:N``, which sends SIGINT (Ctrl-C) instead of SIGKILL at the start of the ``N``-th
step. One torch thread, as the tests that resume the run in their own process use.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import torch

from examples.oamn import run_files, train, training


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    # A process started in the background by a shell without job control (a CI script's `&`)
    # inherits SIGINT ignored; Ctrl-C at a terminal raises KeyboardInterrupt, which is what the
    # interrupt moments test.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    moment, separator, *argv = sys.argv[1:]
    assert separator == "--", "usage: interrupted_run MOMENT -- TRAIN OPTIONS"
    name, count = moment.rsplit(":", 1)
    calls = 0
    if name in ("step", "interrupt"):
        step = training.training_step

        def step_then_die(*args, **kwargs):
            nonlocal calls
            calls += 1
            if calls == int(count):
                os.kill(os.getpid(), signal.SIGINT) if name == "interrupt" else _die()
            return step(*args, **kwargs)

        training.training_step = step_then_die
    else:
        write = run_files._write_synced

        def write_half_then_die(path: Path, payload: bytes) -> None:
            nonlocal calls
            if run_files.partial_target(path) == name:
                calls += 1
                if calls == int(count):
                    with path.open("wb") as file:
                        file.write(payload[: len(payload) // 2])
                    _die()
            write(path, payload)

        run_files._write_synced = write_half_then_die
    torch.set_num_threads(1)
    train.main(argv)


if __name__ == "__main__":
    main()
