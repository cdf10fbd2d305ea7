"""Seconds per OAMN training step of this checkout beside another one, each with its defaults.

    git worktree add ../oamn-c617514 c617514
    python benchmarks/bench_training_step.py --baseline ../oamn-c617514 [--setting demo]
        [--steps 10] [--repeats 3]

Each run is ``python -m examples.oamn.train`` in a fresh process, in the checkout's own folder,
for two epochs of ``--steps`` steps on the demo's synthetic benchmark (generated into
``--data-cache`` when absent); the step time is the second epoch's ``seconds`` in ``log.json``
(its steps only: no start-up, no first-call set-up of the kernels, no checkpoint) divided by its
steps. The two checkouts run in turn (baseline, this one, baseline, ...), so drifts of the
machine's speed reach both; the ratio is taken pair by pair. Only the settings of ``--setting``
are passed, so each checkout trains with its own defaults for the rest (mixed precision,
memory format):

* ``demo``: the README demo's OAMN model (``DEMO_SETTINGS``: ResNet-18 from scratch, 128x64,
  16 ids x 4 images, split after layer3, channels_last);
* ``defaults``: ``TrainConfig``'s defaults (ResNet-50 at 256x128, 32 ids x 2 images), with the
  loader in the main process.

``PYTHONPATH`` puts each checkout's ``examples`` first, but the ``oamn`` packages come from
wherever the interpreter has them installed (an editable install of this checkout, usually):
give ``--baseline-python``, an interpreter with the baseline checkout installed, to time its
own. The script prints where each arm's ``oamn.losses`` comes from.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from examples.oamn.comparison import DEMO_SETTINGS, synthetic_benchmark

REPOSITORY = Path(__file__).resolve().parents[1]
#: Options of the demo's model (its schedule left out: the base learning rate after a one-epoch
#: warm-up), and channels_last, which the demo had before it became the default.
DEMO_OPTIONS = [
    f"--{name.replace('_', '-')}={value}"
    for name, value in DEMO_SETTINGS.items()
    if name not in ("epochs", "warmup_epochs", "lr_steps", "lr_step_values")
] + ["--channels-last"]
SETTINGS = {"demo": DEMO_OPTIONS, "defaults": ["--workers=0"]}


def step_seconds(
    checkout: Path, python: str, options: list[str], data_root: Path, steps: int
) -> float:
    """Seconds per step of the second epoch of a fresh training run of ``checkout``."""
    with tempfile.TemporaryDirectory() as output_dir:
        command = [
            python,
            "-m",
            "examples.oamn.train",
            *options,
            f"--data-root={data_root}",
            f"--output-dir={output_dir}",
            "--epochs=2",
            "--warmup-epochs=1",
            "--lr-steps=",
            "--lr-step-values=",
            f"--max-steps-per-epoch={steps}",
            "--no-verify-images",
            "--no-progress",
        ]
        subprocess.run(
            command, cwd=checkout, env=_environment(checkout), check=True, capture_output=True
        )
        _, record = json.loads((Path(output_dir) / "log.json").read_text())
    return record["seconds"] / record["steps"]


def _environment(checkout: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(checkout)}


def library_origin(checkout: Path, python: str) -> str:
    """Where ``python`` run in ``checkout`` imports ``oamn.losses`` from."""
    code = "import oamn.losses; print(oamn.losses.__file__)"
    return subprocess.run(
        [python, "-c", code], cwd=checkout, env=_environment(checkout), check=True,
        capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, help="the other checkout")
    parser.add_argument(
        "--baseline-python", default=sys.executable, help="the baseline's interpreter"
    )
    parser.add_argument("--setting", choices=tuple(SETTINGS), default="demo")
    parser.add_argument("--steps", type=int, default=10, help="steps per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each checkout")
    parser.add_argument("--data-cache", type=Path, default=Path("runs/synthetic"))
    args = parser.parse_args()
    data_root = synthetic_benchmark(args.data_cache).resolve()
    options = SETTINGS[args.setting]
    baseline_checkout = args.baseline.resolve()
    print(f"baseline's oamn.losses: {library_origin(baseline_checkout, args.baseline_python)}")
    print(f"this checkout's oamn.losses: {library_origin(REPOSITORY, sys.executable)}")
    pairs = []
    for repeat in range(args.repeats):
        baseline = step_seconds(
            baseline_checkout, args.baseline_python, options, data_root, args.steps
        )
        current = step_seconds(REPOSITORY, sys.executable, options, data_root, args.steps)
        pairs.append((baseline, current))
        print(
            f"run {repeat + 1}: baseline {baseline:.3f} s/step, this checkout {current:.3f} "
            f"s/step, speed-up {baseline / current:.2f}x",
            flush=True,
        )
    ratios = [baseline / current for baseline, current in pairs]
    print(
        f"{args.setting} setting, {args.steps} steps per run, {args.repeats} runs each, "
        f"{os.cpu_count()} CPUs: baseline median {statistics.median(p[0] for p in pairs):.3f} "
        f"s/step, this checkout median {statistics.median(p[1] for p in pairs):.3f} s/step; "
        f"speed-up median {statistics.median(ratios):.2f}x (range {min(ratios):.2f}-"
        f"{max(ratios):.2f}x)"
    )


if __name__ == "__main__":
    main()
