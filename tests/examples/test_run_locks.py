"""Locks on what the commands write: two runs of one folder at once, a lock a killed process
left, and every command refusing a folder in use (examples.oamn.locking)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from examples.oamn import ablation, demo, evaluate, study
from examples.oamn import train as train_cli
from examples.oamn.checkpoint import load_checkpoint
from examples.oamn.locking import InUseError, lock_file, lock_folder
from examples.oamn.training import train
from tests.examples.helpers_train import tiny_config, tiny_options

ROOT = Path(__file__).resolve().parents[2]
RUN_FILES = [".lock", "checkpoint_last.pt", "config.json", "log.csv", "log.json"]

pytestmark = pytest.mark.usefixtures("one_thread")


def _race(module: str, iterations: int, first: list[str], second: list[str]) -> list[list[dict]]:
    """Each iteration's two runs (``tests/examples/race_run.py``), started together."""
    spec = {"module": module, "iterations": iterations, "argv": [first, second]}
    done = subprocess.run(
        [sys.executable, "-m", "tests.examples.race_run", json.dumps(spec)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return json.loads(done.stdout)


def _winner_and_refusal(runs: list[dict], command: str, folder: Path, option: str) -> int:
    """The index of the run that went through; the other was refused at once, in one line
    naming ``folder`` and the winner's process id."""
    statuses = [run["status"] for run in runs]
    assert sorted(statuses) == [0, 1], runs
    winner = statuses.index(0)
    refusal = runs[1 - winner]["stderr"]
    assert refusal.count("\n") == 1, refusal  # one line, no traceback
    expected = (
        f"python -m examples.oamn.{command}: error: {folder}: in use by process "
        f"{runs[winner]['pid']} on "
    )
    assert refusal.startswith(expected), refusal
    assert refusal.rstrip().endswith(f"wait for it to end, or pass another {option}"), refusal
    return winner


def test_two_trainings_of_one_folder_started_together(tiny_market, tmp_path) -> None:
    # 10 races of two learning rates, then 10 of the same settings (where the second run
    # used to die on the first's temporary files).
    options = {"max_steps_per_epoch": 1}
    fast = tiny_options(tiny_market, tmp_path / "lr{i}", lr=0.1, **options)
    slow = tiny_options(tiny_market, tmp_path / "lr{i}", lr=0.05, **options)
    same = tiny_options(tiny_market, tmp_path / "same{i}", lr=0.1, **options)
    races = [("lr", (0.1, 0.05), runs) for runs in _race("examples.oamn.train", 10, fast, slow)]
    races += [("same", (0.1, 0.1), runs) for runs in _race("examples.oamn.train", 10, same, same)]
    for i, (name, lrs, runs) in enumerate(races):
        run_dir = tmp_path / f"{name}{i % 10}"
        winner = _winner_and_refusal(runs, "train", run_dir, "--output-dir")
        # The survivor's folder is its own run, whole: every file from its configuration.
        assert sorted(p.name for p in run_dir.iterdir()) == RUN_FILES
        assert json.loads((run_dir / "config.json").read_text())["lr"] == lrs[winner]
        state = load_checkpoint(run_dir / "checkpoint_last.pt")  # the digest verifies
        assert state.config.lr == lrs[winner]
        assert json.loads((run_dir / "log.json").read_text()) == state.history


def test_two_resumes_of_one_run_started_together(tiny_market, tmp_path) -> None:
    template = tmp_path / "template"
    train(tiny_config(tiny_market, template, max_steps_per_epoch=1))
    iterations = 2
    for i in range(iterations):
        shutil.copytree(template, tmp_path / f"run{i}")
    resume = ["--resume", str(tmp_path / "run{i}" / "checkpoint_last.pt"), "--epochs", "2"]
    races = _race("examples.oamn.train", iterations, resume, resume)
    for i, runs in enumerate(races):
        _winner_and_refusal(runs, "train", tmp_path / f"run{i}", "--output-dir")
        assert sorted(p.name for p in (tmp_path / f"run{i}").iterdir()) == RUN_FILES
        state = load_checkpoint(tmp_path / f"run{i}" / "checkpoint_last.pt")
        history = json.loads((tmp_path / f"run{i}" / "log.json").read_text())
        assert state.epoch == 2
        assert [record["epoch"] for record in history] == [1, 2]


def test_two_evaluations_of_one_output_started_together(tiny_market, tmp_path) -> None:
    run_dir = tmp_path / "run"
    train(tiny_config(tiny_market, run_dir, max_steps_per_epoch=1))
    common = ["--checkpoint", str(run_dir / "checkpoint_last.pt"), "--device", "cpu"]
    common += ["--batch-size", "16", "--workers", "0", "--no-progress", "--no-awareness"]
    output = tmp_path / "metrics{i}.json"
    first = [*common, "--output", str(output)]
    second = [*first, "--no-two-sided"]
    races = _race("examples.oamn.evaluate", 2, first, second)
    for i, runs in enumerate(races):
        metrics = tmp_path / f"metrics{i}.json"
        winner = _winner_and_refusal(runs, "evaluate", metrics, "--output")
        rows = json.loads(metrics.read_text())["rows"]
        assert any("two_sided" in name for name in rows) == (winner == 0)
        assert (tmp_path / f".metrics{i}.json.lock").read_text() == ""  # released


def test_a_lock_left_by_a_killed_process_never_blocks(tmp_path) -> None:
    # The holder forks a child (as data-loader workers are) that outlives it: the child must
    # not keep the lock alive.
    script = textwrap.dedent(
        f"""
        import os, signal, sys, time
        from examples.oamn.locking import lock_folder
        with lock_folder({str(tmp_path)!r}, option="--output-dir"):
            child = os.fork()
            if child == 0:  # away from the test's pipes, which would wait for it
                for stream in (0, 1, 2):
                    os.dup2(os.open(os.devnull, os.O_RDWR), stream)
                time.sleep(60)
                os._exit(0)
            print(child, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    child = int(done.stdout)
    try:
        assert done.returncode == -signal.SIGKILL
        assert (tmp_path / ".lock").is_file()  # left behind, with the killed holder's record
        with lock_folder(tmp_path, option="--output-dir"):
            record = json.loads((tmp_path / ".lock").read_text())
            assert record["pid"] == os.getpid()
        assert (tmp_path / ".lock").read_text() == ""
    finally:
        os.kill(child, signal.SIGKILL)


def test_a_forked_child_leaving_the_block_leaves_the_lock_to_its_parent(tmp_path) -> None:
    script = textwrap.dedent(
        f"""
        import os
        from examples.oamn.locking import InUseError, lock_folder
        with lock_folder({str(tmp_path)!r}, option="--output-dir"):
            child = os.fork()
            if child:
                os.waitpid(child, 0)
                try:
                    with lock_folder({str(tmp_path)!r}, option="--output-dir"):
                        print("taken by another", flush=True)
                except InUseError:
                    print("still held", flush=True)
        if not child:
            os._exit(0)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.stdout == "still held\n", done.stderr
    assert done.stderr == ""  # the child closed no descriptor a second time


def test_a_second_holder_is_refused_and_a_released_lock_names_no_holder(tmp_path) -> None:
    metrics = tmp_path / "out" / "metrics.json"
    with lock_file(metrics, option="--output"):
        lock = tmp_path / "out" / ".metrics.json.lock"
        assert json.loads(lock.read_text())["pid"] == os.getpid()
        with pytest.raises(InUseError) as refused, lock_file(metrics, option="--output"):
            pass
        assert refused.value.filename == str(metrics)
        assert re.fullmatch(
            rf"in use by process {os.getpid()} on .+ since \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d "
            r"\(.+\): wait for it to end, or pass another --output",
            refused.value.strerror,
        )
        with lock_file(tmp_path / "out" / "other.json", option="--output"):  # another file
            pass
    locks = [".metrics.json.lock", ".other.json.lock"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == locks
    assert all((tmp_path / "out" / name).read_text() == "" for name in locks)
    with lock_file(metrics, option="--output"):  # released: taken again
        pass


def test_every_command_refuses_a_folder_in_use(tiny_market, tmp_path, capsys) -> None:
    run_dir = tmp_path / "run"
    train(tiny_config(tiny_market, run_dir, max_steps_per_epoch=1))
    evaluation = ["--checkpoint", str(run_dir / "checkpoint_last.pt"), "--device", "cpu"]
    busy = tmp_path / "busy"
    with lock_folder(busy, option="--output-dir"):
        for command, argv, option in (
            (train_cli, tiny_options(tiny_market, busy), "--output-dir"),
            (demo, ["--quick", "--output-dir", str(busy)], "--output-dir"),
            (study, ["--output-dir", str(busy)], "--output-dir"),
            (ablation, ["--output-dir", str(busy)], "--output-dir"),
            (evaluate, [*evaluation, "--figures", str(busy)], "--figures"),
        ):
            with pytest.raises(SystemExit) as refused:
                command.main(argv)
            message = str(refused.value.code)
            assert message.startswith(
                f"python -m {command.__name__}: error: {busy}: in use by process {os.getpid()} on "
            ), message
            assert message.endswith(f"or pass another {option}"), message
    assert [p.name for p in busy.iterdir()] == [".lock"]  # nothing was written there
    assert capsys.readouterr().out == ""  # refused before any work
