"""The README's Python examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_has_examples() -> None:
    assert EXAMPLES, "README.md shows no ```python example"


@pytest.mark.parametrize("code", EXAMPLES, ids=[f"example{i}" for i in range(len(EXAMPLES))])
def test_readme_example_runs(code: str) -> None:
    exec(compile(code, str(README), "exec"), {})


def test_the_cpu_only_install_is_the_set_up_command_after_torchs_cpu_build() -> None:
    commands = re.findall(r"```bash\n(python -m venv[^\n]*)\n```", README.read_text())
    assert len(commands) == 2, "README shows the set-up command and its CPU-only form"
    default, cpu_only = commands
    cpu_build = " && pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu"
    assert cpu_build in cpu_only
    assert cpu_only.replace(cpu_build, "") == default
