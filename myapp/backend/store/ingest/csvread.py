"""Reading delimited text the way DuckDB's own `read_csv` reads it, with rejects on top.

`read_csv(…, store_rejects=true)` sniffs differently from a plain `read_csv` (it takes the first
line's column count instead of skipping a preamble to the widest consistent table), so the
dialect comes from `sniff_csv` (the plain reader's sniffer) and the load passes every sniffed
option explicitly, plus `store_rejects`: the table has the rows and columns DuckDB finds, and
rows that do not fit are reported as rejects instead of failing the load.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
from dataclasses import dataclass, field
from typing import Any

import duckdb

from ...errors import BadRequest
from .options import IngestOptions
from .prepare import PreparedFile

# A line limit fitted to the longest line seen, with room for a measurement a little short.
LINE_SIZE_MARGIN = 1.25
DEFAULT_MAX_LINE = 2_000_000

REJECTS_TABLE = "myapp_rejects"
REJECTS_SCAN = "myapp_reject_scans"


@dataclass
class Dialect:
    delimiter: str = ","
    quote: str = '"'
    escape: str = '"'
    new_line: str | None = None
    skip: int = 0
    comment: str = ""
    header: bool = True
    columns: dict[str, str] = field(default_factory=dict)
    dateformat: str | None = None
    timestampformat: str | None = None
    # No dialect could be sniffed: the load lets read_csv (with rejects) detect it.
    auto: bool = False
    # The header is wider than the rows (a report whose rows leave out empty last cells):
    # short rows are padded with NULLs, as `read_csv(…, null_padding = true)` reads them.
    null_padding: bool = False
    # Where this reading overrides what plain read_csv found (its one text column), plain
    # read_csv's own dialect: the load falls back to it when the override does not fit the
    # file (see `override_fits`).
    plain: Dialect | None = None

    def public(self) -> dict[str, Any]:
        if self.auto:
            return {"delimiter": self.delimiter or None}
        return {
            "delimiter": self.delimiter,
            "quote": self.quote,
            "escape": self.escape,
            "header": self.header,
            "skip": self.skip,
        }


def _empty(value: str | None) -> str:
    return "" if value in (None, "(empty)") else value


def max_line_size(prepared: PreparedFile) -> int | None:
    if not prepared.long_lines:
        return None
    return max(DEFAULT_MAX_LINE, int(prepared.longest_line * LINE_SIZE_MARGIN) + 1024)


def _user_args(
    options: IngestOptions, prepared: PreparedFile, *, by_name: bool = True
) -> tuple[list[str], dict]:
    """read_csv's arguments for the user's options (and a tab for a .tsv file, `by_name`)."""
    args: list[str] = []
    params: dict[str, Any] = {}
    delimiter = options.delimiter or ("\t" if by_name and prepared.format == "tsv" else None)
    if delimiter:
        args.append("delim = $delim")
        params["delim"] = delimiter
    if options.header is not None:
        args.append("header = $header")
        params["header"] = options.header
    if options.quote:
        args.append("quote = $quote")
        params["quote"] = options.quote
    if options.escape:
        args.append("escape = $escape")
        params["escape"] = options.escape
    if options.skip is not None:
        args.append("skip = $skip")
        params["skip"] = options.skip
    if options.nullstr:
        args.append("nullstr = $nullstr")
        params["nullstr"] = options.nullstr
    limit = max_line_size(prepared)
    if limit:
        args.append(f"max_line_size = {limit}")
    return args, params


CANDIDATE_DELIMITERS = (",", ";", "\t", "|")


def _sniff(
    conn: duckdb.DuckDBPyConnection,
    prepared: PreparedFile,
    options: IngestOptions,
    *,
    null_padding: bool = False,
    lenient: bool = False,
    by_name: bool = True,
) -> dict[str, Any]:
    args, params = _user_args(options, prepared, by_name=by_name)
    if null_padding:
        args.append("null_padding = true")
    if lenient:
        args.append("strict_mode = false")
    params["path"] = str(prepared.path.resolve())
    row = conn.execute(f"SELECT * FROM sniff_csv({', '.join(['$path', *args])})", params)
    names = [d[0] for d in conn.description]
    return dict(zip(names, row.fetchone(), strict=True))


# Lines (within the first 4 million characters) looked at to compare the header's width with
# the rows'.
WIDTH_SAMPLE_LINES = 1000
WIDTH_SAMPLE_CHARS = 4_000_000


def _padded_sniff(
    conn: duckdb.DuckDBPyConnection, prepared: PreparedFile, options: IngestOptions, delimiter: str
) -> dict[str, Any] | None:
    """The sniff with short rows padded, when the header is wider than most rows after it
    (else None: rows that do not fit the header stay rejects).

    Read with rejects, such a file keeps the header line's width and rejects nearly every row;
    `read_csv(…, null_padding = true)` reads it whole, with the header's names.
    """
    try:
        found = _sniff(conn, prepared, options, null_padding=True)
    except duckdb.InvalidInputException:
        return None
    if not found["HasHeader"]:
        return None
    width = len(found["Columns"])
    skip = int(found["SkipRows"] or 0)
    with prepared.path.open(encoding="utf-8", errors="replace", newline="") as handle:
        sample = handle.read(WIDTH_SAMPLE_CHARS)
    if len(sample) == WIDTH_SAMPLE_CHARS:
        sample = sample[: max(sample.rfind("\n"), 0)]  # no half line at the end
    lines = csv.reader(
        itertools.islice(io.StringIO(sample, newline=""), skip, skip + 1 + WIDTH_SAMPLE_LINES),
        delimiter=delimiter,
        quotechar=_empty(found["Quote"]) or '"',
    )
    try:
        widths = [len(line) for line in lines if line]
    except csv.Error:  # a field past the csv module's limit: not a table to pad
        return None
    if len(widths) < 2 or widths[0] != width:
        return None  # the padded reading's width is not the header line's own
    rows = widths[1:]
    narrower = sum(1 for w in rows if w < width)
    return found if narrower * 2 > len(rows) and max(rows) <= width else None


def _dialect(found: dict[str, Any], *, null_padding: bool = False) -> Dialect:
    return Dialect(
        delimiter=_empty(found["Delimiter"]),
        quote=_empty(found["Quote"]),
        escape=_empty(found["Escape"]),
        new_line=None
        if found["NewLineDelimiter"] in (None, "(empty)")
        else found["NewLineDelimiter"],
        skip=int(found["SkipRows"] or 0),
        comment=_empty(found["Comment"]),
        header=bool(found["HasHeader"]),
        columns={c["name"]: c["type"] for c in found["Columns"]},
        dateformat=found.get("DateFormat"),
        timestampformat=found.get("TimestampFormat"),
        null_padding=null_padding,
    )


def _header_delimiter(
    conn: duckdb.DuckDBPyConnection, prepared: PreparedFile, options: IngestOptions, name: str
) -> Dialect | None:
    """The dialect with the delimiter a lone column's name holds, where it has one.

    Rows of uneven width (a few rows with a cell too many or too few, a stray quote) make
    plain read_csv give up on the delimiter and read each line as one text column. Reading
    with the delimiter the header uses keeps the table and reports the uneven rows as rejects.
    """
    counts = {d: name.count(d) for d in CANDIDATE_DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    if not counts[best]:
        return None
    chosen = options.with_changes(delimiter=best)
    try:
        return _dialect(_sniff(conn, prepared, chosen))
    except duckdb.InvalidInputException:
        pass
    padded = _padded_sniff(conn, prepared, chosen, best)
    if padded is not None:
        return _dialect(padded, null_padding=True)
    try:
        # The sniffer's strict mode refuses the whole sample for one unescaped quote; without
        # it, it still finds the quote and the header. The load itself stays strict, so such
        # rows are rejects.
        found = _sniff(conn, prepared, chosen, lenient=True)
    except duckdb.InvalidInputException:
        return Dialect(auto=True, delimiter=best)
    return _dialect(found) if found["HasHeader"] else Dialect(auto=True, delimiter=best)


def sniff(
    conn: duckdb.DuckDBPyConnection, prepared: PreparedFile, options: IngestOptions
) -> Dialect:
    """The dialect plain `read_csv` would use, with the user's options applied."""
    if prepared.column_types is not None:
        # A workbook's sheet, written by us: the dialect is known, the types are exact.
        dialect = Dialect(columns=dict(prepared.column_types), new_line="\\n")
    else:
        try:
            found = _sniff(conn, prepared, options)
        except duckdb.InvalidInputException:
            found = None
        if found is None and prepared.format == "tsv" and options.delimiter is None:
            # Named .tsv but not tab-separated throughout: what plain read_csv finds.
            with contextlib.suppress(duckdb.InvalidInputException):
                found = _sniff(conn, prepared, options, by_name=False)
        if found is None:
            # Plain read_csv refuses this file (no consistent dialect in its sample). The
            # reader that stores rejects sniffs from the first line instead: the rows that fit
            # it load and the others are reported, rather than the file refused outright.
            return Dialect(auto=True, delimiter=options.delimiter or "")
        dialect = _dialect(found)
        columns = found["Columns"]
        if options.delimiter is None and len(columns) == 1 and found["HasHeader"]:
            override = _header_delimiter(conn, prepared, options, columns[0]["name"])
            if override is not None:
                override.plain = dialect
                dialect = override
    if options.types:
        by_lower = {name.lower(): name for name in dialect.columns}
        missing = [c for c in options.types if c.lower() not in by_lower]
        if missing:
            raise BadRequest(
                f"'types' names columns the file does not have: {', '.join(missing[:10])}.",
                code="invalid_option",
                detail={"option": "types", "columns": list(dialect.columns)[:200]},
            )
        for column, dtype in options.types.items():
            dialect.columns[by_lower[column.lower()]] = dtype
    return dialect


def _rejects_args(store: bool) -> list[str]:
    if not store:
        return ["ignore_errors = true"]
    return [
        "store_rejects = true",
        f"rejects_table = '{REJECTS_TABLE}'",
        f"rejects_scan = '{REJECTS_SCAN}'",
    ]


def read_sql(
    prepared: PreparedFile, options: IngestOptions, dialect: Dialect, *, rejects: bool = True
) -> tuple[str, dict[str, Any]]:
    """`read_csv(…)` with every option explicit and rejects stored (or skipped)."""
    if dialect.auto:
        args, params = _user_args(
            options.with_changes(delimiter=dialect.delimiter or None), prepared
        )
        args += _rejects_args(rejects)
        if options.types:
            args.append("types = $types")
            params["types"] = options.types
        params["path"] = str(prepared.path.resolve())
        return f"read_csv({', '.join(['$path', *args])})", params
    args = [
        "$path",
        "auto_detect = false",
        "delim = $delim",
        "quote = $quote",
        "escape = $escape",
        "skip = $skip",
        "comment = $comment",
        "header = $header",
        "columns = $columns",
        *_rejects_args(rejects),
    ]
    params: dict[str, Any] = {
        "path": str(prepared.path.resolve()),
        "delim": dialect.delimiter,
        "quote": dialect.quote,
        "escape": dialect.escape,
        "skip": dialect.skip,
        "comment": dialect.comment,
        "header": dialect.header,
        "columns": dialect.columns,
    }
    if dialect.null_padding:
        args.append("null_padding = true")
    if dialect.new_line:
        args.append("new_line = $new_line")
        params["new_line"] = dialect.new_line
    if dialect.dateformat:
        args.append("dateformat = $dateformat")
        params["dateformat"] = dialect.dateformat
    if dialect.timestampformat:
        args.append("timestampformat = $timestampformat")
        params["timestampformat"] = dialect.timestampformat
    if options.nullstr:
        args.append("nullstr = $nullstr")
        params["nullstr"] = options.nullstr
    limit = max_line_size(prepared)
    if limit:
        args.append(f"max_line_size = {limit}")
    return f"read_csv({', '.join(args)})", params


# Share of the rows that may be rejects for a reading that overrides plain read_csv's one text
# column: past it, the header's delimiter is not the table's, and plain read_csv's reading,
# which keeps every line, is the better one. (A small file with one short row in four, say
# "west" among "north,10" rows, keeps its two columns and reports that row.)
OVERRIDE_MAX_REJECTS = 0.5


def override_fits(
    conn: duckdb.DuckDBPyConnection,
    prepared: PreparedFile,
    options: IngestOptions,
    dialect: Dialect,
    loaded: int,
    rejected: int,
) -> bool:
    """Whether the overriding reading holds the rows plain read_csv finds, with few rejects.

    Rejects are reported on top of DuckDB's reading, never instead of it: the override keeps
    every line plain read_csv reads as a row (loaded or rejected, none merged or dropped),
    and at most OVERRIDE_MAX_REJECTS of them are rejects.
    """
    if dialect.plain is None or options.types:
        return True
    if rejected > OVERRIDE_MAX_REJECTS * (loaded + rejected):
        return False
    source, params = read_sql(prepared, options, dialect.plain, rejects=False)
    plain_rows = conn.execute(f"SELECT count(*) FROM {source}", params).fetchone()[0]
    return loaded + rejected == plain_rows


# A file plain read_csv refuses, read from its first line (Dialect.auto): when fewer than this
# share of its lines (of at least AUTO_CHECK_LINES) fit, it is no one table. DuckDB records each
# misfit cell of each misfit row as a reject, which takes seconds per thousand rows of a wide
# file (9 s for a 1.4 MB report of several tables one after another, all but one row rejects).
AUTO_MIN_FIT = 0.5
AUTO_CHECK_LINES = 1000


def auto_fit(
    conn: duckdb.DuckDBPyConnection,
    prepared: PreparedFile,
    options: IngestOptions,
    dialect: Dialect,
) -> tuple[int, int] | None:
    """(rows that fit, lines) where a file read from its first line would be mostly rejects."""
    lines = 0
    with prepared.path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            lines += chunk.count(b"\n")
    if lines < AUTO_CHECK_LINES:
        return None
    source, params = read_sql(prepared, options, dialect, rejects=False)
    fit = conn.execute(f"SELECT count(*) FROM {source}", params).fetchone()[0]
    return (fit, lines) if fit < AUTO_MIN_FIT * lines else None
