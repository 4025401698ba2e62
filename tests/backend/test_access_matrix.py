"""Every operation of the API, called by every kind of caller, against what it declares.

The walk covers whatever routes exist when it runs: each operation in /api/openapi.json must
declare `x-required-role` (public, viewer, editor or admin), and a real backend with credentials
must answer anonymous, viewer, editor and admin callers accordingly: 401 without credentials,
403 with too little scope, anything else (200, 404, 422…) when allowed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.accounts import ADMIN_HEADERS, Accounts, bearer, secured_env
from tests.support.servers import ServerProcess

RANK = {"public": 0, "share": 0, "viewer": 1, "editor": 2, "admin": 3}
# The only operations that may declare nothing: anyone may call them by design.
UNDECLARED = {("get", "/api/health"), ("post", "/api/auth/login")}
# Served outside the OpenAPI document, also open to anyone.
NOT_IN_SCHEMA = ("/api/openapi.json", "/api/docs")

# What the important operations must require. Ours always exist; the other resources' are
# checked whenever their routes are present.
EXPECTED: dict[tuple[str, str], str] = {
    ("get", "/api/auth/me"): "public",
    ("post", "/api/auth/logout"): "viewer",
    ("post", "/api/auth/password"): "viewer",
    ("get", "/api/tokens"): "viewer",
    ("post", "/api/tokens"): "viewer",
    ("delete", "/api/tokens/{token_id}"): "viewer",
    ("get", "/api/users"): "admin",
    ("post", "/api/users"): "admin",
    ("get", "/api/users/{username}"): "admin",
    ("patch", "/api/users/{username}"): "admin",
    ("delete", "/api/users/{username}"): "admin",
    ("get", "/api/audit"): "admin",
}
OURS = set(EXPECTED)
EXPECTED.update(
    {
        ("get", "/api/datasets"): "viewer",
        ("post", "/api/datasets"): "editor",
        ("get", "/api/datasets/{name}"): "viewer",
        ("put", "/api/datasets/{name}"): "editor",
        ("patch", "/api/datasets/{name}"): "editor",
        ("delete", "/api/datasets/{name}"): "editor",
        ("get", "/api/datasets/{name}/rows"): "viewer",
        ("get", "/api/datasets/{name}/facets"): "viewer",
        ("get", "/api/datasets/{name}/profile"): "viewer",
        ("get", "/api/datasets/{name}/versions"): "viewer",
        ("post", "/api/datasets/{name}/versions/{version}/restore"): "editor",
        ("post", "/api/query"): "viewer",
        ("get", "/api/query/export"): "viewer",
        ("post", "/api/query/export"): "viewer",
        ("get", "/api/queries"): "viewer",
        ("post", "/api/queries"): "editor",
        ("get", "/api/queries/{slug}"): "viewer",
        ("put", "/api/queries/{slug}"): "editor",
        ("delete", "/api/queries/{slug}"): "editor",
        ("get", "/api/queries/{slug}/versions"): "viewer",
        ("post", "/api/queries/{slug}/run"): "viewer",
        ("get", "/api/dashboards"): "viewer",
        ("post", "/api/dashboards"): "editor",
        ("get", "/api/dashboards/{slug}"): "viewer",
        ("put", "/api/dashboards/{slug}"): "editor",
        ("delete", "/api/dashboards/{slug}"): "editor",
        ("get", "/api/dashboards/{slug}/versions"): "viewer",
        ("get", "/api/dashboards/{slug}/diff"): "viewer",
        ("post", "/api/dashboards/{slug}/versions/{version}/restore"): "editor",
        ("post", "/api/dashboards/{slug}/tiles/{tile_id}/run"): "viewer",
        ("get", "/api/recent-runs"): "viewer",
        ("get", "/api/shares"): "editor",
        ("post", "/api/shares"): "editor",
        ("delete", "/api/shares/{share_id}"): "editor",
        ("get", "/api/shared"): "share",
        ("post", "/api/shared/run"): "share",
        ("post", "/api/shared/tiles/{tile_id}/run"): "share",
    }
)

DUMMY = "matrix-dummy"
DUMMY_UUID = "00000000-0000-4000-8000-00000000d0d0"


@pytest.fixture(scope="module", params=["private", "public_read"])
def server(request, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = secured_env(MYAPP_PUBLIC_READ="true") if request.param == "public_read" else secured_env()
    proc = ServerProcess(
        "backend", tmp_path_factory.mktemp(f"matrix-{request.param}"), env=env
    ).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def callers(server: ServerProcess) -> dict[str, dict[str, str]]:
    accounts = Accounts(server)
    try:
        return {
            "anonymous": {},
            "viewer": bearer(accounts.user_token("viewer")),
            "editor": bearer(accounts.user_token("editor")),
            "admin": ADMIN_HEADERS,
            "share": bearer(_share_token(server)),
        }
    finally:
        accounts.close()


def _share_token(server: ServerProcess) -> str:
    """A live share link of a dashboard made for the walk."""
    with httpx.Client(base_url=server.url + "/api", headers=ADMIN_HEADERS, timeout=30) as c:
        board = c.post("/dashboards", json={"title": "matrix board"})
        assert board.status_code == 201, board.text
        link = c.post(
            "/shares", json={"kind": "dashboard", "target": board.json()["slug"], "name": "m"}
        )
        assert link.status_code == 201, link.text
        return link.json()["token"]


@pytest.fixture(scope="module")
def spec(server: ServerProcess) -> dict[str, Any]:
    return httpx.get(server.url + "/api/openapi.json").json()


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    methods = {"get", "post", "put", "patch", "delete"}
    return [
        (method, path, op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in methods
    ]


def _dummy(schema: dict[str, Any]) -> Any:
    kind = schema.get("type")
    if kind is None:
        for option in schema.get("anyOf", []):
            if option.get("type") not in (None, "null"):
                return _dummy(option)
    return {"integer": 1, "number": 1, "boolean": "false", "array": DUMMY}.get(kind, DUMMY)


def minimal_request(path: str, op: dict[str, Any]) -> dict[str, Any]:
    """Path parameters filled with a dummy (a UUID where the path takes only those), required
    query parameters too, a minimal body."""
    uuids = {
        p["name"]
        for p in op.get("parameters", [])
        if p.get("in") == "path" and p.get("schema", {}).get("format") == "uuid"
    }
    url = re.sub(r"\{([^}]+)\}", lambda m: DUMMY_UUID if m.group(1) in uuids else DUMMY, path)
    params = {
        p["name"]: _dummy(p.get("schema", {}))
        for p in op.get("parameters", [])
        if p.get("in") == "query" and p.get("required")
    }
    request: dict[str, Any] = {"url": url, "params": params}
    content = op.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        request["json"] = {}
    elif content:
        request["content"] = b""
    return request


def expected_status_class(required: str, caller: str, public_read: bool) -> str:
    """'allowed', or the refusal a caller must get."""
    if required == "public":
        return "allowed"
    # A share link's credential opens only the share routes; accounts never open those.
    if required == "share":
        return "allowed" if caller == "share" else ("401" if caller == "anonymous" else "403")
    if caller == "share":
        return "403"
    if caller == "anonymous":
        return "allowed" if public_read and required == "viewer" else "401"
    return "allowed" if RANK[caller] >= RANK[required] else "403"


def test_every_operation_declares_what_it_needs(spec):
    undeclared = [
        f"{method.upper()} {path}"
        for method, path, op in operations(spec)
        if "x-required-role" not in op and (method, path) not in UNDECLARED
    ]
    assert not undeclared, (
        "these operations declare no role (add ViewerDep, EditorDep, AdminDep or PublicDep): "
        + ", ".join(undeclared)
    )
    for method, path, op in operations(spec):
        if "x-required-role" in op:
            assert op["x-required-role"] in RANK
            assert op.get("security") == [{"HTTPBearer": []}], f"{method} {path}"
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


def test_important_operations_require_the_right_role(spec):
    declared = {(m, p): op.get("x-required-role") for m, p, op in operations(spec)}
    missing = sorted(key for key in OURS if key not in declared)
    assert not missing, f"operations missing from the API: {missing}"
    wrong = {
        f"{m.upper()} {p}": (declared[(m, p)], want)
        for (m, p), want in EXPECTED.items()
        if (m, p) in declared and declared[(m, p)] != want
    }
    assert not wrong, f"declared vs expected: {wrong}"


def test_every_operation_answers_every_caller_by_its_rule(server, spec, callers, request):
    public_read = "public_read" in request.node.callspec.id
    failures = []
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        for method, path, op in operations(spec):
            required = op.get("x-required-role", "public")
            for caller, headers in callers.items():
                response = client.request(
                    method.upper(), headers=headers, **minimal_request(path, op)
                )
                want = expected_status_class(required, caller, public_read)
                got = response.status_code
                allowed = got not in (401, 403) and got < 500
                ok = allowed if want == "allowed" else str(got) == want
                if got in (401, 403):
                    body = response.json()
                    ok = ok and body["error"]["code"] and body["error"]["message"]
                    if got == 401:
                        ok = ok and response.headers["WWW-Authenticate"].startswith("Bearer")
                if not ok:
                    failures.append(
                        f"{method.upper()} {path} as {caller} (needs {required}): got {got}, "
                        f"expected {want}: {response.text[:200]}"
                    )
        for path in NOT_IN_SCHEMA:
            assert client.get(path).status_code == 200
    assert not failures, "\n".join(failures)
