"""The contract's pure rules: type classes, the operator table, dataset names, cell text."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import get_args

import pytest

from myapp.contract import browser_config, cells, filters, formats, names, roles, types


# -- type classes ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        ("TINYINT", "integer"),
        ("UBIGINT", "integer"),
        ("HUGEINT", "integer"),
        ("UHUGEINT", "integer"),
        ("DOUBLE", "number"),
        ("FLOAT", "number"),
        ("DECIMAL(18,3)", "number"),
        ("DECIMAL(18, 3)", "number"),
        ("DATE", "temporal"),
        ("TIME", "temporal"),
        ("TIME WITH TIME ZONE", "temporal"),
        ("TIMESTAMP", "temporal"),
        ("TIMESTAMP_NS", "temporal"),
        ("TIMESTAMP WITH TIME ZONE", "temporal"),
        ("BOOLEAN", "boolean"),
        ("VARCHAR", "text"),
        ("varchar", "text"),
        ("INTERVAL", "other"),
        ("UUID", "other"),
        ("BLOB", "other"),
        ("JSON", "other"),
        ("INTEGER[]", "other"),
        ("STRUCT(a INTEGER)", "other"),
        ("", "other"),
        (None, "other"),
    ],
)
def test_type_class(dtype, expected):
    assert types.type_class(dtype) == expected


def test_type_predicates_agree_with_the_classes():
    assert types.is_numeric("DECIMAL(9,2)") and types.is_numeric("BIGINT")
    assert not types.is_numeric("DATE") and not types.is_numeric("VARCHAR")
    assert types.is_temporal("TIME") and not types.is_temporal("INTERVAL")
    assert types.is_nested("INTEGER[]") and types.is_nested("MAP(VARCHAR, INTEGER)")
    assert not types.is_nested("VARCHAR")
    assert {t for t in types.INTEGER_TYPES if types.type_class(t) != "integer"} == set()
    assert {t for t in types.FLOAT_TYPES if types.type_class(t) != "number"} == set()


def test_the_pages_get_patterns_javascript_reads_the_same_way():
    # The browser compiles these with new RegExp(pattern): only syntax both languages share.
    for name, pattern in browser_config()["type_classes"]:
        assert name in types.CLASSES
        assert not re.search(r"\(\?|\\[AZzbB]|\[:", pattern), pattern
        re.compile(pattern)


# -- filter operators -----------------------------------------------------------------------
def test_operator_table_keys_labels_and_values():
    keys = [op.key for op in filters.OPERATORS]
    assert keys == list(filters.BY_KEY)
    assert len(set(keys)) == len(keys)
    assert {op.key for op in filters.OPERATORS if not op.takes_value} == {"isnull", "notnull"}
    for op in filters.OPERATORS:
        assert op.label and op.classes <= set(types.CLASSES)


@pytest.mark.parametrize(
    ("dtype", "offered"),
    [
        ("BIGINT", ["eq", "ne", "gt", "gte", "lt", "lte", "in", "isnull", "notnull"]),
        ("DATE", ["eq", "ne", "gt", "gte", "lt", "lte", "in", "isnull", "notnull"]),
        ("BOOLEAN", ["eq", "ne", "isnull", "notnull"]),
        ("VARCHAR", ["eq", "ne", "contains", "startswith", "in", "isnull", "notnull"]),
        ("INTEGER[]", ["contains", "startswith", "isnull", "notnull"]),
    ],
)
def test_operators_offered_per_type(dtype, offered):
    assert [op.key for op in filters.operators_for(dtype)] == offered


def test_text_is_never_ordered():
    text_ops = {op.key for op in filters.operators_for("VARCHAR")}
    assert not text_ops & filters.ORDERING


# -- roles and formats ----------------------------------------------------------------------
def test_roles_in_order():
    assert roles.ROLES == ("viewer", "editor", "admin")
    assert roles.at_least("admin", "editor") and roles.at_least("editor", "editor")
    assert not roles.at_least("viewer", "editor") and not roles.at_least(None, "viewer")
    assert roles.up_to("editor") == ["viewer", "editor"] and roles.up_to(None) == []


def test_export_formats_one_table():
    assert get_args(formats.ExportFormatName) == formats.EXPORT_FORMATS
    assert set(formats.FORMAT_BY_SUFFIX.values()) == set(formats.EXPORT_FORMATS)
    for fmt in formats.FORMATS:
        assert formats.FORMAT_BY_SUFFIX["." + fmt.extension] == fmt.key
        assert "/" in fmt.media_type and fmt.label
    assert set(formats.BOM_FORMATS) <= set(formats.EXPORT_FORMATS)


# -- dataset names --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("filename", "name"),
    [
        ("sales.csv", "sales"),
        ("Sales 2024.CSV", "sales_2024"),
        ("sales.csv.gz", "sales"),
        ("v1.2.csv", "v1_2"),
        ("C:\\Users\\ann\\Q3 report.xlsx", "q3_report"),
        ("/tmp/data/orders.jsonl", "orders"),
        ("2024-sales.parquet", "t_2024_sales"),
        ("Müller & Söhne.tsv", "müller_söhne"),
        ("\uff26\uff35\uff2c\uff2c.csv", "full"),  # full-width letters
        ("notes.md", "notes_md"),
        ("__init__.csv", "init"),
        ("a" * 100 + ".csv", "a" * names.MAX_NAME_LENGTH),
    ],
)
def test_name_from_filename(filename, name):
    assert names.name_from_filename(filename) == name
    assert names.is_valid_name(name)
    assert names.normalise_name(name) == name


@pytest.mark.parametrize("text", ["!!!", "___", "", "  ", "…"])
def test_nothing_usable_is_refused_with_a_reason(text):
    with pytest.raises(names.InvalidName, match="cannot be made into a dataset name"):
        names.normalise_name(text)
    assert not names.is_valid_name(text)


def test_suggested_name_keeps_what_cannot_be_a_name_for_the_server_to_refuse():
    assert names.suggested_name("My Sales.csv") == "my_sales"
    assert names.suggested_name("!!!.csv") == "!!!"


def test_valid_names():
    assert names.is_valid_name("sales_2024")
    assert not names.is_valid_name("Sales")
    assert not names.is_valid_name("_x") and not names.is_valid_name("1x")


# -- cells ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "dtype", "text"),
    [
        (None, "VARCHAR", "NULL"),
        (True, "BOOLEAN", "true"),
        (1234567, "BIGINT", "1,234,567"),
        (5314546.740000004, "DOUBLE", "5,314,546.74"),
        (1e20, "DOUBLE", "1e+20"),
        (1.5e-7, "DOUBLE", "1.5e-7"),
        (float("nan"), "DOUBLE", "NaN"),
        ("12345.50", "DECIMAL(18,2)", "12,345.50"),
        ("2024-03-09T00:00:00", "TIMESTAMP", "2024-03-09"),
        ("2024-03-09T10:30:00", "TIMESTAMP", "2024-03-09 10:30:00"),
        ("10:30:00", "TIME", "10:30:00"),
        ({"a": 1}, "STRUCT(a INTEGER)", '{"a":1}'),
        ([1, 2], "INTEGER[]", "[1,2]"),
        ("plain", "VARCHAR", "plain"),
    ],
)
def test_format_value(value, dtype, text):
    assert cells.format_value(value, dtype) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        # What a browser's JSON.stringify(JSON.parse(api_json)) writes.
        ({"a": 1.0}, '{"a":1}'),
        ({"a": 1.5, "b": -0.0}, '{"a":1.5,"b":0}'),
        (
            [1e21, 1e20, 1.5e-7, 1e-6, 0.000123],
            "[1e+21,100000000000000000000,1.5e-7,0.000001,0.000123]",
        ),
        ([123456789012.25, -2.5e-10, 5e-324], "[123456789012.25,-2.5e-10,5e-324]"),
        ({"b": 1, "10": 2, "2": 3, "-1": 4, "01": 5}, '{"2":3,"10":2,"b":1,"-1":4,"01":5}'),
        ({"é": 'ü\n"x"', "t": True, "n": None}, '{"é":"ü\\n\\"x\\"","t":true,"n":null}'),
        ([[], {}, [{"x": [0.1]}]], '[[],{},[{"x":[0.1]}]]'),
    ],
)
def test_nested_values_read_as_the_browser_writes_them(value, text):
    assert cells.format_value(value, "JSON") == text
    # And it stays JSON that means the same value.
    assert json.loads(text) == json.loads(json.dumps(value))


def test_cut_long_text_and_many_lines():
    long = "x" * (cells.CUT_CHARS + 1)
    shown, total = cells.cut(long)
    assert len(shown) == cells.CUT_CHARS and total == cells.CUT_CHARS + 1
    lines = "\n".join(str(i) for i in range(cells.CUT_LINES + 2))
    shown, _ = cells.cut(lines)
    assert shown.count("\n") == cells.CUT_LINES - 1
    assert cells.cut("short") is None
    assert cells.cut("a\n" * (cells.CUT_LINES - 1) + "b\n") is None
    assert cells.marker(20000) == "(cut, 20,000 characters)"


def test_kind():
    assert cells.kind("BIGINT", 1) == "num"
    assert cells.kind("TIMESTAMP", "2024-01-01") == "date"
    assert cells.kind("TIME", "10:00:00") == "date"
    assert cells.kind("BOOLEAN", True) == "bool"
    assert cells.kind("VARCHAR", "x") == "text"
    assert cells.kind("VARCHAR", None) == "null"


def test_the_contract_stands_alone():
    # Backend, frontend, client and CLI all import it: it may pull in none of them, nor DuckDB,
    # HTTP or a web framework.
    code = (
        "import sys, myapp.contract, myapp.contract.names; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'duckdb', 'httpx', 'flask', 'fastapi', 'starlette', 'markupsafe', 'pydantic'} "
        "or (m.startswith('myapp.') and not m.startswith('myapp.contract'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
