"""Excel benchmark: reading a ~50 MB workbook with python-calamine and with openpyxl
(read_only), writing one with xlsxwriter (constant_memory) and openpyxl (write_only), and
(--only api-export) a whole dataset exported through the API as xlsx next to CSV (the
export's writer is myapp's own, store/xlsx.py: xlsxwriter was 15x slower at it).

    python bench/excel.py [--rows 1000000] [--only read|write|api-export]

Each reader runs in a child process of its own so its peak resident memory (ru_maxrss) is its
own. Reading walks every row the way the upload does (values only, no Python list of the whole
sheet). The workbook is generated in bench/.work/ (git-ignored) and reused.
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
WORK = ROOT / ".work"


def generate(path: Path, rows: int) -> None:
    if path.exists():
        return
    import xlsxwriter

    print(f"generating {path.name} ({rows:,} rows) …", flush=True)
    tmp = path.with_suffix(".tmp.xlsx")
    book = xlsxwriter.Workbook(str(tmp), {"constant_memory": True})
    sheet = book.add_worksheet("data")
    date_format = book.add_format({"num_format": "yyyy-mm-dd"})
    sheet.write_row(0, 0, ["id", "customer", "amount", "day", "paid", "note"])
    base = dt.date(2020, 1, 1)
    for i in range(rows):
        sheet.write_number(i + 1, 0, i)
        sheet.write_string(i + 1, 1, f"customer_{i % 100000}")
        sheet.write_number(i + 1, 2, (i * 7919 % 100000) / 100)
        sheet.write_datetime(i + 1, 3, base + dt.timedelta(days=i % 1500), date_format)
        sheet.write_boolean(i + 1, 4, i % 3 == 0)
        sheet.write_string(i + 1, 5, f"note {i * 31 % 9973}")
    book.close()
    tmp.rename(path)


def read_calamine(path: str) -> int:
    from python_calamine import CalamineWorkbook

    book = CalamineWorkbook.from_path(path)
    n = 0
    for _row in book.get_sheet_by_index(0).iter_rows():
        n += 1
    return n


def read_openpyxl(path: str) -> int:
    import openpyxl

    book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    n = 0
    for _row in book.worksheets[0].iter_rows(values_only=True):
        n += 1
    book.close()
    return n


def write_xlsxwriter(path: str, rows: int) -> int:
    import xlsxwriter

    book = xlsxwriter.Workbook(path, {"constant_memory": True})
    sheet = book.add_worksheet()
    for i in range(rows):
        sheet.write_row(i, 0, (i, f"customer_{i % 100000}", i / 7, f"note {i}"))
    book.close()
    return rows


def write_openpyxl(path: str, rows: int) -> int:
    import openpyxl

    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet()
    for i in range(rows):
        sheet.append((i, f"customer_{i % 100000}", i / 7, f"note {i}"))
    book.save(path)
    return rows


def child(kind: str, path: str, rows: int) -> None:
    started = time.perf_counter()
    if kind == "calamine":
        n = read_calamine(path)
    elif kind == "openpyxl":
        n = read_openpyxl(path)
    elif kind == "xlsxwriter":
        n = write_xlsxwriter(path, rows)
    else:
        n = write_openpyxl(path, rows)
    elapsed = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{n} {elapsed:.2f} {peak_mb:.0f}")


def run(kind: str, path: Path, rows: int) -> tuple[int, float, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(path), "--rows", str(rows)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return int(out[0]), float(out[1]), float(out[2])


def api_export(rows: int) -> None:
    """`GET /api/datasets/{name}/export` as xlsx and as csv, from request to last byte, on a
    fresh backend whose time limit is lifted (xlsx is written row by row in Python)."""
    import httpx
    from common import rss_mb, worker_pid
    from ingest import Backend, generate_xlsx, upload

    book = WORK / f"ingest-{rows}.xlsx"
    generate_xlsx(book, rows)
    backend = Backend("excel-export", {"MYAPP_QUERY_TIMEOUT_MS": "3600000"})
    try:
        upload(backend.port, book.with_suffix(".csv"), "events")
        print(f"{'export of ' + format(rows, ',') + ' rows':<28}{'seconds':>10}{'rows/s':>12}"
              f"{'MB':>8}{'backend RSS +MB':>17}")  # fmt: skip
        pid = worker_pid(backend.proc.pid)
        for fmt in ("csv", "xlsx"):
            idle = rss_mb(pid)
            started = time.perf_counter()
            size = 0
            peak = idle
            with httpx.stream(
                "GET",
                f"{backend.url}/api/datasets/events/export",
                params={"format": fmt},
                timeout=3600,
            ) as response:
                assert response.status_code == 200, response.read()
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    peak = max(peak, rss_mb(pid))
            seconds = time.perf_counter() - started
            print(f"{fmt:<28}{seconds:>10.2f}{rows / seconds:>12,.0f}{size / 1e6:>8.1f}"
                  f"{peak - idle:>17.0f}")  # fmt: skip
    finally:
        backend.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--only", choices=("read", "write", "api-export"))
    parser.add_argument("--child", nargs=2)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.rows)
        return
    WORK.mkdir(exist_ok=True)
    if args.only == "api-export":
        api_export(args.rows)
        return
    book = WORK / f"excel-{args.rows}.xlsx"
    print(f"{'task':<28}{'rows':>10}{'seconds':>10}{'rows/s':>12}{'peak MB':>10}")
    if args.only != "write":
        generate(book, args.rows)
        size_mb = book.stat().st_size / 1e6
        print(f"# workbook {book.name}: {size_mb:.1f} MB")
        for kind in ("calamine", "openpyxl"):
            n, seconds, peak = run(kind, book, args.rows)
            rate = n / seconds
            print(f"{'read ' + kind:<28}{n:>10,}{seconds:>10.2f}{rate:>12,.0f}{peak:>10.0f}")
    if args.only != "read":
        for kind in ("xlsxwriter", "openpyxl-write"):
            target = WORK / f"out-{kind}.xlsx"
            n, seconds, peak = run(kind, target, args.rows)
            rate = n / seconds
            print(f"{'write ' + kind:<28}{n:>10,}{seconds:>10.2f}{rate:>12,.0f}{peak:>10.0f}")
            target.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
