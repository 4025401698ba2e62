"""`myapp` shell completion scripts for bash, zsh and fish, as README tells users to make them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.servers import clean_env

MARKERS = {
    "bash": "complete -o nosort -F _myapp_completion myapp",
    "zsh": "compdef _myapp_completion myapp",
    "fish": "complete --no-files --command myapp",
}


def _myapp(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    # The `myapp` script of this environment, as installed; without one (a plain checkout),
    # the same entry point under the same program name.
    script = Path(sys.executable).parent / "myapp"
    command = (
        [str(script)]
        if script.exists()
        else [sys.executable, "-c", "from myapp.cli import main; main(prog_name='myapp')"]
    )
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env=clean_env(env), timeout=60
    )


@pytest.mark.parametrize("shell", sorted(MARKERS))
def test_completion_script_is_produced(shell):
    made = _myapp({"_MYAPP_COMPLETE": f"{shell}_source"})
    assert made.returncode == 0, made.stderr
    assert MARKERS[shell] in made.stdout
    assert "_MYAPP_COMPLETE" in made.stdout


def test_bash_completion_answers_with_commands_and_options():
    subcommands = _myapp(
        {"_MYAPP_COMPLETE": "bash_complete", "COMP_WORDS": "myapp que", "COMP_CWORD": "1"}
    )
    assert subcommands.returncode == 0, subcommands.stderr
    offered = {line.split(",", 1)[1] for line in subcommands.stdout.splitlines()}
    assert {"query", "queries"} <= offered
    roles = _myapp(
        {"_MYAPP_COMPLETE": "bash_complete", "COMP_WORDS": "myapp serve --role ", "COMP_CWORD": "3"}
    )
    offered = {line.split(",", 1)[1] for line in roles.stdout.splitlines()}
    assert offered == {"backend", "frontend", "all"}
