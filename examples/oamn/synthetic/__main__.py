"""``python -m examples.oamn.synthetic ROOT``: generate (or find) the benchmark, print where.

Prints the dataset folder and its counts; ``--sheet PNG`` also writes a contact sheet.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

from .dataset import MANIFEST, generate_synthetic_reid
from .preview import contact_sheet


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m examples.oamn.synthetic", description=__doc__)
    parser.add_argument("root", type=Path, help="parent folder of the cached datasets")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-train-ids", type=int, default=120)
    parser.add_argument("--num-test-ids", type=int, default=100)
    parser.add_argument("--images-per-id-per-camera", type=int, default=3)
    parser.add_argument("--sheet", type=Path, help="write a contact sheet PNG here")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    path = generate_synthetic_reid(
        args.root,
        seed=args.seed,
        num_train_ids=args.num_train_ids,
        num_test_ids=args.num_test_ids,
        images_per_id_per_camera=args.images_per_id_per_camera,
    )
    counts = json.loads((path / MANIFEST).read_text())["counts"]
    print(f"{path}  ({time.perf_counter() - start:.1f} s)")
    print(json.dumps(counts, indent=1))
    if args.sheet is not None:
        contact_sheet(path).save(args.sheet)
        print(f"contact sheet: {args.sheet}")
    return path


if __name__ == "__main__":
    main()
