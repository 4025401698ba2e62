"""Helpers the query, saved-query and export tests share (this module holds no tests).

A workspace is a data dir whose DuckDB file already holds datasets (tables in schema `main`),
written with the duckdb module before a backend opens it; the backend migrates it on open.
"""

from __future__ import annotations

import atexit
import json
import threading
from pathlib import Path
from typing import Any

import duckdb
import httpx

from tests.support.servers import ServerProcess

SALES_ROWS = 25_000
CITIES = ("Oslo", "Lima", "Pune", "Kyiv", "Faro")

# A query DuckDB cannot finish in any test's lifetime (10^11 row pairs), yet stops at once when
# interrupted: for time limits, cancel and progress.
ENDLESS_SQL = (
    "SELECT count(*) AS n FROM range(1000000) a, range(100000) b WHERE a.range * b.range = 7"
)


def make_workspace(root: Path) -> Path:
    """A data dir with datasets `sales` and `cities`, and a CSV file lying in the data dir."""
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(data / "app.db")) as conn:
        conn.execute(
            f"""
            CREATE TABLE sales AS
            SELECT range AS id,
                   ['Oslo', 'Lima', 'Pune', 'Kyiv', 'Faro'][range % 5 + 1] AS city,
                   (range % 100)::DOUBLE AS amount,
                   (DATE '2024-01-01' + (range % 366)::INTEGER) AS day,
                   range % 2 = 0 AS paid,
                   ((range % 1000) / 100)::DECIMAL(10, 2) AS price
            FROM range({SALES_ROWS})
            """
        )
        conn.execute(
            "CREATE TABLE cities AS SELECT * FROM (VALUES ('Oslo', 'NO', 709000), "
            "('Lima', 'PE', 10092000), ('Pune', 'IN', 7276000), ('Kyiv', 'UA', 2952000), "
            "('Faro', 'PT', 67000)) AS t(city, country, population)"
        )
        conn.execute('CREATE TABLE "Odd Name" AS SELECT 1 AS "the value", \'x\' AS "select"')
        # An upload half-way through loading: its staging table is not a dataset yet.
        conn.execute("CREATE TABLE __myapp_staging_0123 AS SELECT 'not yet' AS secret")
        # Catalogued as datasets stored in the main database, as a workspace made before
        # datasets had files of their own: the backend moves each into its file on open, and
        # user SQL (which runs in worker processes that see only those files) reads them there.
        register_datasets(conn, ["sales", "cities", "Odd Name"])
    # Files in the data dir are inside DuckDB's allowed directories: the gate must keep user
    # SQL away from them.
    (data / "secret.csv").write_text("user,password\nroot,hunter2\n")
    (data / ".staging").mkdir(exist_ok=True)
    (data / ".staging" / "upload.csv").write_text("a,b\n1,2\n")
    return data


def register_datasets(conn: duckdb.DuckDBPyConnection, names: list[str]) -> None:
    conn.execute("CREATE SCHEMA IF NOT EXISTS myapp_internal")
    conn.execute("CREATE SEQUENCE IF NOT EXISTS myapp_internal.dataset_version_seq")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS myapp_internal.datasets ("
        "name VARCHAR PRIMARY KEY, row_count BIGINT NOT NULL, version BIGINT NOT NULL, "
        "source_filename VARCHAR, source_format VARCHAR NOT NULL, source_compression VARCHAR, "
        "source_bytes BIGINT NOT NULL, created_at TIMESTAMPTZ NOT NULL, "
        "updated_at TIMESTAMPTZ NOT NULL, created_by VARCHAR, updated_by VARCHAR)"
    )
    for name in names:
        (rows,) = conn.execute(f"SELECT count(*) FROM {json.dumps(name)}").fetchone()
        conn.execute(
            "INSERT INTO myapp_internal.datasets VALUES ($name, $rows, "
            "nextval('myapp_internal.dataset_version_seq'), NULL, 'csv', NULL, 0, now(), now(), "
            "NULL, NULL)",
            {"name": name, "rows": rows},
        )


def start_workspace(start_server, root: Path, **env: str) -> ServerProcess:
    data = make_workspace(root)
    return start_server("backend", env={"MYAPP_DATA_DIR": str(data), **env}, workdir=root)


# One client for all requests: a new httpx client per request costs tens of milliseconds (it
# builds an SSL context), more than the queries under test.
CLIENT = httpx.Client(timeout=120)
# Closed before the interpreter's own teardown, so its kept-alive sockets are not reported.
atexit.register(CLIENT.close)


def run(server: ServerProcess, sql: str, **body: Any) -> httpx.Response:
    return CLIENT.post(server.url + "/api/query", json={"sql": sql, **body})


def rows(server: ServerProcess, sql: str, **body: Any) -> list[list[Any]]:
    response = run(server, sql, **body)
    assert response.status_code == 200, response.text
    return response.json()["rows"]


def api_fingerprint(server: ServerProcess) -> list[Any]:
    """What the datasets hold, as seen through the API."""
    return rows(
        server,
        "SELECT 'sales', count(*), sum(hash(id, city, amount, day, paid, price)) FROM sales "
        "UNION ALL SELECT 'cities', count(*), sum(hash(city, country, population)) FROM cities "
        "UNION ALL SELECT 'tables', count(*), string_agg(name, ',' ORDER BY name) "
        "FROM (SHOW TABLES)",
    )


def data_dir_listing(data: Path) -> list[str]:
    """Every file under the data dir except DuckDB's own (database, WAL, spill files, the
    datasets' files)."""
    return sorted(
        str(path.relative_to(data))
        for path in data.rglob("*")
        if path.is_file()
        and not path.name.startswith("app.db")
        and ".tmp" not in path.parts
        and not (path.parent.name == "datasets" and path.suffix == ".duckdb")
    )


def file_fingerprint(db_path: Path) -> dict[str, Any]:
    """Everything a statement could have changed, read from a stopped backend's database file."""
    with duckdb.connect(str(db_path), read_only=True) as conn:
        tables = {}
        for schema, name in conn.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() ORDER BY ALL"
        ).fetchall():
            qualified = f'"{schema}"."{name}"'
            tables[qualified] = conn.execute(
                f"SELECT count(*), sum(hash(COLUMNS(*))) FROM {qualified}"
            ).fetchall()
        return {
            "tables": tables,
            "schemas": conn.execute(
                "SELECT database_name, schema_name FROM duckdb_schemas() ORDER BY ALL"
            ).fetchall(),
            "views": conn.execute(
                "SELECT schema_name, view_name, sql FROM duckdb_views() WHERE NOT internal "
                "ORDER BY ALL"
            ).fetchall(),
            "sequences": conn.execute(
                "SELECT schema_name, sequence_name, last_value FROM duckdb_sequences() ORDER BY ALL"
            ).fetchall(),
            "macros": conn.execute(
                "SELECT schema_name, function_name FROM duckdb_functions() "
                "WHERE NOT internal ORDER BY ALL"
            ).fetchall(),
            "indexes": conn.execute(
                "SELECT schema_name, index_name FROM duckdb_indexes() ORDER BY ALL"
            ).fetchall(),
        }


class Background:
    """Send one request in a thread; `.response` once `.join()` returns."""

    def __init__(self, method: str, url: str, **kwargs: Any) -> None:
        self.response: httpx.Response | None = None
        self.error: BaseException | None = None

        def send() -> None:
            try:
                self.response = CLIENT.request(method, url, **kwargs)
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=send, daemon=True)
        self.thread.start()

    def join(self, timeout: float = 60) -> httpx.Response:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the request did not finish"
        if self.error:
            raise self.error
        assert self.response is not None
        return self.response


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    """The error body, after checking its shape: status, JSON, one sentence, a code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert error["message"].endswith("."), error
    assert error["code"] and error["code"] == error["code"].lower()
    return error


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
