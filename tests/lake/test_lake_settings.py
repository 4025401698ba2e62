"""MYAPP_CATALOG_URL and MYAPP_LAKE_DATA_PATH: both or neither, checked at start in one line
(exit 2, no traceback, never the password), and the catalog reached before anything binds."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from myapp.cli import main
from myapp.settings import Settings
from tests.support.servers import free_port

SECRET = "s3cr3t-pw"


def serve(env: dict[str, str], tmp_path, role: str = "backend"):
    env = {"MYAPP_DATA_DIR": str(tmp_path / "data"), **env}
    return CliRunner().invoke(
        main,
        ["serve", "--role", role, "--port", str(free_port())],
        env=env,
        catch_exceptions=False,
    )


def one_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("myapp: "), result.output
    assert "Traceback" not in result.output and SECRET not in result.output
    return lines[0]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"MYAPP_CATALOG_URL": f"postgresql://u:{SECRET}@db/lake"}, "MYAPP_LAKE_DATA_PATH is not"),
        ({"MYAPP_LAKE_DATA_PATH": "/srv/lake"}, "MYAPP_CATALOG_URL is not"),
        ({"MYAPP_CATALOG_URL": f"mysql://u:{SECRET}@db/lake"}, "PostgreSQL URL"),
        ({"MYAPP_CATALOG_URL": f"postgresql://u:{SECRET}@/lake"}, "names no host"),
        ({"MYAPP_CATALOG_URL": f"postgresql://u:{SECRET}@db:5432"}, "names no database"),
        ({"MYAPP_CATALOG_URL": f"postgresql://u:{SECRET}@db:99999/x"}, "expected a URL"),
        ({"MYAPP_CATALOG_URL": f"u:{SECRET}@db/lake"}, "MYAPP_CATALOG_URL"),
        ({"MYAPP_LAKE_DATA_PATH": "relative/lake"}, "absolute directory"),
        ({"MYAPP_LAKE_DATA_PATH": "s3://"}, "needs a bucket"),
        ({"MYAPP_LAKE_DATA_PATH": "gs://bucket/x"}, "MYAPP_LAKE_DATA_PATH"),
    ],
)
def test_bad_lake_settings_exit_2_with_one_line(tmp_path, env, expected):
    assert expected in one_line(serve(env, tmp_path))


def test_a_data_path_that_cannot_be_made_exits_2(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = {
        "MYAPP_CATALOG_URL": f"postgresql://u:{SECRET}@127.0.0.1:{free_port()}/lake",
        "MYAPP_LAKE_DATA_PATH": str(blocker / "lake"),
    }
    assert "MYAPP_LAKE_DATA_PATH" in one_line(serve(env, tmp_path))


def test_half_a_pair_is_refused_by_the_frontend_too(tmp_path):
    half = serve({"MYAPP_LAKE_DATA_PATH": "/srv/lake"}, tmp_path, role="frontend")
    assert "MYAPP_CATALOG_URL is not" in one_line(half)


def test_a_backend_that_cannot_reach_postgresql_exits_2(tmp_path):
    env = {
        # Nothing listens there: refused at once.
        "MYAPP_CATALOG_URL": f"postgresql://myapp:{SECRET}@127.0.0.1:{free_port()}/lake",
        "MYAPP_LAKE_DATA_PATH": str(tmp_path / "lake"),
    }
    line = one_line(serve(env, tmp_path))
    assert "cannot reach the PostgreSQL catalog at 127.0.0.1:" in line and "/lake" in line
    assert not (tmp_path / "data" / "app.db").exists()


def test_wrong_password_exits_2(postgres_cluster, tmp_path):
    wrong = postgres_cluster.url.replace(postgres_cluster.password, SECRET)
    env = {"MYAPP_CATALOG_URL": wrong, "MYAPP_LAKE_DATA_PATH": str(tmp_path / "lake")}
    line = one_line(serve(env, tmp_path))
    assert "cannot reach the PostgreSQL catalog" in line and "password" in line
    assert not (tmp_path / "data" / "app.db").exists()


def test_catalog_url_becomes_the_libpq_string_duckdb_takes():
    settings = Settings(
        catalog_url="postgresql://my%20user:p%27w%20d@db.internal:6432/lake%20one?sslmode=require",
        lake_data_path="/srv/lake",
    )
    assert settings.lake_mode and settings.lake_data_path == "/srv/lake/"
    assert settings.catalog_libpq == (
        "dbname='lake one' host=db.internal port=6432 user='my user' password='p\\'w d' "
        "sslmode=require"
    )
    assert "p'w d" not in repr(settings)
    plain = Settings(catalog_url="postgres://u@h/d", lake_data_path="s3://bucket/lake")
    assert plain.catalog_libpq == "dbname=d host=h user=u"
    assert plain.lake_data_path == "s3://bucket/lake/"
    assert not Settings().lake_mode
