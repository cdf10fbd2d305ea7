"""The pipeline commands written in README.md and docs/REPRODUCING.md parse as written, and the
recipes they name are the paper's and the authors' settings."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from examples.oamn import evaluate
from examples.oamn.config import RECIPES, TrainConfig
from examples.oamn.config_cli import config_from_args
from examples.oamn.dataclass_cli import field_values
from examples.oamn.evaluation_settings import EvaluationSettings

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = ("README.md", "docs/REPRODUCING.md")


def _commands(document: str) -> list[list[str]]:
    """The ``examples.oamn.train`` / ``evaluate`` command lines of a document's bash blocks, as
    argument lists starting with the module name (``torchrun``'s own options dropped)."""
    text = (ROOT / document).read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line)
            if "-m" not in words:
                continue
            module = words[words.index("-m") + 1]
            if module in ("examples.oamn.train", "examples.oamn.evaluate"):
                commands.append(words[words.index("-m") + 1 :])
    return commands


COMMANDS = [(document, command) for document in DOCUMENTS for command in _commands(document)]


def test_the_documents_show_training_and_evaluation_commands() -> None:
    modules = {(document, command[0]) for document, command in COMMANDS}
    for document in DOCUMENTS:
        assert (document, "examples.oamn.train") in modules
        assert (document, "examples.oamn.evaluate") in modules


@pytest.mark.parametrize(
    "command", [c for _, c in COMMANDS], ids=[f"{d}:{' '.join(c)[:60]}" for d, c in COMMANDS]
)
def test_each_command_parses_into_its_settings(command: list[str]) -> None:
    module, *arguments = command
    if module == "examples.oamn.train":
        config = config_from_args(arguments)
        assert isinstance(config, TrainConfig)
        assert config.data_root is not None
    else:
        args = evaluate.build_parser().parse_args(arguments)
        EvaluationSettings(**field_values(args, EvaluationSettings))
        assert args.checkpoint.name.startswith("checkpoint_")


def test_the_recipes_are_the_paper_and_the_authors_settings() -> None:
    paper = config_from_args(["--recipe", "paper"])
    authors = config_from_args(["--recipe", "authors"])
    for config in (paper, authors):
        assert config.mask_loss_scale == "paper"
        assert config.lambda_mask == 5.0
        assert config.grader == "pooled"
    assert (paper.routing, authors.routing) == ("paper", "official")
    defaults = TrainConfig()
    assert (defaults.mask_loss_scale, defaults.lambda_mask, defaults.grader) == (
        "invariant",
        1.0,
        "feature_profiles",
    )
    assert set(RECIPES) == {"paper", "authors"}


def test_options_and_a_config_file_win_over_a_recipe(tmp_path: Path) -> None:
    settings = tmp_path / "settings.json"
    settings.write_text('{"lambda_mask": 3.0, "grader": "profiles"}')
    config = config_from_args(
        ["--recipe", "paper", "--config", str(settings), "--grader", "feature_profiles"]
    )
    assert config.routing == "paper"  # from the recipe
    assert config.lambda_mask == 3.0  # the file wins over the recipe
    assert config.grader == "feature_profiles"  # the option wins over both


def test_an_unknown_recipe_is_refused_with_the_choices(capsys) -> None:
    with pytest.raises(SystemExit):
        config_from_args(["--recipe", "mine"])
    assert "paper" in capsys.readouterr().err
