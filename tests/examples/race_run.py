"""Start two runs of a command at the same moment, several times (for test_run_locks).

``python -m tests.examples.race_run SPEC`` where ``SPEC`` is JSON: ``{"module":
"examples.oamn.train", "iterations": N, "argv": [FIRST, SECOND]}``, each argument list with
``{i}`` standing for the iteration. Each iteration forks the two runs from this process, which
imported the command once (a race then costs the runs, not the imports), on one torch thread
each; both block on one pipe and start when it closes. Prints a JSON list with, per iteration,
each run's process id, exit status and standard error.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path


def _child(module, argv: list[str], start: int, stderr: Path) -> None:
    """Run ``module.main(argv)`` once ``start`` closes, as ``python -m`` would; never return."""
    code = 2
    try:
        with stderr.open("w") as errors:
            os.dup2(errors.fileno(), 2)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        import torch

        torch.set_num_threads(1)
        os.read(start, 1)  # returns at the pipe's end of file: both runs go together
        try:
            module.main(argv)
            code = 0
        except SystemExit as exit:
            if isinstance(exit.code, str):
                print(exit.code, file=sys.stderr)
                code = 1
            else:
                code = exit.code or 0
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


def main() -> None:
    spec = json.loads(sys.argv[1])
    module = importlib.import_module(spec["module"])
    folder = Path(tempfile.mkdtemp())
    results = []
    for i in range(spec["iterations"]):
        start, go = os.pipe()
        runs = []
        for k, argv in enumerate(spec["argv"]):
            stderr = folder / f"{i}-{k}.txt"
            pid = os.fork()
            if pid == 0:
                os.close(go)
                _child(module, [arg.replace("{i}", str(i)) for arg in argv], start, stderr)
            runs.append((pid, stderr))
        os.close(start)
        os.close(go)
        results.append(
            [
                {
                    "pid": pid,
                    "status": os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]),
                    "stderr": stderr.read_text(),
                }
                for pid, stderr in runs
            ]
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
