"""`/api/v1/openapi.json` documents every API route, and schemathesis, driving the real app
in-process with the document's own operations, finds no server error and no answer that
breaks the document (issue 6, "Must show")."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from appliance.store import Store
from tests.webapp.test_row_scope import add_candidate_file

Login = Callable[[str], FlaskClient]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = 12
NEGATIVE_EXAMPLES = 8
"""Per operation and account: each account's run stays under a minute on two cores."""


def test_document_covers_every_api_route(login_as: Login, demo_app: Flask) -> None:
    """Each /api/v1 rule and method is an operation with its parameters and 401/403/404."""
    response = login_as("integration").get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"].startswith("3.")
    # Loading it the way the fuzzer does: an invalid operation raises here.
    assert (
        len([r.ok() for r in schemathesis.openapi.from_dict(document).get_all_operations()]) >= 17
    )
    documented = {
        (path, method) for path, operations in document["paths"].items() for method in operations
    }
    for rule in demo_app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1"):
            continue
        path = rule.rule
        for argument in rule.arguments:
            path = path.replace(f"<int:{argument}>", f"{{{argument}}}")
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            assert (path, method.lower()) in documented, (path, method)
            operation = document["paths"][path][method.lower()]
            assert {"401", "403", "404", "400"} <= set(operation["responses"])
            names = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
            assert names == set(rule.arguments)
    assert ("/api/v1/openapi.json", "get") in documented
    candidate = document["components"]["schemas"]["CandidateFile"]["properties"]["candidate"]
    assert "id_number" in candidate["properties"]  # from webapp.api.ENDPOINTS


def test_document_needs_a_token(demo_app: Flask) -> None:
    assert demo_app.test_client().get("/api/v1/openapi.json").status_code == 401


def _fuzz(
    app: Flask, reader: str, headers: dict[str, str], cookies: dict[str, str] | None = None
) -> Counter[int]:
    """Every operation of the document (read with the `reader` token; schemathesis leaves the
    document's own path out), EXAMPLES valid and NEGATIVE_EXAMPLES invalid requests each
    (bad ids, bad query values, bad bodies), sent with `headers` and `cookies`: how many
    answers had each status."""
    schema = schemathesis.openapi.from_wsgi(
        "/api/v1/openapi.json", app, headers={"Authorization": reader}
    )
    statuses: Counter[int] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 16
    for operation in operations:
        for mode, examples in (
            (GenerationMode.POSITIVE, EXAMPLES),
            (GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES),
        ):

            @given(case=operation.as_strategy(mode))
            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            def run(case: Any) -> None:
                response = case.call_and_validate(headers=headers, cookies=cookies, checks=CHECKS)
                statuses[response.status_code] += 1
                if response.status_code == 401:
                    # Only when the fuzzer sent credentials of its own (the document's security
                    # schemes): a made-up bearer token, or a made-up session cookie.
                    forged = "Authorization" in (case.headers or {}) or "session" in (
                        case.cookies or {}
                    )
                    assert forged, (case.headers, case.cookies)

            run()
    return statuses


def test_schemathesis_finds_no_server_error_with_an_api_token(
    login_as: Login, demo_app: Flask, demo_store: Store
) -> None:
    """The integration account's bearer token, over a box with a full candidate file."""
    add_candidate_file(demo_store, "EAST-CARD", "Fuzz", ["interviewer"])
    client = login_as("integration")
    token = client.environ_base["HTTP_AUTHORIZATION"]
    statuses = _fuzz(demo_app, token, {"Authorization": token})
    assert statuses.total() >= 16 * 3
    assert statuses[200] > 16, statuses  # real answers among the refusals


def test_schemathesis_finds_no_server_error_with_an_hr_session(
    login_as: Login, demo_app: Flask, demo_store: Store
) -> None:
    """A signed-in HR session (cookie and CSRF header), who may also write overrides."""
    add_candidate_file(demo_store, "EAST-CARD", "Fuzz", ["interviewer"])
    reader = login_as("integration").environ_base["HTTP_AUTHORIZATION"]
    client = login_as("hr.east")
    cookie = client.get_cookie("session")
    assert cookie is not None
    csrf = {"X-CSRF-Token": client.environ_base["HTTP_X_CSRF_TOKEN"]}
    statuses = _fuzz(demo_app, reader, csrf, {"session": cookie.value})
    assert statuses.total() >= 16 * 3
    assert statuses[200] > 16, statuses
