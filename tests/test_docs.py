"""The README documents every setting, command and signal an operator can use."""

from pathlib import Path

import click

from gethookd import cli
from gethookd.config import SETTINGS

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_readme_opens_with_the_two_commands():
    first_block = README.split("```")[1]
    assert "pip install . && gethookd run" in first_block
    assert "pip install '.[test]' && pytest" in first_block


def test_ci_runs_the_readme_test_command():
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert "pip install '.[test]' && pytest" in ci


def test_every_setting_is_documented():
    missing = [s.name for s in SETTINGS if f"`{s.name}`" not in README]
    assert missing == []


def test_every_command_is_documented():
    def commands(group: click.Group, prefix: str = "") -> list[str]:
        found = []
        for name, command in group.commands.items():
            found.append(prefix + name)
            if isinstance(command, click.Group):
                found += commands(command, prefix + name + " ")
        return found

    missing = [c for c in commands(cli.main) if f"gethookd {c}" not in README]
    assert missing == []


def test_every_signal_is_documented():
    for signal_name in ("SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP"):
        assert signal_name in README
