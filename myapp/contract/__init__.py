"""What backend, frontend and CLI agree on, each rule defined once.

`types` (column-type classes), `roles` (viewer < editor < admin), `formats` (export formats),
`filters` (filter operators), `names` (dataset names from file names) and `cells` (how a value
reads in a table cell). Pure Python: no duckdb, no HTTP, no web framework, so every part of the
package may import it. Pages receive the parts their scripts need as one JSON block
(`browser_config()`), rather than declaring them again in JavaScript.
"""

from __future__ import annotations

from typing import Any

from . import cells, filters, formats, roles, types


def browser_config() -> dict[str, Any]:
    """The contract as the pages' scripts read it: the JSON block #myapp-contract of base.html."""
    return {
        "type_classes": [[name, pattern] for name, pattern in types.CLASS_PATTERNS],
        "cells": {
            "significant": cells.SIGNIFICANT,
            "plain_min": cells.PLAIN_MIN,
            "plain_max": cells.PLAIN_MAX,
            "cut_chars": cells.CUT_CHARS,
            "cut_lines": cells.CUT_LINES,
        },
        "operators": [
            {"key": op.key, "label": op.label, "takes_value": op.takes_value}
            for op in filters.OPERATORS
        ],
        "roles": list(roles.ROLES),
        "export_formats": [
            {"key": f.key, "label": f.label, "extension": f.extension} for f in formats.FORMATS
        ],
    }
