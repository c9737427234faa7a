"""The docs keep up with the code: every setting and CLI command is documented."""

from __future__ import annotations

from pathlib import Path

import click

from flask_eventtrack.cli import cli
from flask_eventtrack.config import all_defaults

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_configuration_key_is_in_the_readme() -> None:
    missing = [key for key in all_defaults() if f"`{key}`" not in README]
    assert missing == []


def test_every_cli_command_is_in_the_readme() -> None:
    names = []
    for name, command in cli.commands.items():
        names.append(name)
        if isinstance(command, click.Group):
            names += [f"{name} {sub}" for sub in command.commands]
    missing = [name for name in names if f"flask eventtrack {name}" not in README]
    assert missing == []


def test_readme_first_commands_are_what_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "pip install -e '.[test]'" in README and "pip install -q -e '.[test]'" in ci
    assert "python -m pytest" in README and "python -m pytest" in ci
