"""Does bfloat16 training cost accuracy? The demo's rows over seeds, float32 beside bfloat16.

    for amp in none bf16; do for seed in 0 1 2; do
        python -m examples.oamn.demo --seed $seed --amp $amp --data-cache runs/synthetic \
            --output-dir runs/precision/$amp-$seed
    done; done
    python benchmarks/precision_accuracy.py runs/precision

Each demo run draws its own synthetic benchmark from its seed, trains the baseline and OAMN and
evaluates both (under the same ``--amp`` as the training). This script reads the runs'
``results.json`` and prints, for the occluded queries, R1 and mAP of the baseline, of OAMN and
of OAMN with two-sided unification: each seed's value, then per precision the mean and the
spread over the seeds (min-max), and the difference of the means beside the larger spread.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

ROWS = {
    "baseline": ("baseline", "no unification"),
    "OAMN": ("OAMN", "no unification"),
    "OAMN unified two-sided": ("OAMN", "unified, band bank, two-sided"),
}
MODES = {"none": "float32", "bf16": "bfloat16"}


def read_runs(folder: Path) -> dict[str, dict[int, dict]]:
    """``{amp: {seed: results.json}}`` of the ``AMP-SEED`` folders under ``folder``."""
    runs: dict[str, dict[int, dict]] = {amp: {} for amp in MODES}
    for path in sorted(folder.glob("*-*/results.json")):
        amp, seed = path.parent.name.rsplit("-", 1)
        if amp in MODES:
            runs[amp][int(seed)] = json.loads(path.read_text())
    return runs


def metric(result: dict, row: str, name: str) -> float:
    model, setting = ROWS[row]
    (value,) = (
        r[name]
        for r in result["rows"]
        if (r["model"], r["queries"], r["setting"]) == (model, "occluded", setting)
    )
    return 100 * value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the folder of the AMP-SEED demo runs")
    args = parser.parse_args()
    runs = read_runs(args.folder)
    seeds = sorted(set(runs["none"]) & set(runs["bf16"]))
    if not seeds:
        raise SystemExit(f"no seed has both a none-SEED and a bf16-SEED run in {args.folder}")
    queries = runs["none"][seeds[0]]["dataset"]["num_query"]
    print(f"{len(seeds)} seeds ({', '.join(map(str, seeds))}), {queries} occluded queries each")
    print("| row | metric | float32 per seed | bfloat16 per seed | float32 mean (spread) | "
          "bfloat16 mean (spread) | difference of means |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for row in ROWS:
        for name in ("R1", "mAP"):
            values = {amp: [metric(runs[amp][seed], row, name) for seed in seeds] for amp in MODES}
            cells = [" / ".join(f"{v:.1f}" for v in values[amp]) for amp in MODES]
            summary = [
                f"{statistics.mean(v):.1f} ({min(v):.1f}-{max(v):.1f})" for v in values.values()
            ]
            difference = statistics.mean(values["bf16"]) - statistics.mean(values["none"])
            print(f"| {row} | {name} | {' | '.join(cells)} | {' | '.join(summary)} | "
                  f"{difference:+.1f} |")  # fmt: skip
    seconds = {amp: [runs[amp][seed]["seconds"]["train_oamn"] for seed in seeds] for amp in MODES}
    print(
        "OAMN training seconds per seed: "
        + "; ".join(
            f"{MODES[amp]} {', '.join(f'{s:.0f}' for s in v)}" for amp, v in seconds.items()
        )
    )


if __name__ == "__main__":
    main()
