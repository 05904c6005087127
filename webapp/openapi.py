"""The OpenAPI 3 document of `/api/v1` (issue 6, item 8), served at `/api/v1/openapi.json`.

Built with apispec from the app's URL map and the declarations below, so it cannot
drift from the routes: every `/api/v1` rule must have an entry in `OPERATIONS`
(building the document fails otherwise, and tests/webapp/test_openapi_schema.py
builds it), and the personal fields each answer may carry come from
`webapp.api.ENDPOINTS`, the same list the gate is asked with. Which of those
fields a caller then sees, full, masked or not at all, is the gate's decision:
the schema makes every personal field optional and nullable.

The hospital's other systems (HIS, OA) read it with their integration account's
API token; signed-in staff can read it too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from apispec import APISpec
from flask import Blueprint, Flask, current_app, jsonify
from werkzeug.routing import Rule

from appliance.records import JobStatus, SessionStatus, Stage
from compliance.policy import default_policy
from webapp.api import (
    JOB_DETAIL_KEYS,
    JOB_SUMMARY_KEYS,
    MAX_ID,
    XLSX,
    fields_of,
    request_actor,
)

bp = Blueprint("api_doc", __name__, url_prefix="/api/v1")

API_VERSION = "1.0.0"
PREFIX = "/api/v1"


def _string(nullable: bool = False, **extra: Any) -> dict[str, Any]:
    return {"type": "string", **({"nullable": True} if nullable else {}), **extra}


def _integer(nullable: bool = False) -> dict[str, Any]:
    return {"type": "integer", **({"nullable": True} if nullable else {})}


def _number(nullable: bool = False) -> dict[str, Any]:
    return {"type": "number", **({"nullable": True} if nullable else {})}


def _array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def _object(
    properties: dict[str, Any], required: tuple[str, ...] = (), nullable: bool = False
) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    if nullable:
        schema["nullable"] = True
    return schema


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def shown_row(endpoint: str, table: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A row as the gate shows it (`Shown.as_dict()`): its id, each personal field the endpoint
    declares for `table` (absent when hidden, masked text when masked), and `masked`."""
    properties: dict[str, Any] = {"id": _integer(), "masked": _array(_string())}
    for qualified in fields_of(endpoint):
        owner, name = qualified.split(".", 1)
        if owner == table:
            properties[name] = _string(nullable=True)
    return _object({**properties, **(extra or {})}, ("id", "masked"))


def _when(nullable: bool = False) -> dict[str, Any]:
    return _string(nullable, format="date-time")


PIPELINE = _object({s.value: _integer() for s in Stage}, tuple(s.value for s in Stage))
JOB_PROPERTIES: dict[str, Any] = {
    "id": _integer(),
    "org_unit_id": _integer(),
    "department": _string(nullable=True),
    "title": _string(),
    "status": _string(enum=[s.value for s in JobStatus]),
    "created_at": _when(),
    "pipeline": PIPELINE,
    "description": _string(),
    "requirements": {"type": "object"},
    "scoring_template": _object(
        {
            "id": _integer(),
            "name": _string(),
            "dimensions": _array(
                _object({"id": _integer(), "name": _string(), "weight": _number()})
            ),
        },
        nullable=True,
    ),
    "plans": _array(
        _object(
            {
                "id": _integer(),
                "name": _string(),
                "mode": _string(),
                "round_no": _integer(),
                "questions": _array(
                    _object(
                        {
                            "id": _integer(),
                            "text": _string(),
                            "competency": _string(nullable=True),
                            "think_seconds": _integer(),
                            "answer_seconds": _integer(),
                            "retakes": _integer(),
                        }
                    )
                ),
            }
        )
    ),
}


def job_schema(keys: tuple[str, ...]) -> dict[str, Any]:
    """The job object from the key list the API builds it with (webapp.api.JOB_*_KEYS)."""
    return _object({k: JOB_PROPERTIES[k] for k in keys}, keys)


def components() -> dict[str, dict[str, Any]]:
    """The named schemas; personal fields come from the endpoint declarations."""
    dimension = _object(
        {
            "id": _string(),
            "name": _string(nullable=True),
            "weight": _number(True),
            "score": _number(True),
            "confidence": _number(True),
        }
    )
    return {
        "Error": _object({"error": _string(), "message": _string()}, ("error", "message")),
        "Candidate": shown_row("api.candidates", "candidates", {"org_unit_id": _integer()}),
        "JobSummary": job_schema(JOB_SUMMARY_KEYS),
        "JobDetail": job_schema(JOB_DETAIL_KEYS),
        "Application": _object(
            {
                "id": _integer(),
                "candidate_id": _integer(),
                "candidate_name": _string(nullable=True),
                "job_id": _integer(),
                "job_title": _string(),
                "stage": _string(enum=[s.value for s in Stage]),
                "created_at": _when(),
                "updated_at": _when(),
            },
            ("id", "candidate_id", "job_id", "stage"),
        ),
        "InterviewSummary": _object(
            {
                "id": _integer(),
                "application_id": _integer(),
                "candidate_id": _integer(),
                "candidate_name": _string(nullable=True),
                "job_id": _integer(),
                "status": _string(enum=[s.value for s in SessionStatus]),
                "window_start": _when(True),
                "window_end": _when(True),
                "started_at": _when(True),
                "completed_at": _when(True),
                "analysis_status": _string(nullable=True),
            },
            ("id", "application_id", "candidate_id", "job_id", "status"),
        ),
        "Score": _object(
            {
                "id": _integer(),
                "session_id": _integer(),
                "application_id": _integer(),
                "candidate_id": _integer(),
                "candidate_name": _string(nullable=True),
                "job_id": _integer(),
                "ai": _object(
                    {
                        "overall": _number(True),
                        "summary": _string(nullable=True),
                        "dimensions": _array(dimension),
                    },
                    nullable=True,
                ),
                "overrides": {"type": "object", "additionalProperties": _number()},
                "updated_at": _when(),
            },
            ("id", "session_id", "application_id", "ai", "overrides"),
        ),
        "CandidateFile": _object(
            {
                "purpose": _string(),
                "candidate": shown_row("api.candidate", "candidates", {"org_unit_id": _integer()}),
                "applications": _array(
                    _object(
                        {
                            "id": _integer(),
                            "job_id": _integer(),
                            "job_title": _string(),
                            "stage": _string(enum=[s.value for s in Stage]),
                        }
                    )
                ),
                "comments": _array(
                    shown_row("api.candidate", "comments", {"application_id": _integer()})
                ),
                "referrals": _array(
                    shown_row("api.candidate", "referrals", {"channel": _string()})
                ),
                "interviews": _array(
                    _object(
                        {
                            "id": _integer(),
                            "application_id": _integer(),
                            "status": _string(),
                            "analysis_status": _string(nullable=True),
                        }
                    )
                ),
            },
            ("purpose", "candidate", "applications", "comments", "referrals", "interviews"),
        ),
        "Interview": _object(
            {
                "purpose": _string(),
                "interview": _object(
                    {
                        "id": _integer(),
                        "application_id": _integer(),
                        "status": _string(enum=[s.value for s in SessionStatus]),
                        "analysis_status": _string(nullable=True),
                        "analysis_error": _string(nullable=True),
                    }
                ),
                "candidate": shown_row("api.interview", "candidates"),
                "answers": _array({"type": "object"}),
                "evaluations": _array({"type": "object"}),
                "recordings": _array(
                    _object({"id": _integer(), "answer_id": _integer(), "media_type": _string()})
                ),
                "report": {"type": "object", "nullable": True},
            },
            ("purpose", "interview", "candidate", "answers", "evaluations", "recordings"),
        ),
        "Explanation": _object(
            {
                "purpose": _string(),
                "session_id": _integer(),
                "lang": _string(enum=["zh", "en"]),
                "report": {"type": "object", "nullable": True},
                "explanation": _string(nullable=True),
                "human_review": _string(),
            },
            ("purpose", "session_id", "lang", "human_review"),
        ),
    }


def _listing(key: str, item: str) -> dict[str, Any]:
    return _object({"purpose": _string(), key: _array(_ref(item))}, ("purpose", key))


@dataclass(frozen=True)
class Operation:
    """How one `/api/v1` route is documented: what it does, its query, its body, its answer."""

    summary: str
    query: tuple[str, ...] = ("purpose",)
    body: dict[str, Any] | None = None
    status: int = 200
    content: dict[str, dict[str, Any]] = field(default_factory=dict)
    tag: str = "candidates"


def _json(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {"application/json": {"schema": schema}}


BINARY = _string(format="binary")
MEDIA = {kind: {"schema": BINARY} for kind in ("video/webm", "audio/webm", "video/mp4")}

OPERATIONS: dict[str, Operation] = {
    "api.candidates": Operation(
        "Candidates in the caller's scope, personal fields as the gate shows them",
        content=_json(_listing("candidates", "Candidate")),
    ),
    "api.search_candidates": Operation(
        "Exact search by phone or e-mail (in the body: never in a URL)",
        body=_object(
            {"phone": _string(maxLength=200), "email": _string(maxLength=320)},
        ),
        content=_json(_listing("candidates", "Candidate")),
    ),
    "api.candidate": Operation(
        "One candidate's file: applications, comments, referrals, interviews",
        content=_json(_ref("CandidateFile")),
    ),
    "api.export_candidates": Operation(
        "The candidate list as CSV (an export event per person)",
        content={"text/csv": {"schema": _string()}},
    ),
    "api.export_candidates_xlsx": Operation(
        "The candidate list as an Excel workbook, masked as the gate says (export events)",
        query=("purpose", "job"),
        content={XLSX: {"schema": BINARY}},
    ),
    "api.applications": Operation(
        "Applications in scope with their pipeline stage",
        query=("purpose", "job", "stage"),
        content=_json(_listing("applications", "Application")),
        tag="applications",
    ),
    "api.interviews": Operation(
        "Interview sessions in scope (by job, status, day of the box's clock)",
        query=("purpose", "job", "session_status", "date"),
        content=_json(_listing("interviews", "InterviewSummary")),
        tag="interviews",
    ),
    "api.interview": Operation(
        "One interview: answers, transcripts, AI signals and report, as the gate allows",
        content=_json(_ref("Interview")),
        tag="interviews",
    ),
    "api.scores": Operation(
        "AI score reports in scope (advice only) with the scores people set",
        query=("purpose", "job"),
        content=_json(_listing("scores", "Score")),
        tag="scores",
    ),
    "api.score_report_pdf": Operation(
        "An interview's score report as PDF (an export event)",
        query=("purpose", "lang"),
        content={"application/pdf": {"schema": BINARY}},
        tag="scores",
    ),
    "api.score_explanation": Operation(
        "The plain-language explanation of an AI score (PIPL Art. 24)",
        query=("purpose", "lang"),
        content=_json(_ref("Explanation")),
        tag="scores",
    ),
    "api.override_score": Operation(
        "A person replaces one dimension's AI score, with a reason",
        body=_object(
            {
                "dimension_id": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
                "score": _number(),
                "reason": _string(maxLength=2000),
            },
            ("dimension_id", "score", "reason"),
        ),
        status=201,
        content=_json(_object({"id": _integer(), "session_id": _integer()}, ("id",))),
        tag="scores",
    ),
    "api.stream_recording": Operation(
        "Stream an answer's recording (if the role may)", content=MEDIA, tag="interviews"
    ),
    "api.download_recording": Operation(
        "Download an answer's recording (refused unless the policy grants it)",
        content=MEDIA,
        tag="interviews",
    ),
    "api_jobs.jobs": Operation(
        "Requisitions in the caller's scope with pipeline counts",
        query=("purpose", "job_status"),
        content=_json(_listing("jobs", "JobSummary")),
        tag="jobs",
    ),
    "api_jobs.job": Operation(
        "One requisition: requirements, scoring template, interview plans",
        content=_json(_object({"purpose": _string(), "job": _ref("JobDetail")})),
        tag="jobs",
    ),
    "api_doc.openapi": Operation(
        "This document",
        query=(),
        content=_json({"type": "object"}),
        tag="meta",
    ),
}


def query_parameters() -> dict[str, dict[str, Any]]:
    """The query parameters the API understands, each with the values it accepts."""
    positive = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
    return {
        "purpose": {
            "name": "purpose",
            "description": "Why the data is processed (PIPL Art. 6); default: the role's first",
            "schema": _string(enum=sorted(default_policy().purposes)),
        },
        "job": {"name": "job", "description": "Only this job's rows", "schema": positive},
        "stage": {"name": "stage", "schema": _string(enum=[s.value for s in Stage])},
        "session_status": {
            "name": "status",
            "schema": _string(enum=[s.value for s in SessionStatus]),
        },
        "job_status": {"name": "status", "schema": _string(enum=[s.value for s in JobStatus])},
        "date": {
            "name": "date",
            "description": "A day of the box's time zone (YYYY-MM-DD)",
            "schema": _string(format="date"),
        },
        "lang": {"name": "lang", "schema": _string(enum=["zh", "en"])},
    }


ERRORS = {
    400: "Bad request: the message says what to change",
    401: "No valid API token (Authorization: Bearer) or session",
    403: "The account's role may not do this at all (recorded)",
    404: "No such row, or not in the caller's scope (recorded)",
}


_VARIABLE = re.compile(r"<(?:(?P<converter>[a-z]+)(?:\([^)]*\))?:)?(?P<name>[a-z_]+)>")


def openapi_path(rule: Rule) -> tuple[str, list[dict[str, Any]]]:
    """`/candidates/<int:candidate_id>` as `/candidates/{candidate_id}` and its parameters."""
    parameters = []
    for match in _VARIABLE.finditer(rule.rule):
        integer = match["converter"] == "int"
        schema = {"type": "integer", "minimum": 1, "maximum": MAX_ID} if integer else _string()
        parameters.append({"name": match["name"], "in": "path", "required": True, "schema": schema})
    return _VARIABLE.sub(lambda m: "{" + m["name"] + "}", rule.rule), parameters


def operation_doc(name: str, method: str, rule: Rule) -> tuple[str, dict[str, Any]]:
    """The OpenAPI operation of one route (KeyError: a route nobody documented)."""
    operation = OPERATIONS[name]
    path, parameters = openapi_path(rule)
    queries = query_parameters()
    parameters += [{**queries[q], "in": "query", "required": False} for q in operation.query]
    responses: dict[str, Any] = {
        str(operation.status): {"description": "OK", "content": operation.content}
    }
    for code, description in ERRORS.items():
        responses[str(code)] = {"description": description, "content": _json(_ref("Error"))}
    doc: dict[str, Any] = {
        "operationId": name.replace(".", "_"),
        "summary": operation.summary,
        "tags": [operation.tag],
        "parameters": parameters,
        "responses": responses,
    }
    if operation.body is not None:
        doc["requestBody"] = {"required": True, "content": _json(operation.body)}
    return path, {method.lower(): doc}


def build_spec(app: Flask) -> dict[str, Any]:
    """The document for this app's `/api/v1` routes."""
    spec = APISpec(
        title="Enclave HR API",
        version=API_VERSION,
        openapi_version="3.0.3",
        info={
            "description": (
                "For the hospital's other systems (HIS, OA). Every answer passes the box's "
                "permission gate: rows outside the account's scope are 404, fields it may "
                "not read are absent or masked, and every access is in the audit log."
            )
        },
        security=[{"apiToken": []}, {"session": []}],
    )
    spec.components.security_scheme("apiToken", {"type": "http", "scheme": "bearer"})
    spec.components.security_scheme(
        "session", {"type": "apiKey", "in": "cookie", "name": "session"}
    )
    for name, schema in components().items():
        spec.components.schema(name, schema)
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if not rule.rule.startswith(PREFIX):
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            path, operations = operation_doc(rule.endpoint, method, rule)
            paths.setdefault(path, {}).update(operations)
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()


@bp.get("/openapi.json")
def openapi() -> Any:
    """The document, built once per process (the routes do not change while it runs)."""
    request_actor()  # the integration account's token, or a signed-in session
    cached = current_app.extensions.get("enclave.openapi")
    if cached is None:
        cached = current_app.extensions["enclave.openapi"] = build_spec(current_app)
    return jsonify(cached)
