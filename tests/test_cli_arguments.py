"""Command-line text that is not UTF-8 is a usage error, not a traceback.

Python decodes argv with surrogateescape (PEP 383): ``M\\xfcnchen`` typed in a
Latin-1 terminal arrives as ``"M\\udcfcnchen"``, which no database driver (nor the
user-id hasher, nor the token signer) can encode.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from flask import Flask

from flask_eventtrack import cli as cli_module
from flask_eventtrack.extension import EventTrackState

BAD = "M\udcfcnchen"  # sys.argv for the Latin-1 bytes b"M\xfcnchen" in a UTF-8 locale
ROOT = Path(__file__).resolve().parent.parent

# Every text option and argument of every command that takes one, with its name in the error.
CASES = [
    (["export", "--tenant", BAD], "'--tenant'"),
    (["export", "--type", BAD], "'--type'"),
    (["export", "--source", BAD], "'--source'"),
    (["export", "--user", BAD], "'--user'"),
    (["keys", "create", "--tenant", BAD], "'--tenant'"),
    (["keys", "create", "--tenant", "shop", "--label", BAD], "'--label'"),
    (["keys", "list", "--tenant", BAD], "'--tenant'"),
    (["keys", "revoke", BAD], "'KEY_ID'"),
    (["token", "--tenant", BAD], "'--tenant'"),
    (["definitions", "--tenant", BAD], "'--tenant'"),
    (["scenarios", "--tenant", BAD], "'--tenant'"),
    (["consumption", "--tenant", BAD], "'--tenant'"),
    (["consumption", "--user", BAD], "'--user'"),
    (["consumption", "--item-type", BAD], "'--item-type'"),
    (["consumption", "--item-id", BAD], "'--item-id'"),
]


@pytest.mark.parametrize(("args", "name"), CASES, ids=[" ".join(a[:-1]) for a, _ in CASES])
def test_text_that_is_not_utf8_is_a_usage_error(
    app: Flask, state: EventTrackState, args: list[str], name: str
) -> None:
    result = app.test_cli_runner().invoke(cli_module.cli, args)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for {name}: is not valid UTF-8 text" in result.output
    assert state.store.list_keys() == []


def test_every_text_parameter_is_checked() -> None:
    """A command added later (by a dialect too) gets the check without asking for it."""

    def params(command: click.Command) -> list[click.Parameter]:
        found = list(command.params)
        for sub in getattr(command, "commands", {}).values():
            found += params(sub)
        return found

    texts = [p for p in params(cli_module.cli) if isinstance(p.type, click.types.StringParamType)]
    assert len(texts) == len(CASES), "a new text parameter: add it to CASES"
    assert all(isinstance(p.type, cli_module.Text) for p in texts)


def test_non_ascii_utf8_text_is_still_accepted(app: Flask, state: EventTrackState) -> None:
    runner = app.test_cli_runner()
    created = runner.invoke(cli_module.cli, ["keys", "create", "--tenant", "München", "--label", "café"])
    assert created.exit_code == 0, created.output
    assert [(k["tenant"], k["label"]) for k in state.store.list_keys("München")] == [("München", "café")]
    assert runner.invoke(cli_module.cli, ["export", "--tenant", "München"]).exit_code == 0


def test_a_latin1_argument_on_a_real_command_line(tmp_path: Any) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FLASK_")},
        "FLASK_SECRET_KEY": "s",
        "FLASK_EVENTTRACK_STORE_URL": f"sqlite:///{tmp_path}/e.db",
        "LC_ALL": "C.UTF-8",
        "PYTHONPATH": str(ROOT),
    }
    command = [sys.executable, "-m", "flask", "--app", "example_app", "eventtrack", "export"]
    done = subprocess.run([*command, b"--tenant", b"M\xfcnchen"], env=env, capture_output=True, cwd=tmp_path)
    assert b"Traceback" not in done.stderr, done.stderr.decode(errors="replace")
    assert done.returncode == 2
    assert b"Invalid value for '--tenant': is not valid UTF-8 text" in done.stderr
