"""The SQL gate: every statement that could change data, settings or files, or read anything but
datasets, is refused with a 4xx and a clear message, and leaves the database as it was."""

from __future__ import annotations

import pytest

from myapp.backend.store.database import Database
from myapp.settings import load_settings
from tests.backend.test_query_support import (
    api_fingerprint,
    data_dir_listing,
    error_of,
    file_fingerprint,
    make_workspace,
    run,
)
from tests.support.servers import ServerProcess

# (SQL, expected error code, a word the message must contain)
REFUSED: list[tuple[str, str, str]] = [
    # writes
    ("INSERT INTO sales (id) VALUES (-1)", "statement_not_allowed", "INSERT"),
    ("UPDATE sales SET amount = 0", "statement_not_allowed", "UPDATE"),
    ("DELETE FROM sales", "statement_not_allowed", "DELETE"),
    ("TRUNCATE sales", "statement_not_allowed", "DELETE"),
    (
        "MERGE INTO sales USING cities ON sales.city = cities.city WHEN MATCHED THEN DELETE",
        "statement_not_allowed",
        "MERGE",
    ),
    # DDL
    ("CREATE TABLE t2 AS SELECT 1 AS a", "statement_not_allowed", "CREATE"),
    ("CREATE TEMP TABLE t3 (a INTEGER)", "statement_not_allowed", "CREATE"),
    ("CREATE VIEW v AS SELECT * FROM myapp_internal.migrations", "statement_not_allowed", "CREATE"),
    ("CREATE MACRO m(a) AS a + 1", "statement_not_allowed", "CREATE"),
    ("CREATE SEQUENCE s2", "statement_not_allowed", "CREATE"),
    ("CREATE SCHEMA s3", "statement_not_allowed", "CREATE"),
    ("CREATE SECRET (TYPE s3, KEY_ID 'x', SECRET 'y')", "statement_not_allowed", "CREATE"),
    ("DROP TABLE sales", "statement_not_allowed", "DROP"),
    ("ALTER TABLE sales ADD COLUMN x INTEGER", "statement_not_allowed", "ALTER"),
    ("ALTER TABLE sales RENAME TO sold", "statement_not_allowed", "ALTER"),
    ("COMMENT ON TABLE sales IS 'x'", "statement_not_allowed", "ALTER"),
    # files and databases
    ("COPY sales TO 'data/out.csv'", "statement_not_allowed", "COPY"),
    ("COPY (SELECT 1) TO 'out.parquet' (FORMAT parquet)", "statement_not_allowed", "COPY"),
    ("COPY sales FROM 'data/secret.csv'", "statement_not_allowed", "COPY"),
    ("EXPORT DATABASE 'data/dump'", "statement_not_allowed", "EXPORT"),
    ("IMPORT DATABASE 'data/dump'", "statement_not_allowed", "PRAGMA"),
    ("ATTACH ':memory:' AS scratch", "statement_not_allowed", "ATTACH"),
    ("ATTACH 'data/other.db' AS other", "statement_not_allowed", "ATTACH"),
    ("DETACH scratch", "statement_not_allowed", "DETACH"),
    ("USE memory", "statement_not_allowed", "SET"),
    # extensions, settings, maintenance
    ("INSTALL httpfs", "statement_not_allowed", "INSTALL"),
    ("LOAD httpfs", "statement_not_allowed", "LOAD"),
    ("LOAD 'data/evil.duckdb_extension'", "statement_not_allowed", "LOAD"),
    ("SET threads = 1", "statement_not_allowed", "SET"),
    ("SET enable_external_access = true", "statement_not_allowed", "SET"),
    ("RESET memory_limit", "statement_not_allowed", "SET"),
    ("SET VARIABLE x = 1", "statement_not_allowed", "SET"),
    ("PRAGMA enable_profiling", "statement_not_allowed", "PRAGMA"),
    ("PRAGMA force_checkpoint", "statement_not_allowed", "PRAGMA"),
    ("PRAGMA table_info('myapp_internal.migrations')", "statement_not_allowed", "PRAGMA"),
    ("CHECKPOINT", "statement_not_allowed", "CHECKPOINT"),
    ("FORCE CHECKPOINT", "statement_not_allowed", "CHECKPOINT"),
    ("VACUUM", "statement_not_allowed", "VACUUM"),
    ("ANALYZE", "statement_not_allowed", "ANALYZE"),
    ("CALL checkpoint()", "statement_not_allowed", "CALL"),
    ("BEGIN TRANSACTION", "statement_not_allowed", "transaction"),
    ("PREPARE p AS SELECT 1", "statement_not_allowed", "PREPARE"),
    ("UPDATE EXTENSIONS", "statement_not_allowed", "SELECT"),
    # statement types that lie
    ("EXPLAIN ANALYZE INSERT INTO sales (id) VALUES (-1)", "statement_not_allowed", "EXPLAIN"),
    ("EXPLAIN ANALYZE CREATE TABLE t4 AS SELECT 1", "statement_not_allowed", "EXPLAIN"),
    ("PIVOT sales ON city USING sum(amount)", "statement_not_allowed", "several"),
    # sequences
    ("SELECT nextval('myapp_internal.audit_seq')", "function_not_allowed", "nextval"),
    ("SELECT currval('myapp_internal.audit_seq')", "function_not_allowed", "currval"),
    ("SELECT setval('myapp_internal.audit_seq', 1)", "function_not_allowed", "setval"),
    (
        "WITH n AS (SELECT NEXTVAL('myapp_internal.audit_seq') AS v) SELECT * FROM n",
        "function_not_allowed",
        "nextval",
    ),
    (
        "SELECT * FROM sales WHERE id IN (SELECT nextval('myapp_internal.audit_seq'))",
        "function_not_allowed",
        "nextval",
    ),
    # server state
    ("SELECT current_setting('allowed_directories')", "function_not_allowed", "current_setting"),
    ("SELECT write_log('x')", "function_not_allowed", "write_log"),
    ("SELECT getvariable('x')", "function_not_allowed", "getvariable"),
    # several statements
    ("SELECT 1; DROP TABLE sales", "multiple_statements", "one statement"),
    ("SELECT 1; SELECT 2", "multiple_statements", "one statement"),
    # files, inside and outside the data dir, and URLs
    ("SELECT * FROM read_csv('/etc/passwd')", "function_not_allowed", "read_csv"),
    ("SELECT * FROM read_csv_auto('secret.csv')", "function_not_allowed", "read_csv_auto"),
    ("SELECT * FROM read_csv('data/secret.csv')", "function_not_allowed", "read_csv"),
    ("SELECT * FROM 'data/secret.csv'", "table_not_allowed", "not files"),
    ("SELECT * FROM __myapp_staging_0123", "table_not_allowed", "__myapp_staging_0123"),
    ("SELECT * FROM '/etc/passwd'", "table_not_allowed", "not files"),
    ("FROM 'data/.staging/upload.csv'", "table_not_allowed", "not files"),
    ("SELECT * FROM 'data/app.db'", "table_not_allowed", "not files"),
    ("SELECT * FROM read_text('data/secret.csv')", "function_not_allowed", "read_text"),
    ("SELECT * FROM read_blob('/etc/hostname')", "function_not_allowed", "read_blob"),
    ("SELECT * FROM read_parquet('data/x.parquet')", "function_not_allowed", "read_parquet"),
    ("SELECT * FROM read_json('data/x.json')", "function_not_allowed", "read_json"),
    ("SELECT * FROM read_duckdb('data/app.db')", "function_not_allowed", "read_duckdb"),
    ("SELECT * FROM glob('data/*')", "function_not_allowed", "glob"),
    ("SELECT * FROM sniff_csv('data/secret.csv')", "function_not_allowed", "sniff_csv"),
    ("SELECT * FROM parquet_metadata('data/x.parquet')", "function_not_allowed", "parquet"),
    ("SELECT * FROM read_csv('https://example.com/x.csv')", "function_not_allowed", "read_csv"),
    ("SELECT * FROM 'https://example.com/x.parquet'", "table_not_allowed", "not files"),
    (
        "SELECT * FROM query('SELECT * FROM myapp_internal.migrations')",
        "function_not_allowed",
        "query",
    ),
    (
        "SELECT * FROM query_table('myapp_internal.migrations')",
        "function_not_allowed",
        "query_table",
    ),
    ("SELECT * FROM checkpoint()", "function_not_allowed", "checkpoint"),
    ("SELECT * FROM duckdb_settings()", "function_not_allowed", "duckdb_settings"),
    ("SELECT * FROM duckdb_secrets()", "function_not_allowed", "duckdb_secrets"),
    ("SELECT * FROM duckdb_tables()", "function_not_allowed", "duckdb_tables"),
    (
        "SELECT * FROM sales, LATERAL (SELECT * FROM read_csv('/etc/passwd')) x",
        "function_not_allowed",
        "read_csv",
    ),
    # internal tables (accounts, token hashes) and the catalog
    ("SELECT * FROM myapp_internal.migrations", "table_not_allowed", "myapp_internal"),
    ("SELECT * FROM app.myapp_internal.migrations", "table_not_allowed", "myapp_internal"),
    (
        "SELECT * FROM sales JOIN myapp_internal.audit_log ON true",
        "table_not_allowed",
        "myapp_internal",
    ),
    (
        "SELECT (SELECT count(*) FROM myapp_internal.migrations) AS n",
        "table_not_allowed",
        "myapp_internal",
    ),
    ("SELECT * FROM information_schema.tables", "table_not_allowed", "information_schema"),
    ("SELECT * FROM duckdb_tables", "table_not_allowed", "duckdb_tables"),
    ("SELECT * FROM pg_catalog.pg_tables", "table_not_allowed", "pg_catalog"),
    ("SELECT * FROM system.main.duckdb_settings", "table_not_allowed", "duckdb_settings"),
    ("SUMMARIZE myapp_internal.audit_log", "table_not_allowed", "myapp_internal"),
    ("DESCRIBE myapp_internal.migrations", "table_not_allowed", "myapp_internal"),
    ("SHOW ALL TABLES", "statement_not_allowed", "SHOW TABLES"),
    ("SHOW databases", "statement_not_allowed", "SHOW TABLES"),
    ("SELECT * FROM temp.main.x", "table_not_allowed", "temp"),
    ("SELECT * FROM no_such_dataset", "table_not_allowed", "no_such_dataset"),
    # CTEs: a reference the CTE does not cover must not fall through to a file or system view
    (
        'WITH a AS (SELECT * FROM "secret.csv"), "secret.csv" AS (SELECT 1) SELECT * FROM a',
        "table_not_allowed",
        "not files",
    ),
    ('WITH "secret.csv" AS (SELECT 1) SELECT * FROM "secret.csv"', "table_not_allowed", "CTE"),
    ("WITH duckdb_tables AS (SELECT 1) SELECT * FROM duckdb_tables", "table_not_allowed", "CTE"),
]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    root = tmp_path_factory.mktemp("gate")
    data = make_workspace(root)
    server = ServerProcess("backend", root, env={"MYAPP_DATA_DIR": str(data)}).start()
    before = (api_fingerprint(server), data_dir_listing(data))
    yield server, data, before
    server.stop()  # SIGKILL would orphan the gunicorn worker


@pytest.mark.parametrize(("sql", "code", "word"), REFUSED, ids=[r[0][:60] for r in REFUSED])
def test_statement_is_refused_and_changes_nothing(sandbox, sql, code, word):
    server, data, before = sandbox
    error = error_of(run(server, sql), 400)
    assert error["code"] == code, error
    assert word.lower() in error["message"].lower(), error
    assert (api_fingerprint(server), data_dir_listing(data)) == before


def test_refusals_point_at_the_offending_part(sandbox):
    server, _, _ = sandbox
    sql = "SELECT *\nFROM sales s\n  JOIN myapp_internal.audit_log a ON true"
    error = error_of(run(server, sql), 400)
    assert error["detail"]["line"] == 3
    assert error["detail"]["column"] == 8
    assert sql[error["detail"]["position"] :].startswith("myapp_internal.audit_log")

    error = error_of(run(server, "SELECT 'é', nextval('x')"), 400)
    assert error["code"] == "function_not_allowed"
    assert error["detail"]["column"] == 13  # characters, not UTF-8 bytes


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) FROM sales",
        "select count(*) from main.sales",
        "SELECT count(*) FROM app.sales",
        "SELECT count(*) FROM app.main.sales",
        'SELECT "the value", "select" FROM "Odd Name"',
        "FROM sales SELECT count(*)",
        "SELECT * FROM sales s JOIN cities c USING (city) LIMIT 1",
        "WITH big AS (SELECT * FROM sales WHERE amount > 50) SELECT count(*) FROM big",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) "
        "SELECT sum(n) FROM r",
        "SELECT * FROM range(3)",
        "SELECT * FROM generate_series(1, 3)",
        "SELECT unnest([1, 2, 3])",
        "SELECT * FROM unnest([1, 2])",
        "VALUES (1, 'a'), (2, 'b')",
        "DESCRIBE sales",
        "SUMMARIZE cities",
        "SHOW TABLES",
        "SELECT city, sum(amount) FROM sales GROUP BY ALL ORDER BY ALL",
        "SELECT * FROM (PIVOT sales ON city IN ('Oslo', 'Lima') USING sum(amount) GROUP BY paid)",
        "SELECT 1;",
        "SELECT 1 ; ; -- done",
        "SELECT 1 /* closing ; comment */",
        "SELECT 'a;b' AS s; /* trailing */",
        "SELECT $$dollar;quoted$$ AS s",
        "SELECT count(*) FROM sales -- no newline at the end",
        "SELECT * FROM duckdb_functions() LIMIT 1",
    ],
)
def test_read_only_selects_over_datasets_run(sandbox, sql):
    server, _, _ = sandbox
    response = run(server, sql)
    assert response.status_code == 200, response.text
    assert response.json()["columns"]


def test_refused_statements_leave_the_database_file_unchanged(start_server, tmp_path):
    """Read the migrated file, send everything refused to a backend on it, stop, read again."""
    data = make_workspace(tmp_path)
    database = Database(load_settings(data_dir=data))
    database.open()  # migrates, as the backend will
    database.close()
    before = file_fingerprint(data / "app.db")
    server = start_server("backend", env={"MYAPP_DATA_DIR": str(data)}, workdir=tmp_path)
    for sql, code, _ in REFUSED:
        assert run(server, sql).json()["error"]["code"] == code, sql
    assert server.stop() == 0
    assert file_fingerprint(data / "app.db") == before
    assert data_dir_listing(data) == ["secret.csv"]
