"""README.md stays true: its commands are the ones CI runs, its config table is complete."""

from __future__ import annotations

import re
from pathlib import Path

from myapp.settings import Settings

ROOT = Path(__file__).parents[1]


def shell_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```sh\n(.*?)```", text, re.S)]


def test_ci_runs_exactly_the_readme_test_command():
    blocks = shell_blocks((ROOT / "README.md").read_text())
    assert len(blocks) == 2, "the quickstart is two commands: run, and test"
    run_command, test_command = blocks
    assert "myapp serve --role all" in run_command
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert ci[-1].strip() == test_command


def test_every_setting_is_in_the_configuration_table():
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `(MYAPP_[A-Z0-9_]+)` \|", readme, re.M))
    expected = {f"MYAPP_{name.upper()}" for name in Settings.model_fields}
    assert expected == documented
