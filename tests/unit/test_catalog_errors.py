"""Which DuckDB errors mean the lake's PostgreSQL is away (a 503 while it lasts) rather than a
fault of the request: the messages seen while PostgreSQL was stopped under load."""

from __future__ import annotations

import pytest

from myapp.backend.lake.engine import unreachable_text


@pytest.mark.parametrize(
    "message",
    [
        'Failed to execute query "BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ": server '
        "closed the connection unexpectedly",
        "Failed to query most recent snapshot for DuckLake: Failed to execute query ...: "
        "server closed the connection unexpectedly",
        # The first read after PostgreSQL went away, on a pooled connection whose transaction
        # it ended (was a 500).
        "TransactionContext Error: Failed to get data file list from DuckLake: Current "
        "transaction is aborted (please ROLLBACK)",
        "IO Error: Unable to connect to Postgres at host=127.0.0.1: Connection refused",
    ],
)
def test_postgres_being_away_is_recognised(message):
    assert unreachable_text(message)


@pytest.mark.parametrize(
    "message",
    [
        "Conversion Error: Could not convert string 'Oslo' to INT32",
        # A statement's own failure aborts only DuckDB's transaction, not DuckLake's catalog.
        "TransactionContext Error: Current transaction is aborted (please ROLLBACK)",
        "Catalog Error: Table with name sales does not exist!",
    ],
)
def test_a_request_s_own_errors_are_not(message):
    assert not unreachable_text(message)
