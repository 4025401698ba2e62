"""How deeply a JSON file nests, bounded cheaply, for DuckDB versions that do not bound it.

DuckDB 2.x refuses JSON nested deeper than 128 levels ("JSON exceeds maximum recursion depth");
DuckDB 1.4's read_json recurses without a bound and overflows the stack of the process (a
segmentation fault of the whole backend: 30,000 levels read, 50,000 crashed, measured with an
8 MB stack). On 1.4 the file is therefore checked first, at C speed with regular expressions:
string literals are dropped (JSON strings never hold a raw newline, so lines are cut safely),
everything but brackets is deleted, and innermost `[]`/`{}` pairs are removed pass after pass;
a balanced structure needs exactly as many passes as it is deep.
"""

from __future__ import annotations

import re
from pathlib import Path

# DuckDB 2.x's own limit, so both versions accept and refuse the same files.
MAX_DEPTH = 128

CHUNK_BYTES = 8 * 1024 * 1024
_STRING = re.compile(rb'"(?:[^"\\\n]|\\.)*"')
_PAIR = re.compile(rb"\[\]|\{\}")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def nesting_exceeds(path: Path, limit: int = MAX_DEPTH) -> bool:
    """Whether any value in the file nests deeper than `limit` levels."""
    pending = b""  # openers not yet closed, carried from earlier lines
    rest = b""
    with path.open("rb") as f:
        while True:
            chunk = f.read(CHUNK_BYTES)
            data = rest + chunk
            cut = data.rfind(b"\n") + 1 if chunk else len(data)
            if chunk and cut == 0:
                if len(data) < 8 * CHUNK_BYTES:
                    rest = data  # a long line: wait for its end (within a bound)
                    continue
                cut = len(data)
            text, rest = data[:cut], data[cut:]
            pending = _reduce(pending + _STRING.sub(b"", text).translate(None, _NOT_BRACKETS))
            if pending is None:
                return True
            if not chunk:
                return False


def _reduce(brackets: bytes, limit: int = MAX_DEPTH) -> bytes | None:
    """The openers left after removing every closed pair; None when deeper than `limit`."""
    passes = 0
    while True:
        reduced = _PAIR.sub(b"", brackets)
        if reduced == brackets:
            break
        brackets = reduced
        passes += 1
        if passes > limit:
            return None
    # Closers with no opener before them are a malformed file (DuckDB says so): what counts
    # for the depth is the run of openers after the last of them.
    last_closer = max(brackets.rfind(b"]"), brackets.rfind(b"}"))
    openers = brackets[last_closer + 1 :]
    return None if len(openers) > limit else openers
