"""The command line: help text, and one clear line with exit code 2 for every bad setting."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from myapp.cli import main


def run(args: list[str], env: dict[str, str] | None = None):
    return CliRunner().invoke(main, args, env=env or {}, catch_exceptions=False)


def test_help_lists_serve_and_every_option_has_help():
    result = run(["--help"])
    assert result.exit_code == 0
    assert "serve" in result.output
    serve = main.commands["serve"]
    for param in serve.params:
        assert param.help, f"--{param.name} has no help text"
    result = run(["serve", "--help"])
    assert result.exit_code == 0
    for flag in ("--role", "--host", "--port", "--workers", "--reload"):
        assert flag in result.output


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["serve", "--port", "abc"], {}, "MYAPP_PORT"),
        (["serve", "--port", "70000"], {}, "MYAPP_PORT"),
        (["serve"], {"MYAPP_PORT": "0"}, "MYAPP_PORT"),
        (["serve"], {"MYAPP_QUERY_TIMEOUT_MS": "soon"}, "MYAPP_QUERY_TIMEOUT_MS"),
        (["serve"], {"MYAPP_MAX_UPLOAD_BYTES": "2 gigs"}, "MYAPP_MAX_UPLOAD_BYTES"),
        (["serve"], {"MYAPP_MEMORY_LIMIT": "lots"}, "MYAPP_MEMORY_LIMIT"),
        (["serve"], {"MYAPP_BACKEND_URL": "backend:12000"}, "MYAPP_BACKEND_URL"),
        (["serve", "--role", "backend", "--workers", "2"], {}, "exactly one process"),
        (["serve", "--role", "all", "--workers", "3"], {}, "one process"),
        (["serve", "--role", "frontend", "--host", "0.0.0.0"], {}, "MYAPP_SECRET_KEY"),
        (
            ["serve", "--role", "all", "--host", "0.0.0.0"],
            {"MYAPP_SECRET_KEY": "change-me"},
            "MYAPP_SECRET_KEY",
        ),
    ],
)
def test_invalid_settings_exit_2_with_one_line(args, env, expected):
    result = run(args, env)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("myapp: ")
    assert expected in lines[0]
    assert "Traceback" not in result.output


def test_data_dir_that_cannot_be_created_exits_2(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = run(["serve", "--role", "backend"], {"MYAPP_DATA_DIR": str(blocker / "data")})
    assert result.exit_code == 2
    assert "MYAPP_DATA_DIR" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_invalid_role_in_environment_exits_2():
    result = run(["serve"], {"MYAPP_ROLE": "database"})
    assert result.exit_code == 2
    assert "MYAPP_ROLE" in result.output


def test_dotenv_file_is_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("MYAPP_PORT=notaport\n")
    result = run(["serve"])
    assert result.exit_code == 2
    assert "MYAPP_PORT" in result.output
