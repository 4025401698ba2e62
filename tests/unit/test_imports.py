"""The import contract, checked on the source of every module under myapp/ (imports inside
functions included): the roles stay apart, DuckDB stays in the store, the shared packages stay
below both roles, and no modules import each other round a loop when they load.

A broken rule names the file and line of each import that breaks it.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import myapp
from tests.support.imports import Import, Rule, cycles, scan, within

PACKAGE = Path(myapp.__file__).parent

# Imported by backend, frontend and CLI alike; they import none of those, nor DuckDB. A listed
# package that does not exist (yet) simply has no imports to check.
SHARED = ("myapp.contract", "myapp.models", "myapp.settings", "myapp.client", "myapp.logs")
# Where DuckDB may be imported: the store (all SQL lives there) and the lake code.
DUCKDB_HOMES = ("myapp.backend.store", "myapp.backend.lake")
# What sits above both roles: it starts them (server, asgi) or is the command line.
ABOVE_ROLES = ("myapp.server", "myapp.asgi", "myapp.cli", "myapp.commands")

RULES = [
    Rule(
        "the frontend reaches data only over HTTP (frontend/api_client.py): it never imports "
        "myapp.backend or duckdb",
        importers=("myapp.frontend",),
        forbidden=("myapp.backend", "duckdb", *ABOVE_ROLES),
    ),
    Rule(
        "the backend never imports the frontend, nor what starts both roles or is the CLI",
        importers=("myapp.backend",),
        forbidden=("myapp.frontend", *ABOVE_ROLES),
    ),
    Rule(
        "only myapp/backend/store/ and myapp/backend/lake/ import duckdb (elsewhere, use "
        "myapp.backend.store.engine: Cursor, DatabaseError, …)",
        importers=("myapp",),
        exempt=DUCKDB_HOMES,
        forbidden=("duckdb",),
    ),
    Rule(
        "the shared packages (" + ", ".join(SHARED) + ") import only each other from myapp, "
        "and never duckdb",
        importers=SHARED,
        forbidden=("myapp", "duckdb"),
        allowed=SHARED,
    ),
]

# Imports allowed to break a rule for now, each with its reason (none today); the test fails for
# any other, and for an entry whose file exists and no longer needs it.
KNOWN: dict[tuple[str, str], str] = {}


def broken(imports: list[Import], rules: list[Rule]) -> list[str]:
    return [
        f"{found.where} imports {found.target}: {rule.text}"
        for rule in rules
        for found in imports
        if rule.broken_by(found) and not known(found)
    ]


def known(found: Import) -> bool:
    return any(found.path == path and within(found.target, [t]) for path, t in KNOWN)


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return scan(PACKAGE)


def test_every_module_was_read(imports):
    files = {found.path for found in imports}
    assert "myapp/frontend/app.py" in files and "myapp/backend/app.py" in files
    assert any(found.target == "duckdb" for found in imports)
    assert any(not found.module_level for found in imports)  # imports inside functions count


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.text.split(" (")[0][:60])
def test_the_import_rule_holds(imports, rule):
    problems = broken(imports, [rule])
    assert not problems, "\n".join(problems)


def test_no_modules_import_each_other_round_a_loop(imports):
    found = cycles(imports, "myapp")
    assert not found, "\n".join(cycle.describe() for cycle in found)


def test_each_known_exception_is_still_needed(imports):
    for (path, target), why in KNOWN.items():
        if not (PACKAGE.parent / path).exists():
            continue
        still = [f for f in imports if f.path == path and within(f.target, [target])]
        assert still, f"{path} no longer imports {target} ({why}): take it off KNOWN"


# -- the checker finds what it must ------------------------------------------------------------
def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def test_the_checker_finds_imports_in_functions_relative_imports_and_cycles(tmp_path):
    write(
        tmp_path,
        {
            "app/__init__.py": "",
            "app/backend/__init__.py": "",
            "app/backend/store.py": "import duckdb\n",
            "app/backend/secret.py": "X = 1\n",
            "app/frontend/__init__.py": "",
            "app/frontend/views.py": """\
                from __future__ import annotations
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    from ..backend.store import thing
                def page():
                    from app.backend import secret
                    import importlib
                    return importlib.import_module("duckdb")
                """,
            "app/a.py": "from . import b\n",
            "app/b.py": "from .c import name\n",
            "app/c.py": "from app.a import x\nname = 1\n",
            "app/lazy.py": "def f():\n    from app import lazy2\n",
            "app/lazy2.py": "from app import lazy\n",
        },
    )
    found = scan(tmp_path / "app")
    rule = Rule("frontend apart", importers=("app.frontend",), forbidden=("app.backend", "duckdb"))
    assert sorted(f"{f.where} {f.target}" for f in found if rule.broken_by(f)) == [
        "app/frontend/views.py:4 app.backend.store",
        "app/frontend/views.py:6 app.backend.secret",
        "app/frontend/views.py:8 duckdb",
    ]
    (cycle,) = cycles(found, "app")
    assert cycle.modules == ["app.a", "app.b", "app.c"]
    assert "app/c.py:1 app.c imports app.a" in cycle.describe()
