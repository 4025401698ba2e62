"""Two texts line by line, paired for a side-by-side view of two versions (saved queries,
dashboards)."""

from __future__ import annotations

import difflib
from typing import Any


def side_by_side(before: str, after: str) -> list[dict[str, Any]]:
    """Lines of two texts paired for a side-by-side view: equal, changed, removed or added."""
    left, right = before.splitlines(), after.splitlines()
    rows: list[dict[str, Any]] = []
    matcher = difflib.SequenceMatcher(a=left, b=right, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            for k in range(i2 - i1):
                rows.append(
                    {"op": "equal", "from_line": i1 + k + 1, "from": left[i1 + k],
                     "to_line": j1 + k + 1, "to": right[j1 + k]}
                )  # fmt: skip
            continue
        for k in range(max(i2 - i1, j2 - j1)):
            has_left, has_right = i1 + k < i2, j1 + k < j2
            op = "replace" if has_left and has_right else ("delete" if has_left else "insert")
            rows.append(
                {
                    "op": op,
                    "from_line": i1 + k + 1 if has_left else None,
                    "from": left[i1 + k] if has_left else None,
                    "to_line": j1 + k + 1 if has_right else None,
                    "to": right[j1 + k] if has_right else None,
                }
            )
    return rows
