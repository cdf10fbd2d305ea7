"""The four import packages must each work with only their own imports."""

from __future__ import annotations

import subprocess
import sys

import pytest

PACKAGES = ("occlusion_aug", "attention", "losses", "reid_eval")


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_none_of_the_others(package: str) -> None:
    others = [p for p in PACKAGES if p != package]
    code = (
        "import sys, importlib\n"
        f"importlib.import_module({package!r})\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {others!r})\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"{package} loaded {result.stdout.strip()}"
