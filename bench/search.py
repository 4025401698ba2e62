"""Search benchmark: what folding accents costs the table page's text search.

    python bench/search.py [--rows 2000000] [--repeat 5]

The table's search compares `strip_accents(lower(column))` with the folded needle, so "muller"
finds "Müller"; before, it compared `lower(column)` only. This times both WHERE clauses over one
text column of --rows rows in an in-memory DuckDB (one in seven rows holds an accented name),
counting the matches, and prints the median of --repeat runs after a warm-up run for each.
Numbers depend on the machine and its load: the load average is printed with the results.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import duckdb

CLAUSES = {
    "lower(column)": "contains(lower(s), lower($q))",
    "strip_accents(lower(column))": "contains(strip_accents(lower(s)), strip_accents(lower($q)))",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    conn = duckdb.connect()
    conn.execute(
        "CREATE TABLE t AS SELECT 'Name ' || i || CASE WHEN i % 7 = 0 THEN ' Müller' "
        "ELSE ' Smith' END AS s FROM range($n) r(i)",
        {"n": args.rows},
    )
    print(f"rows: {args.rows:,}  load average: {os.getloadavg()[0]:.2f}")
    print(f"{'comparison':<32} {'matches':>10} {'median ms':>10}")
    for label, clause in CLAUSES.items():
        sql = f"SELECT count(*) FROM t WHERE {clause}"
        conn.execute(sql, {"q": "muller"}).fetchone()
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            matches = conn.execute(sql, {"q": "muller"}).fetchone()[0]
            times.append((time.perf_counter() - started) * 1000)
        print(f"{label:<32} {matches:>10,} {statistics.median(times):>10.0f}")


if __name__ == "__main__":
    main()
