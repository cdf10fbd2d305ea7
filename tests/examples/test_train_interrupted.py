"""Runs killed (SIGKILL) during each kind of write, then resumed: every file left loads, and
the resumed run ends where an uninterrupted one does, bit for bit."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from examples.oamn.checkpoint import load_checkpoint
from examples.oamn.train import main
from tests.examples.helpers_train import tiny_options

ROOT = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("one_thread")


def _options(data_root: Path, run_dir: Path) -> list[str]:
    """Two epochs of two steps, validated after each, every kind of checkpoint kept."""
    return tiny_options(
        data_root, run_dir, epochs=2, val_ids=2, val_every=1, keep_epoch_checkpoints=True
    )


@pytest.fixture(scope="module")
def uninterrupted(tiny_market, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        main(_options(tiny_market, run_dir))
    finally:
        torch.set_num_threads(threads)
    return run_dir


def _versions_written(run_dir: Path) -> dict[str, int]:
    """How many times the uninterrupted run wrote each file."""
    history = json.loads((run_dir / "log.json").read_text())
    scores = [record["val_mAP"] for record in history]
    best = sum(score >= max(scores[: i + 1]) for i, score in enumerate(scores))
    return {
        "config.json": 1,
        "checkpoint_last.pt": len(history),
        "checkpoint_epoch1.pt": 1,
        "checkpoint_epoch2.pt": 1,
        "checkpoint_best.pt": best,
        "log.json": len(history),
        "log.csv": len(history),
    }


def _assert_every_file_loads(run_dir: Path) -> None:
    for path in run_dir.iterdir():
        if path.suffix == ".pt":
            load_checkpoint(path)
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".csv":
            with path.open(newline="") as file:
                list(csv.DictReader(file))
        else:  # a killed writer's temporary, or its lock file (which blocks no later run)
            assert path.name.endswith(".partial") or path.name == ".lock", path


def _timeless(history: list[dict]) -> list[dict]:
    return [{key: value for key, value in record.items() if key != "seconds"} for record in history]


def _assert_same_run(run_dir: Path, reference: Path) -> None:
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(p.name for p in reference.iterdir())
    for name in ("checkpoint_last.pt", "checkpoint_best.pt", "checkpoint_epoch1.pt",
                 "checkpoint_epoch2.pt"):  # fmt: skip
        state, expected = load_checkpoint(run_dir / name), load_checkpoint(reference / name)
        assert state.epoch == expected.epoch, name
        for key, value in expected.model.items():
            assert torch.equal(state.model[key], value), (name, key)
        momentum = [s["momentum_buffer"] for s in state.optimizer["state"].values()]
        expected_momentum = [s["momentum_buffer"] for s in expected.optimizer["state"].values()]
        assert all(map(torch.equal, momentum, expected_momentum)), name
        assert _timeless(state.history) == _timeless(expected.history), name
    logged = json.loads((run_dir / "log.json").read_text())
    assert _timeless(logged) == _timeless(json.loads((reference / "log.json").read_text()))
    with (run_dir / "log.csv").open(newline="") as file:
        assert [row["epoch"] for row in csv.DictReader(file)] == ["1", "2"]


MOMENTS = [
    "config.json:1",
    "checkpoint_last.pt:1",
    "checkpoint_last.pt:last",
    "checkpoint_epoch2.pt:1",
    "checkpoint_best.pt:last",
    "log.json:last",
    "log.csv:last",
    "step:3",  # the first step of epoch 2
]


@pytest.mark.parametrize("moment", MOMENTS)
def test_a_killed_run_resumes_to_the_uninterrupted_result(
    tiny_market, uninterrupted, tmp_path, moment
) -> None:
    name, count = moment.rsplit(":", 1)
    if count == "last":
        count = str(_versions_written(uninterrupted)[name])
    run_dir = tmp_path / "run"
    options = _options(tiny_market, run_dir)
    killed = subprocess.run(
        [sys.executable, "-m", "tests.examples.interrupted_run", f"{name}:{count}", "--", *options],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    _assert_every_file_loads(run_dir)
    last = run_dir / "checkpoint_last.pt"
    main([*options, f"--resume={last}"] if last.is_file() else options)
    assert not list(run_dir.glob("*.partial"))
    _assert_same_run(run_dir, uninterrupted)


def test_ctrl_c_stops_with_one_line_naming_the_checkpoint_to_resume(
    tiny_market, uninterrupted, tmp_path
) -> None:
    run_dir = tmp_path / "run"
    options = _options(tiny_market, run_dir)
    moment = "interrupt:3"  # the first step of epoch 2
    interrupted = subprocess.run(
        [sys.executable, "-m", "tests.examples.interrupted_run", moment, "--", *options],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert interrupted.returncode == 130, interrupted.stderr
    last = run_dir / "checkpoint_last.pt"
    assert interrupted.stderr == (
        "python -m examples.oamn.train: interrupted; epoch 1 is saved: continue with python -m "
        f"examples.oamn.train --resume {last}\n"
    )
    _assert_every_file_loads(run_dir)
    assert not list(run_dir.glob("*.partial"))
    assert (run_dir / ".lock").read_text() == ""  # released on the way out: no holder
    main([*options, f"--resume={last}"])
    _assert_same_run(run_dir, uninterrupted)


def test_runs_killed_at_random_moments_resume_to_the_uninterrupted_result(
    tiny_market, uninterrupted, tmp_path
) -> None:
    # Each kill comes a random time after the run has started writing (its config.json), within
    # about the time its training takes: whichever moment it hits, every file left must load
    # and the run must end where a straight one does.
    history = json.loads((uninterrupted / "log.json").read_text())
    span = 2 * sum(record["seconds"] for record in history) + 0.5
    run_dir = tmp_path / "run"
    options = _options(tiny_market, run_dir)
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    for delay in np.random.default_rng(0).uniform(0.0, span, size=3):
        last = run_dir / "checkpoint_last.pt"
        resume = [f"--resume={last}"] if last.is_file() else []
        started = time.time_ns()
        command = [sys.executable, "-m", "examples.oamn.train", *options, *resume]
        process = subprocess.Popen(command, cwd=ROOT, env=environment, stderr=subprocess.PIPE)
        config = run_dir / "config.json"
        while process.poll() is None and not (
            config.is_file() and config.stat().st_mtime_ns >= started
        ):
            time.sleep(0.01)
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
        _, errors = process.communicate(timeout=300)
        assert process.returncode in (0, -signal.SIGKILL), errors.decode()
        _assert_every_file_loads(run_dir)
    last = run_dir / "checkpoint_last.pt"
    main([*options, f"--resume={last}"] if last.is_file() else options)
    assert not list(run_dir.glob("*.partial"))
    _assert_same_run(run_dir, uninterrupted)
