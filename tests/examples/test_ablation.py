"""The Table 6 ablation end to end on the tiny generated Market tree (1 step per model)."""

from __future__ import annotations

import json
from pathlib import Path

from examples.oamn.ablation import RUNS, TABLE_ROWS, main

_TINY = [
    "--dataset", "market1501", "--backbone", "mobilenet_v2", "--height", "64", "--width", "32",
    "--mask-spatial-reduction", "2", "--mask-down-ratio", "2", "--ids-per-batch", "2",
    "--instances-per-id", "2", "--workers", "0", "--epochs", "1", "--max-steps", "1",
    "--no-progress", "--device", "cpu",
]  # fmt: skip


def test_ablation_writes_every_row_and_resumes(tiny_market: Path, tmp_path: Path) -> None:
    argv = [*_TINY, "--data-root", str(tiny_market), "--output-dir", str(tmp_path)]
    results = main(argv)
    assert list(results["runs"]) == list(RUNS)
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["runs"].keys() == results["runs"].keys()
    for _, run, key in TABLE_ROWS:
        row = written["runs"][run]["evaluation"]["rows"][key]
        assert 0.0 <= row["R1"] <= row["R5"] <= 1.0
    full_rows = written["runs"]["full"]["evaluation"]["rows"]
    # Each bank one- and two-sided, under the grader's and the located types.
    assert set(full_rows) == {
        "plain",
        *(
            f"unified_{strategy}{side}{types}"
            for strategy in ("mask_swap", "feature")
            for side in ("", "_two_sided")
            for types in ("", "_located")
        ),
    }
    assert list(written["runs"]["baseline"]["evaluation"]["rows"]) == ["plain"]
    assert set(written["runs"]["grouped"]["evaluation"]["rows"]) == {
        "plain",
        "unified_mask_swap",
        "unified_mask_swap_two_sided",
        "unified_mask_swap_located",
        "unified_mask_swap_two_sided_located",
    }
    baseline = json.loads((tmp_path / "baseline" / "config.json").read_text())
    assert (baseline["occlusion"], baseline["mask_module"]) == (False, False)
    assert "--no-occlusion" in written["runs"]["baseline"]["command"]
    # +OU is read from the grouped model: it needs the mask module (the banks act through it).
    grouped = json.loads((tmp_path / "grouped" / "config.json").read_text())
    assert (grouped["mask_module"], grouped["loss_mask"], grouped["grouped_triplet"]) == (
        True,
        False,
        True,
    )
    table = (tmp_path / "results.md").read_text()
    assert all(f"| {label} |" in table for label, _, _ in TABLE_ROWS)
    assert "not run" not in table
    # A second call trains and evaluates nothing again: the same numbers, the same checkpoints.
    stamp = (tmp_path / "full" / "checkpoint_last.pt").stat().st_mtime_ns
    again = main(argv)
    assert again["runs"]["full"]["evaluation"] == results["runs"]["full"]["evaluation"]
    assert (tmp_path / "full" / "checkpoint_last.pt").stat().st_mtime_ns == stamp
