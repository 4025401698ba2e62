"""Which declared endpoint a request is for, looked up once per (method, path).

The access gate (its requirement) and the metrics (its route template) both need to know this
before FastAPI routes the request. Trying every endpoint's pattern costs tens of microseconds
per request; a path seen before costs a dict lookup.
"""

from __future__ import annotations

import re
import threading
from typing import Any, NamedTuple

from starlette.routing import compile_path

# (method, path) pairs remembered before the memory starts over: the API's own paths plus
# those naming the datasets, queries and tokens in use; a caller walking endless names only
# empties it.
REMEMBERED = 4096


class Operation(NamedTuple):
    template: str  # the path as in the OpenAPI document
    methods: frozenset[str]
    role: str | None  # the requirement (auth/dependencies.py), None when public


class Found(NamedTuple):
    exact: Operation | None  # the endpoint for this method and path
    path_only: Operation | None  # an endpoint for this path under another method


class Operations:
    def __init__(self, api: Any) -> None:
        self.api = api
        self._table: list[tuple[re.Pattern[str], Operation]] | None = None
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], Found] = {}

    def find(self, method: str, path: str) -> Found:
        found = self._seen.get((method, path))
        if found is None:
            found = self._match(method, path)
            if len(self._seen) >= REMEMBERED:
                self._seen.clear()
            self._seen[(method, path)] = found
        return found

    def _match(self, method: str, path: str) -> Found:
        if self._table is None:
            from .auth.dependencies import declared_operations

            with self._lock:
                if self._table is None:
                    self._table = [
                        (compile_path(full)[0], Operation(template, frozenset(methods), role))
                        for full, template, methods, role in declared_operations(self.api)
                    ]
        path_only = None
        for pattern, operation in self._table:
            if pattern.match(path):
                if method in operation.methods:
                    return Found(operation, path_only)
                path_only = path_only or operation
        return Found(None, path_only)


def operations_of(api: Any) -> Operations:
    """The app's one lookup, made on first use (the routes are all declared by then)."""
    operations = getattr(api.state, "operations", None)
    if operations is None:
        operations = api.state.operations = Operations(api)
    return operations
