"""The four subpackages must each work with only their own imports, under the ``oamn`` namespace."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import oamn

PACKAGES = ("occlusion_aug", "attention", "losses", "reid_eval")
REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_none_of_the_others(package: str) -> None:
    others = [f"oamn.{p}" for p in PACKAGES if p != package]
    code = (
        "import sys, importlib\n"
        f"importlib.import_module('oamn.{package}')\n"
        f"bare = {(*PACKAGES, 'examples')!r}\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in bare\n"
        f"                or '.'.join(m.split('.')[:2]) in {others!r})\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"oamn.{package} loaded {result.stdout.strip()}"


def test_the_namespace_package_imports_no_subpackage() -> None:
    code = "import sys, oamn; print(sorted(m for m in sys.modules if m.startswith('oamn.')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", oamn.__version__), oamn.__version__


def test_no_code_imports_the_packages_by_their_bare_names() -> None:
    """The sources' folders are on the path when tests run from the repository, so a stray
    ``from losses import ...`` would pass here and fail for every user of the installed wheel;
    docstring examples (``>>> from attention import ...``) included."""
    bare = re.compile(rf"^\s*(>>>\s*)?(from|import) ({'|'.join(PACKAGES)})\b", flags=re.MULTILINE)
    offenders = [
        f"{path.relative_to(REPOSITORY)}: {match.group(0).strip()}"
        for folder in ("examples", "tests", "benchmarks", *PACKAGES)
        for path in sorted((REPOSITORY / folder).rglob("*.py"))
        for match in bare.finditer(path.read_text())
    ]
    readme = (REPOSITORY / "README.md").read_text()
    offenders += [f"README.md: {m.group(0).strip()}" for m in bare.finditer(readme)]
    assert not offenders, "import them as oamn.<package>:\n" + "\n".join(offenders)
