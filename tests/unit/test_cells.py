"""How a value reads in a table cell on server-rendered pages (frontend/cells.py): numbers,
dates, JSON, and long text cut with a way to the whole value. The browser's copy of the rule
(static/js/cells.js) is held to the same values by tests/e2e/test_everyday.py."""

from __future__ import annotations

import pytest

from myapp.frontend import cells


@pytest.mark.parametrize(
    ("value", "dtype", "shown"),
    [
        (123456789012345678, "BIGINT", "123,456,789,012,345,678"),
        (0.1 + 0.2, "DOUBLE", "0.3"),
        (-0.0, "DOUBLE", "0"),
        (float("-inf"), None, "-Infinity"),
        # HUGEINT arrives as text and keeps every digit.
        (
            "-170141183460469231731687303715884105728",
            "HUGEINT",
            "-170,141,183,460,469,231,731,687,303,715,884,105,728",
        ),
        ("2024-01-02T00:00:00+00:00", "TIMESTAMP WITH TIME ZONE", "2024-01-02"),
        ("2024-01-02T03:04:05", None, "2024-01-02 03:04:05"),
        ("12345", "VARCHAR", "12345"),  # text that looks like a number stays text
    ],
)
def test_a_value_reads_as_a_person_expects(value, dtype, shown):
    assert cells.format_value(value, dtype) == shown


def test_short_text_is_not_cut():
    assert cells.cut("x" * cells.CUT_CHARS) is None
    assert cells.cut("line\n" * (cells.CUT_LINES - 1)) is None
    # A line break that ends the text hides nothing.
    assert cells.cut("line\n" * cells.CUT_LINES) is None


def test_long_text_is_cut_at_its_length_or_its_lines():
    shown, total = cells.cut("x" * 20_000)
    assert (len(shown), total) == (cells.CUT_CHARS, 20_000)
    shown, total = cells.cut("line\n" * 50)
    assert shown.count("\n") == cells.CUT_LINES - 1 and total == 250
    # Characters are code points, so an emoji counts once, as in cells.js.
    shown, total = cells.cut("😀" * 600)
    assert (len(shown), total) == (cells.CUT_CHARS, 600)
    assert cells.marker(20_000) == "(cut, 20,000 characters)"


def test_a_cut_value_keeps_the_whole_text_in_a_closed_details():
    text = "<script>alert(1)</script>" + "x" * 600
    html = str(cells.render(text, "VARCHAR"))
    assert html.startswith('<details class="cell-cut"') and "<details open" not in html
    assert "(cut, 625 characters)" in html
    assert "<script>" not in html and html.count("&lt;script&gt;") == 2
    assert "x" * 600 + "</div>" in html


def test_a_cut_value_links_to_its_row_when_given_one():
    html = str(cells.render("y" * 600, "VARCHAR", full_href="/datasets/t/row?offset=3&sort=a"))
    assert 'href="/datasets/t/row?offset=3&amp;sort=a"' in html
    assert "y" * 501 not in html and "Show all" in html


def test_a_short_value_is_just_its_escaped_text():
    assert str(cells.render('<b>"x"</b>')) == "&lt;b&gt;&#34;x&#34;&lt;/b&gt;"
    assert str(cells.render(1234.5, "DOUBLE")) == "1,234.5"


def test_table_rows_are_each_cell_as_rendered_alone():
    """render_rows (the table page's body) holds every cell as `render` makes it, with its
    kind's class, NULL as null, markup escaped, and asks for a row's link only when one of
    its cells is cut."""
    import re

    long_text = "word " * (cells.CUT_CHARS // 2)
    rows = [
        [1, "<b>x</b>", None, True, 2.5, "2024-01-02T03:04:05"],
        [None, long_text, "short", False, -0.0, None],
        [3, "plain", "a & b", None, float("nan"), "2024-01-02T00:00:00"],
    ]
    dtypes = ["BIGINT", "VARCHAR", "VARCHAR", "BOOLEAN", "DOUBLE", "TIMESTAMP"]
    asked: list[int] = []

    def href(index: int) -> str:
        asked.append(index)
        return f"/datasets/t/row?offset={index}&x=<y>"

    html = str(cells.render_rows(rows, dtypes, href))
    found = re.findall(r"<tr>(.*?)</tr>", html, re.S)
    assert len(found) == len(rows)
    for index, (row, markup) in enumerate(zip(rows, found, strict=True)):
        expected = "".join(
            '<td class="cell-null">null</td>'
            if value is None
            else f'<td class="cell-{cells.kind(dtype, value)}">'
            f"{cells.render(value, dtype, full_href=href(index) if index == 1 else None)}</td>"
            for value, dtype in zip(row, dtypes, strict=True)
        )
        assert markup == expected
    assert asked.count(1) >= 2 and set(asked) == {1}  # the cut row only (and the check's own)
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "a &amp; b" in html
    assert 'data-testid="cell-cut"' in found[1] and "x=&lt;y&gt;" in found[1]


def _one_cell_at_a_time(rows, dtypes, href) -> str:
    """render_rows as the general rule writes it, cell by cell: kind() and render() alone."""
    out = []
    for index, row in enumerate(rows):
        cells_ = []
        cut_row = any(
            value is not None and cells.cut(cells.format_value(value, dtype)) is not None
            for value, dtype in zip(row, dtypes, strict=True)
        )
        for value, dtype in zip(row, dtypes, strict=True):
            if value is None:
                cells_.append('<td class="cell-null">null</td>')
                continue
            link = href(index) if cut_row else None
            cells_.append(
                f'<td class="cell-{cells.kind(dtype, value)}">'
                f"{cells.render(value, dtype, full_href=link)}</td>"
            )
        out.append("<tr>" + "".join(cells_) + "</tr>\n")
    return "".join(out)


def test_table_rows_written_column_by_column_are_the_general_rules():
    """render_rows finds each column's class once and writes integers and texts of text
    columns directly: the same markup as kind() and render() cell by cell, for every type
    class, values of other JSON types than the column's, and texts at the cut's edges."""
    values = [
        0,
        -1,
        7,
        999,
        1000,
        -1234567,
        2**53 - 1,
        -(2**63),
        10**99,
        -(10**99) + 1,
        10**100,
        10**380,
        -(10**399),
        True,
        False,
        0.5,
        -0.0,
        1e21,
        float("nan"),
        "",
        "12345",
        "-9223372036854775808",
        "1234.5000",
        "2024-01-02T00:00:00",
        "2024-01-02T03:04:05.5",
        "a & <b> \"c\" 'd'",
        "x" * cells.CUT_CHARS,
        "x" * (cells.CUT_CHARS + 1),
        "l\n" * (cells.CUT_LINES - 1),
        "l\n" * cells.CUT_LINES + "m",
        [1, "a", None],
        {"k": 1, "0": 2},
    ]
    dtypes = [
        "BIGINT",
        "HUGEINT",
        "DOUBLE",
        "DECIMAL(18,4)",
        "VARCHAR",
        "TIMESTAMP",
        "DATE",
        "BOOLEAN",
        "INTEGER[]",
        "STRUCT(k INTEGER)",
        "UUID",
        None,
        "",
    ]
    rows = [[v if (i + j) % 7 else None for j, v in enumerate(values)] for i in range(3)]
    for dtype in dtypes:
        columns = [dtype] * len(values)

        def href(index: int, dtype: str | None = dtype) -> str:
            return f"/datasets/t/row?offset={index}&d={dtype}"

        assert str(cells.render_rows(rows, columns, href)) == _one_cell_at_a_time(
            rows, columns, href
        ), dtype
