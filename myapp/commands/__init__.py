"""Client commands of the CLI: each resource's module lists its click commands in COMMANDS."""

from __future__ import annotations

import click

from . import (
    accounts,
    backups,
    dashboards,
    datasets,
    datasets_admin,
    lake,
    query,
    saved_queries,
)

COMMANDS: list[click.Command] = [
    *datasets.COMMANDS,
    *datasets_admin.COMMANDS,
    *query.COMMANDS,
    *saved_queries.COMMANDS,
    *dashboards.COMMANDS,
    *accounts.COMMANDS,
    *backups.COMMANDS,
    *lake.COMMANDS,
]
