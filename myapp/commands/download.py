"""Saving a download (an export of a query, saved query, dataset or dashboard tile) to a file.

`-o FILE` and `--format` (from FILE's suffix when not given); the bytes go to a temporary file
next to FILE, renamed to it only once whole, so an export that breaks off leaves no file behind
and an existing FILE stays as it was.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

import click

from myapp.client import ApiUnavailable
from myapp.contract.formats import EXPORT_FORMATS, FORMAT_BY_SUFFIX

from .errors import EXIT_USAGE, Explain, explained, fail
from .output import format_size, stdout_closed
from .session import ApiSession


def export_format(output: str, fmt: str | None) -> str:
    if fmt:
        return fmt
    if output == "-":
        return "csv"
    suffix = Path(output).suffix.lower()
    if suffix in FORMAT_BY_SUFFIX:
        return FORMAT_BY_SUFFIX[suffix]
    fail(
        f"cannot tell the format from the name {output} (known: "
        + ", ".join(FORMAT_BY_SUFFIX)
        + "); give --format "
        + "|".join(EXPORT_FORMATS),
        EXIT_USAGE,
    )


def output_options(func: Any) -> Any:
    """-o FILE and --format, as every command that saves a download takes them."""
    func = click.option(
        "--format",
        "fmt",
        type=click.Choice(EXPORT_FORMATS),
        default=None,
        help="File format (default: from FILE's extension: .csv .tsv .parquet .json .ndjson "
        ".jsonl .xlsx; csv for stdout). xlsx holds at most 1,048,575 rows.",
    )(func)
    func = click.option(
        "--bom",
        is_flag=True,
        help="csv/tsv: start with a UTF-8 byte-order mark, so Excel on Windows reads the "
        "text right.",
    )(func)
    return click.option(
        "--output",
        "-o",
        required=True,
        metavar="FILE",
        help="File to write (replaced if it exists), or - for stdout.",
    )(func)


class _Incomplete(Exception):
    """The download ended before its end: the server cut it, or the connection broke."""


def _download(api: ApiSession, out: IO[bytes], method: str, path: str, **request: Any) -> int:
    """Stream the export into `out`; returns the bytes written. Raises _Incomplete (with the
    bytes received so far) when the download began but did not end whole; an answer that is
    an error raises ApiError."""
    received = 0
    began = False
    try:
        with api.stream(method, path, **request) as response:
            began = True
            expected = response.headers.get("Content-Length")
            for chunk in response.iter_bytes():
                out.write(chunk)
                received += len(chunk)
            # httpx checks this too; a short body must never pass for a whole file.
            if (
                expected is not None
                and expected.isdigit()
                and response.num_bytes_downloaded < int(expected)
            ):
                raise _Incomplete(received)
    except ApiUnavailable:
        if began:
            # A big export is sent while DuckDB still writes it; when the query fails after
            # that (a bad row, the time limit), the backend ends the response without its
            # last chunk, and this is how that arrives.
            raise _Incomplete(received) from None
        raise
    return received


def _new_file_mode() -> int:
    """The mode a file created normally would get (mkstemp makes it private to its owner)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def save_download(
    api: ApiSession,
    output: str,
    explain: Explain | None,
    method: str,
    path: str,
    **request: Any,
) -> None:
    """Download an export (`request` as httpx takes it) to `output`, or stdout for -.

    The bytes go to a temporary file next to `output`, renamed to it only once whole: a
    download that breaks off, a lost connection or Ctrl+C leave no file behind and exit 1
    (130 for Ctrl+C); an existing file stays as it was. Prints what was written on stderr.
    An error answer raises ApiError, with the lines `explain` adds.
    """
    with explained(explain):
        _save(api, output, method, path, **request)


def _save(api: ApiSession, output: str, method: str, path: str, **request: Any) -> None:
    started = time.monotonic()
    if output == "-":
        stdout = sys.stdout.buffer
        try:
            written = _download(api, stdout, method, path, **request)
            stdout.flush()
        except BrokenPipeError:
            stdout_closed()
        except _Incomplete as exc:
            fail(
                f"the export failed after {format_size(exc.args[0])} were received: the query "
                "failed part way, reached the server's time limit, or the connection broke; "
                "what was written to stdout is incomplete"
            )
        elapsed = time.monotonic() - started
        click.echo(f"wrote {format_size(written)} to stdout in {elapsed:.1f} s", err=True)
        return

    target = Path(output)
    if target.is_dir():
        fail(f"{output} is a directory; give a file name with -o", EXIT_USAGE)
    try:
        fd, part_name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".part", dir=target.parent
        )
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}", EXIT_USAGE)
    part = Path(part_name)
    kept = "no file was written"
    if target.exists():
        kept += f" ({output} is as it was)"
    done = False
    try:
        with os.fdopen(fd, "wb") as out:
            written = _download(api, out, method, path, **request)
            out.flush()
            # Renamed only once on disk, so FILE never names a half-written file after a crash.
            os.fsync(out.fileno())
        part.chmod(_new_file_mode())
        part.replace(target)
        done = True
    except _Incomplete as exc:
        fail(
            f"the export failed after {format_size(exc.args[0])} were received: the query "
            f"failed part way, reached the server's time limit, or the connection broke; {kept}"
        )
    except KeyboardInterrupt:
        fail(f"interrupted; {kept}", 130)
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}; {kept}")
    finally:
        if not done:
            part.unlink(missing_ok=True)
    elapsed = time.monotonic() - started
    click.echo(f"wrote {output} ({format_size(written)}) in {elapsed:.1f} s", err=True)
