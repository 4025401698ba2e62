"""Client commands of the CLI: each resource's module lists its click commands in COMMANDS."""

from __future__ import annotations

import click

from . import accounts, backups, datasets

COMMANDS: list[click.Command] = [*datasets.COMMANDS, *accounts.COMMANDS, *backups.COMMANDS]
