"""myapp.client.Client against a real backend, as a notebook user calls it."""

from __future__ import annotations

import os

import pyarrow.parquet as pq
import pytest

from myapp.client import ApiError, ApiUnavailable, Client, Result
from tests.support.servers import free_port

CSV = "city,amount,day\nOslo,10,2024-01-02\nBergen,25,2024-01-03\nOslo,40,2024-01-04\n"


@pytest.fixture
def client(backend_server):
    with Client(backend_server.url) as api:
        yield api


@pytest.fixture
def sales(client, tmp_path) -> str:
    name = "client_sales_" + os.urandom(3).hex()
    path = tmp_path / f"{name}.csv"
    path.write_text(CSV)
    loaded = client.upload(path)
    assert loaded["rows_loaded"] == 3
    assert loaded["dataset"]["name"] == name
    return name


def test_upload_lists_and_queries_to_dicts(client, sales, tmp_path):
    assert sales in [d["name"] for d in client.datasets()]
    assert client.dataset(sales)["row_count"] == 3
    rows = client.query(
        f"SELECT city, sum(amount) AS total FROM {sales} WHERE amount >= $min "
        "GROUP BY city ORDER BY city",
        {"min": 20},
    )
    assert isinstance(rows, Result)
    assert rows == [{"city": "Bergen", "total": 25}, {"city": "Oslo", "total": 40}]
    assert [c["name"] for c in rows.columns] == ["city", "total"]
    assert rows.truncated is False
    capped = client.query(f"SELECT * FROM {sales}", limit=2)
    assert len(capped) == 2 and capped.truncated is True

    # Replace and append by mode, with the name given.
    more = tmp_path / "more.csv"
    more.write_text("city,amount,day\nTromsø,5,2024-01-05\n")
    appended = client.upload(more, sales, mode="append")
    assert appended["dataset"]["row_count"] == 4


def test_query_to_arrow_polars_and_pandas_keeps_types_and_every_row(client, sales):
    sql = f"SELECT city, amount, day FROM {sales} ORDER BY amount"
    table = client.query(sql, to="arrow")
    assert table.num_rows == 3
    assert str(table.schema.field("day").type) == "date32[day]"
    assert table.column("amount").to_pylist() == [10, 25, 40]

    polars = pytest.importorskip("polars")
    frame = client.query(sql, to="polars")
    assert isinstance(frame, polars.DataFrame)
    assert frame["city"].to_list() == ["Oslo", "Bergen", "Oslo"]
    assert frame.schema["day"] == polars.Date

    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install pandas"):
            client.query(sql, to="pandas")
    else:
        assert list(client.query(sql, to="pandas")["amount"]) == [10, 25, 40]


def test_export_writes_the_file_only_when_whole(client, sales, tmp_path):
    parquet = tmp_path / "out.parquet"
    size = client.export(f"SELECT * FROM {sales} WHERE amount > $v", parquet, {"v": 15})
    assert size == parquet.stat().st_size
    assert pq.read_table(parquet).num_rows == 2
    csv = tmp_path / "out.csv"
    client.export(f"SELECT city FROM {sales} ORDER BY amount", csv)
    assert csv.read_text() == "city\nOslo\nBergen\nOslo\n"

    broken = tmp_path / "broken.csv"
    with pytest.raises(ApiError) as refused:
        client.export("SELECT nope FROM nowhere_at_all", broken)
    assert refused.value.status == 400
    assert not broken.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    with pytest.raises(ValueError, match="format"):
        client.export(f"SELECT 1 FROM {sales}", tmp_path / "out.docx")


def test_saved_query_runs_with_parameters_and_exports(client, sales, tmp_path):
    slug = "client-q-" + os.urandom(3).hex()
    client.request(
        "POST",
        "/api/queries",
        json={
            "slug": slug,
            "title": f"Amounts from {slug}",
            "sql": f"SELECT city, amount FROM {sales} WHERE amount >= $min ORDER BY amount",
            "parameters": [{"name": "min", "type": "integer", "default": 20}],
        },
    )
    saved = client.saved_query(slug)
    assert saved.info()["slug"] == slug
    assert saved.run() == [{"city": "Bergen", "amount": 25}, {"city": "Oslo", "amount": 40}]
    assert saved.run({"min": 30}) == [{"city": "Oslo", "amount": 40}]
    assert saved.run({"min": 0}, to="arrow").num_rows == 3
    out = tmp_path / "saved.ndjson"
    saved.export(out, {"min": 30})
    assert out.read_text().strip() == '{"city":"Oslo","amount":40}'
    with pytest.raises(ApiError) as missing:
        client.saved_query("no-such-query-here").run()
    assert (missing.value.status, missing.value.code) == (404, "query_not_found")


def test_errors_carry_status_code_message_and_detail(client, sales):
    with pytest.raises(ApiError) as bad:
        client.query(f"SELECT amout FROM {sales}")
    error = bad.value
    assert error.status == 400
    assert error.code and error.message
    assert str(error).endswith(f"(400 {error.code})")
    with pytest.raises(ApiError) as missing:
        client.dataset("no_such_dataset_here")
    assert (missing.value.status, missing.value.code) == (404, "dataset_not_found")

    with Client(f"http://127.0.0.1:{free_port()}") as down, pytest.raises(ApiUnavailable) as off:
        down.datasets()
    assert off.value.status is None
    assert "cannot reach the backend" in off.value.message


def test_a_token_is_sent_and_a_bad_one_refused(start_server):
    from tests.support.accounts import ADMIN_TOKEN, secured_env

    server = start_server("backend", env=secured_env())
    with Client(server.url, ADMIN_TOKEN) as api:
        assert api.datasets() == []
    with Client(server.url) as anonymous, pytest.raises(ApiError) as refused:
        anonymous.datasets()
    assert refused.value.status == 401
    with Client(server.url, "wrong-token") as wrong, pytest.raises(ApiError) as invalid:
        wrong.datasets()
    assert invalid.value.code == "invalid_token"
