"""CLI commands for accounts."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
