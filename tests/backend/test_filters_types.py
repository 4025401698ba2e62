"""Filters by column type and search without case or accents, through a real backend.

Numbers and dates compare as numbers and dates; an ordering comparison on a text column is
refused with a message naming what works instead, never answered by comparing letters.
"""

from __future__ import annotations

import pytest

from myapp.contract.filters import operators_for, type_class
from tests.backend import test_datasets_ingest as ingest
from tests.backend.test_datasets_ingest import put, rows
from tests.backend.test_errors import assert_error_shape

prefix = ingest.prefix

CSV = (
    "id,quantity,label,price,day,name\n"
    "1,9,9,7.55,2024-03-09,Müller\n"
    "2,45,45,50.5,2024-03-10,MÜLLER GmbH\n"
    "3,46,46,120.25,2024-04-01,Zoë\n"
    "4,5,5,,2024-02-29,Muller\n"
    "5,100,100,99.99,2023-12-31,Ørsted\n"
    "6,,,3,2024-03-09,Crème brûlée\n"
).encode()


@pytest.fixture
def sales(api, prefix) -> str:
    response = put(api, prefix, CSV, filename="sales.csv", types="label:VARCHAR")
    assert response.status_code == 201, response.text
    columns = {c["name"]: c["type"] for c in response.json()["dataset"]["columns"]}
    assert columns["quantity"] == "BIGINT" and columns["label"] == "VARCHAR"
    return prefix


def ids(page: dict) -> list[int]:
    return [row[0] for row in page["rows"]]


def test_numbers_and_dates_compare_by_value(api, sales):
    # As text, "9" > "45" and "5" > "45"; as numbers only 46 and 100 are.
    assert ids(rows(api, sales, quantity__gt="45")) == [3, 5]
    assert ids(rows(api, sales, quantity__gte="45", quantity__lt="100")) == [2, 3]
    assert ids(rows(api, sales, price__gt="50")) == [2, 3, 5]
    assert ids(rows(api, sales, day__gte="2024-03-01", day__lt="2024-04-01")) == [1, 2, 6]
    assert ids(rows(api, sales, quantity__in="5,100")) == [4, 5]


@pytest.mark.parametrize("op", ["gt", "gte", "lt", "lte"])
def test_ordering_a_text_column_is_refused_with_what_works(api, sales, op):
    response = api.get(f"/api/datasets/{sales}/rows", params={f"label__{op}": "45"})
    error = assert_error_shape(response, 400, "invalid_filter")
    assert "holds text" in error["message"] and "contains" in error["message"]
    detail = error["detail"]
    assert detail["column"] == "label" and detail["operator"] == op
    assert set(detail["operators"]) == {"eq", "ne", "contains", "startswith", "in"} | {
        "isnull",
        "notnull",
    }
    # Equality and containment on the same column still work.
    assert ids(rows(api, sales, label__eq="45")) == [2]
    assert ids(rows(api, sales, label__in="9,5")) == [1, 4]


def test_a_bad_value_names_its_column_and_value(api, sales):
    response = api.get(f"/api/datasets/{sales}/rows", params={"day__gt": "last week"})
    error = assert_error_shape(response, 400, "invalid_filter")
    assert error["detail"]["column"] == "day" and error["detail"]["value"] == "last week"
    assert "'last week' is not a valid DATE" in error["message"]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("muller", [1, 2, 4]),
        ("MÜLLER", [1, 2, 4]),
        ("creme brulee", [6]),
        ("zoe", [3]),
        ("gmbh", [2]),
    ],
)
def test_search_ignores_case_and_accents(api, sales, q, expected):
    page = rows(api, sales, q=q)
    assert ids(page) == expected
    assert page["total"] == len(expected)


def test_contains_and_startswith_ignore_case_and_accents(api, sales):
    assert ids(rows(api, sales, name__contains="MULLER")) == [1, 2, 4]
    assert ids(rows(api, sales, name__startswith="creme")) == [6]
    # Equality stays exact.
    assert ids(rows(api, sales, name__eq="Muller")) == [4]


def test_operator_table_by_type():
    assert type_class("DECIMAL(18,3)") == "number" and type_class("BIGINT") == "integer"
    assert type_class("TIMESTAMP WITH TIME ZONE") == "temporal"
    assert type_class("VARCHAR") == "text" and type_class("INTEGER[]") == "other"
    text_ops = {op.key for op in operators_for("VARCHAR")}
    assert not text_ops & {"gt", "gte", "lt", "lte"}
    assert {"gt", "lte"} <= {op.key for op in operators_for("DATE")}
    assert "contains" not in {op.key for op in operators_for("DOUBLE")}
