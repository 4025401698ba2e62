"""Every operation of /api/openapi.json, fuzzed by Schemathesis against a real backend.

Schemathesis reads the document and, per operation, sends boundary values of every parameter
and body field (its coverage phase) and a bounded number of random ones (its fuzzing phase).
Every answer must be: not a 5xx, a status code the document lists, the documented content type,
a body that conforms to the documented schema, and for every error the one error body.

The server is this module's own (operations delete datasets, accounts and tokens), secured by an
admin token that every request carries, so the calls get past the access gate; the routes made
for share links (/api/shared/...) are called with a link's secret instead. The path parameters
are sometimes the names of things that exist (a dataset, a saved query, a dashboard under the
same slug with a tile and a choice parameter, a staged upload, an account, a token, a share
link), so the operations are also exercised beyond 404; whatever a successful change removed is
put back before the next example.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from myapp.backend.app import create_api
from myapp.settings import Settings
from tests.support.accounts import ADMIN_HEADERS, PASSWORD, secured_env
from tests.support.servers import ServerProcess

# The document as the backend builds it; test_the_served_document_is_the_one_fuzzed proves the
# server serves exactly this one. Building the app opens nothing, so this is cheap at import.
DOCUMENT = create_api(Settings(_env_file=None)).openapi()

# Random examples per operation, on top of the coverage phase's boundary cases. Enough to find
# a crash in a parser; bounded so the whole module stays within its share of the suite's time.
MAX_EXAMPLES = 6
# Fixed, so a run that fails can be repeated exactly; change it to explore further.
RANDOM_SEED = 20260701

SCHEMA = schemathesis.openapi.from_dict(
    DOCUMENT,
    config=schemathesis.Config.from_dict(
        {
            "seed": RANDOM_SEED,
            # A loaded machine must not fail the run for being slow: there is no deadline.
            "suppress-health-check": ["too_slow"],
            "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
            "phases": {"stateful": {"enabled": False}},
        }
    ),
)

SEED_DATASET = "fz_seed"
SEED_QUERY = "fz-seed"
SEED_USER = "fzuser"
SEED_CSV = b"id,city,amount,day\n1,Oslo,10.5,2024-01-02\n2,Lima,,2024-02-03\n3,<b>Rome</b>,7,\n"

# Existing things the path parameters may name; token_id is learnt when the token is made.
KNOWN: dict[str, Any] = {
    "name": SEED_DATASET,
    "slug": SEED_QUERY,
    "version": 1,
    "username": SEED_USER,
    "token_id": None,
    "tile_id": "t1",
    "upload_id": None,
    "share_id": None,
}
# The secrets of a share link to the seed query and to the seed dashboard.
SHARE_SECRETS: dict[str, str] = {}


def one_error_body(ctx: Any, response: Any, case: Any) -> None:
    """Every 4xx/5xx, documented or not, carries {"error": {"code", "message", "detail"?}}."""
    if response.status_code < 400:
        return
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), f"error as {content_type!r}"
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert set(error) <= {"code", "message", "detail"}, error
    assert isinstance(error.get("code"), str) and error["code"], error
    assert isinstance(error.get("message"), str) and error["message"], error


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    one_error_body,
]


@SCHEMA.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> Any:
    """Half the time, the generated names are replaced by names of things that exist."""
    known = {key: KNOWN[key] for key in path_parameters or () if KNOWN.get(key) is not None}
    if not known:
        return st.just(path_parameters)
    return st.sampled_from([path_parameters, {**path_parameters, **known}])


# Random SQL, charts and files are refused before anything runs; these reach the work itself.
VALID_SQL = (
    f"SELECT * FROM {SEED_DATASET}",
    f"SELECT city, sum(amount) AS amount FROM {SEED_DATASET} GROUP BY city",
)
VALID_CHART = {"type": "bar", "x": "city", "y": ["amount"]}


@SCHEMA.hook
def flatmap_body(context: Any, body: Any) -> Any:
    """Half the time, a generated body gets valid SQL, a valid chart, a readable file or the
    seed account's password, keeping its other generated fields."""
    operation = f"{context.operation.method.upper()} {context.operation.path}"
    variants = [body]
    if operation == "PUT /api/datasets/{name}":
        variants.append(SEED_CSV)
    elif operation == "POST /api/datasets":
        name = body.get("name") if isinstance(body, dict) else None
        variants.append({"file": SEED_CSV, "name": name if isinstance(name, str) else "fz_form"})
    elif operation == "POST /api/uploads":
        # A multipart form (a dict) or the raw file as the body.
        variants.append({"file": SEED_CSV} if isinstance(body, dict) else SEED_CSV)
    elif isinstance(body, dict) and "sql" in body:
        for sql in VALID_SQL:
            variant = {**body, "sql": sql, "params": None}
            if "parameters" in body:
                variant["parameters"] = []
            if "chart" in body:
                variant["chart"] = VALID_CHART
            variants.append(variant)
    elif operation == "POST /api/auth/login":
        variants.append({"username": SEED_USER, "password": PASSWORD})
    return st.sampled_from(variants)


@SCHEMA.hook
def flatmap_query(context: Any, query: Any) -> Any:
    """Upload options are free text in the document; half the time they are the defaults."""
    if (context.operation.path, context.operation.method) not in (
        ("/api/datasets/{name}", "put"),
        ("/api/uploads", "post"),
    ):
        return st.just(query)
    return st.sampled_from([query, {"filename": "fz.csv"}, {"mode": "replace"}])


def seed(client: httpx.Client) -> None:
    """Create whatever of the known things is missing (idempotent)."""
    if client.get(f"/api/datasets/{SEED_DATASET}").status_code == 404:
        response = client.put(
            f"/api/datasets/{SEED_DATASET}",
            params={"filename": "seed.csv"},
            content=SEED_CSV,
        )
        assert response.status_code == 201, response.text
    if client.get(f"/api/queries/{SEED_QUERY}").status_code == 404:
        response = client.post(
            "/api/queries",
            json={
                "slug": SEED_QUERY,
                "title": "Fuzz seed",
                "sql": f"SELECT city, amount FROM {SEED_DATASET} WHERE id >= $min_id",
                "parameters": [{"name": "min_id", "type": "integer", "default": 0}],
                "chart": {"type": "bar", "x": "city", "y": ["amount"]},
            },
        )
        assert response.status_code == 201, response.text
    if client.get(f"/api/users/{SEED_USER}").status_code == 404:
        response = client.post(
            "/api/users", json={"username": SEED_USER, "password": PASSWORD, "role": "editor"}
        )
        assert response.status_code == 201, response.text
    if client.get(f"/api/dashboards/{SEED_QUERY}").status_code == 404:
        # The same slug as the seed query, and a parameter named like the seed dataset, so the
        # known path parameters reach the dashboard's tiles and choices too.
        response = client.post(
            "/api/dashboards",
            json={
                "slug": SEED_QUERY,
                "title": "Fuzz board",
                "parameters": [
                    {"name": SEED_DATASET, "type": "choice", "choices_query": SEED_QUERY}
                ],
                "tiles": [
                    {"id": "t1", "type": "table", "query": SEED_QUERY},
                    {"id": "t2", "type": "chart", "query": SEED_QUERY},
                ],
            },
        )
        assert response.status_code == 201, response.text
    uploads_id = KNOWN.get("upload_id")
    if uploads_id is None or client.get(f"/api/uploads/{uploads_id}").status_code != 200:
        response = client.post("/api/uploads", files={"file": ("seed.csv", SEED_CSV, "text/csv")})
        assert response.status_code == 201, response.text
        KNOWN["upload_id"] = response.json()["upload"]["id"]
    for kind in ("query", "dashboard"):
        # A link stops with its target, also when the slug is made again: ask the link itself.
        if (
            kind not in SHARE_SECRETS
            or httpx.get(
                f"{client.base_url}/api/shared",
                headers={"Authorization": f"Bearer {SHARE_SECRETS[kind]}"},
                timeout=30.0,
            ).status_code
            != 200
        ):
            response = client.post(
                "/api/shares", json={"kind": kind, "target": SEED_QUERY, "name": "fuzz " + kind}
            )
            assert response.status_code == 201, response.text
            SHARE_SECRETS[kind] = response.json()["token"]
            SHARE_SECRETS[kind + "_id"] = response.json()["id"]
    KNOWN["share_id"] = SHARE_SECRETS["query_id"]
    tokens = client.get("/api/tokens", params={"username": SEED_USER}).json()["tokens"]
    if not tokens:
        response = client.post(
            "/api/tokens", json={"name": "fuzz", "scope": "viewer", "username": SEED_USER}
        )
        assert response.status_code == 201, response.text
        tokens = [response.json()]
    KNOWN["token_id"] = tokens[0]["id"]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # A small upload limit keeps any generated body cheap and reaches the 413 path.
    server = ServerProcess(
        "backend",
        tmp_path_factory.mktemp("fuzz"),
        env=secured_env(MYAPP_MAX_UPLOAD_BYTES=str(64 * 1024)),
    ).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def admin(fuzz_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fuzz_server.url, headers=ADMIN_HEADERS, timeout=30.0) as client:
        seed(client)
        yield client


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def test_the_served_document_is_the_one_fuzzed(fuzz_server: ServerProcess) -> None:
    served = httpx.get(fuzz_server.url + "/api/openapi.json", timeout=30.0)
    assert served.status_code == 200
    assert served.json() == DOCUMENT
    assert len(list(SCHEMA.get_all_operations())) >= 40


def test_every_error_response_is_documented_with_the_error_body() -> None:
    """Status codes a route lists beside the app-wide 4XX/5XX must still name the error body,
    or clients (and the fuzzing below) cannot know the shape of those answers."""
    missing = []
    for path, operations in DOCUMENT["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                # The health check's 503 is its own body, by design (monitors read it).
                if status[0] not in "45" or (path, status) == ("/api/health", "503"):
                    continue
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                if schema != {"$ref": "#/components/schemas/ErrorBody"}:
                    missing.append(f"{method.upper()} {path} {status}")
    assert not missing, missing


@SCHEMA.parametrize()
def test_operation(
    case: Any, fuzz_server: ServerProcess, admin: httpx.Client, http: requests.Session
) -> None:
    headers = ADMIN_HEADERS
    if case.path.startswith("/api/shared"):
        # The routes of share links answer only a link's secret (everything else is a 403).
        kind = "dashboard" if "/tiles/" in case.path or "/parameters/" in case.path else "query"
        headers = {"Authorization": f"Bearer {SHARE_SECRETS[kind]}"}
    response = case.call(base_url=fuzz_server.url, session=http, headers=headers)
    case.validate_response(response, checks=CHECKS, headers=headers)
    if case.method != "GET" and response.status_code < 300:
        # A change succeeded: put back what it may have removed, renamed or revoked.
        seed(admin)
