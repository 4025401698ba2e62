"""Client commands of the CLI: each resource's module lists its click commands in COMMANDS."""

from __future__ import annotations

import click

from . import accounts, backups, datasets, query

COMMANDS: list[click.Command] = [
    *datasets.COMMANDS,
    *query.COMMANDS,
    *accounts.COMMANDS,
    *backups.COMMANDS,
]
