"""The permission matrix, generated from the policy file and the endpoint list.

Every role x every personal-data endpoint (webapp.api.ENDPOINTS) x every field of the
policy (plus the recording itself): the expected outcome is computed from
compliance/policy.yaml, never written down here, and checked against a real request:

    read    the full value is in the response (write implies read)
    masked  the masked form is, the full value is not
    hidden  neither is (a field an endpoint does not declare is always hidden)
    denied  403 (the role may not do this at all); the integration account, which has
            no browser sign-in, gets 401 from the portal

A write endpoint (action `update`: an HR override of an AI score) is allowed when the role
writes every field it declares, else denied; its answer (a redirect, or the new row's id)
shows no field, and its audit event is the gate's `update` naming the fields written.

A new role, endpoint or field in the policy or the app joins the matrix by itself;
the last tests make sure the endpoint list and the app's URL map agree, and that
every response that showed personal data left exactly the audit event it should.

Accounts: the demo staff accounts by session; the integration account by its bearer
API token (compliance.tokens); the candidate by a real data-request token resolved
with compliance.tokens.resolve. No HTTP path for candidate tokens exists yet (the
kiosk and data-request pages bring it), so the test app puts the resolved actor
where webapp.auth.load_actor finds it (`g.actor`).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, g, request
from sqlalchemy import select

from appliance.datadir import init_data_dir
from appliance.records import AuditEvent, Employee, OrgUnit, SubjectKind, User
from appliance.store import Store
from compliance import tokens
from compliance.actors import Actor
from compliance.gate import MEDIA_FIELD
from compliance.masks import TEXT_MASK, apply_mask
from compliance.policy import (
    CANDIDATE_ROLE,
    MEDIA_MODES,
    ROLES,
    SYSTEM_ROLE,
    FieldRule,
    RowScope,
    default_policy,
)
from tests.conftest import settings_for
from tests.webapp.test_row_scope import (
    CandidateFile,
    add_candidate_file,
    ai_values,
    events_since,
    last_seq,
    report_value,
    response_text,
)
from webapp import create_app
from webapp.api import ENDPOINTS, Endpoint

POLICY = default_policy()
CSRF = "matrix-csrf-token"

# One account per role that signs in over HTTP (the box's own jobs use the gate directly:
# tests/compliance/test_gate.py).
ACCOUNTS = {
    "system_admin": "sysadmin",
    "security_admin": "secadmin",
    "audit_admin": "auditadmin",
    "auditor": "auditor",
    "hr_admin": "hradmin",
    "hr": "hr.east",
    "interviewer": "interviewer",
    "dpo": "dpo",
    "integration": "integration",
    CANDIDATE_ROLE: CANDIDATE_ROLE,
}
MATRIX_ROLES = sorted(ACCOUNTS)
MATRIX_FIELDS = sorted(POLICY.fields) + [MEDIA_FIELD]

# The subject every request is about: in the east cardiology department (hr.east's subtree),
# interviewed in a session assigned to the demo interviewer, the candidate's own token.
SUBJECT_VALUES = {
    "candidates.name": "欧阳明轩",
    "candidates.phone": "13912345678",
    "candidates.email": "oyang.mx@example.org",
    "candidates.id_number": "110101199003071234",
    "candidates.address": "北京市东城区矩阵路42号",
    "comments.body": "面试表现沉稳，矩阵评语",
    "referrals.note": "由校园招聘会推荐，矩阵推荐",
    "answers.transcript": "我会先核对医嘱再上报，矩阵转写",
    "evaluations.notes": "沟通清楚，矩阵评价",
    "resume_parses.parsed": '{"skills": ["矩阵心电图判读"]}',
    # What the local AI derived (issue #5), stored as JSON the views parse.
    **ai_values("矩阵语音信号", "矩阵人脸时间线", "矩阵表情信号"),
    "face_signals.embedding": "[0.918273645, -0.564738291]",
    "score_reports.report": report_value("矩阵报告摘要", "矩阵证据引用"),
    "score_overrides.reason": "矩阵调整理由",
    # Bias-audit categories (issue #8): no endpoint shows them; hidden everywhere here.
    "equality_data.categories": '{"sex": "矩阵性别", "birth_year": "1990"}',
}
# A JSON value shows as its parts, not as the stored string: the part that must show.
SHOWN_AS = {
    "answer_analyses.signals": "矩阵语音信号",
    "face_signals.timeline": "矩阵人脸时间线",
    "expression_signals.signals": "矩阵表情信号",
    "score_reports.report": "矩阵报告摘要",
}
EMPLOYEE_VALUES = {
    "employees.name": "司徒雅琴",
    "employees.phone": "13700004321",
    "employees.email": "situ.yq@example.net",
    "employees.id_number": "440301198805062345",
}


def expected(role: str, endpoint: Endpoint, field: str) -> str:
    """What the policy file says this role sees of `field` through `endpoint`."""
    if role == "integration" and endpoint.name.startswith("portal."):
        return "unauthenticated"
    policy = POLICY.role(role)
    if policy.rows is RowScope.NONE or policy.default_purpose is None:
        return "denied"
    if endpoint.action == "update":
        writes = all(POLICY.rule(role, f) >= FieldRule.WRITE for f in endpoint.fields)
        return "hidden" if writes else "denied"
    allowed = policy.media if endpoint.action in MEDIA_MODES else policy.actions
    if endpoint.action not in allowed:
        return "denied"
    if field not in endpoint.fields:
        return "hidden"
    if field == MEDIA_FIELD:
        return "read"
    rule = POLICY.rule(role, field)
    return "read" if rule >= FieldRule.READ else rule.label


@dataclass
class Matrix:
    app: Flask
    store: Store
    subject: CandidateFile
    values: dict[str, str]
    clients: dict[str, Any]
    candidate_token: str
    cache: dict[tuple[str, str], tuple[Any, list[AuditEvent]]]


@pytest.fixture(scope="module")
def matrix() -> Iterator[Matrix]:
    """One demo box for the whole matrix (each case only reads)."""
    root = Path(tempfile.mkdtemp(prefix="enc"))
    settings = settings_for(root / "data")
    init_data_dir(settings, "TEST-PASS", demo=True).store.close()
    app = create_app({"SETTINGS": settings, "TESTING": True})
    store: Store = app.extensions["enclave.store"]
    try:
        subject = add_candidate_file(
            store, "EAST-CARD", "Matrix", ["interviewer"], values=SUBJECT_VALUES
        )
        with store.transaction() as db:
            unit = db.scalars(select(OrgUnit).where(OrgUnit.code == "EAST-CARD")).one()
            person = store.new_subject(db, SubjectKind.EMPLOYEE)
            employee = Employee(subject_id=person.id, org_unit_id=unit.id, employee_no="M-0001")
            db.add(employee)
            db.flush()
            employee.name = EMPLOYEE_VALUES["employees.name"]
            employee.phone = EMPLOYEE_VALUES["employees.phone"]
            employee.email = EMPLOYEE_VALUES["employees.email"]
            employee.id_number = EMPLOYEE_VALUES["employees.id_number"]
            integration_id = db.scalars(select(User.id).where(User.username == "integration")).one()
        setup = Actor.system("matrix-setup")
        api_token = tokens.issue_api_token(store, integration_id, setup)
        candidate_token = tokens.issue(
            store, subject.candidate_id, "data_request", timedelta(hours=1), setup
        )

        @app.before_request
        def candidate_by_token() -> None:
            # Stand-in for the candidate-token sign-in the kiosk brings: a real token,
            # really resolved; only the transport (this header) is the test's.
            token = request.headers.get("X-Test-Candidate-Token")
            if token:
                g.actor = tokens.resolve(store, token, "data_request", request.remote_addr)

        clients: dict[str, Any] = {}
        for role, username in ACCOUNTS.items():
            client = app.test_client()
            with client.session_transaction() as sess:
                sess["csrf"] = CSRF
                if role not in ("integration", CANDIDATE_ROLE):
                    with store.session() as db:
                        uid = db.scalars(select(User.id).where(User.username == username)).one()
                    sess.update({"uid": uid, "mfa": True, "seen": time.time()})
            if role == "integration":
                client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {api_token}"
            if role == CANDIDATE_ROLE:
                client.environ_base["HTTP_X_TEST_CANDIDATE_TOKEN"] = candidate_token
            clients[role] = client
        yield Matrix(
            app, store, subject, {**SUBJECT_VALUES, **EMPLOYEE_VALUES}, clients, candidate_token, {}
        )
    finally:
        store.close()
        shutil.rmtree(root, ignore_errors=True)


def _url(endpoint: Endpoint, subject: CandidateFile) -> str:
    ids = {
        "<int:candidate_id>": subject.candidate_id,
        "<int:session_id>": subject.session_id,
        "<int:recording_id>": subject.recording_id,
    }
    url = endpoint.rule
    for placeholder, value in ids.items():
        url = url.replace(placeholder, str(value))
    assert "<" not in url, f"{endpoint.name}: the matrix knows no id for {url}"
    return url


def fetch(m: Matrix, role: str, endpoint: Endpoint) -> tuple[Any, list[AuditEvent]]:
    """The response of `role` calling `endpoint` about the subject, and the events it left."""
    key = (role, endpoint.name)
    if key not in m.cache:
        client = m.clients[role]
        url = _url(endpoint, m.subject)
        before = last_seq(m.store)
        if endpoint.method == "GET":
            response = client.get(url)
        elif endpoint.action == "search" and endpoint.name.startswith("portal."):
            phone = m.values["candidates.phone"]
            response = client.post(url, data={"phone": phone, "csrf_token": CSRF})
        elif endpoint.action == "search":
            phone = m.values["candidates.phone"]
            response = client.post(url, json={"phone": phone}, headers={"X-CSRF-Token": CSRF})
        elif endpoint.action == "update" and endpoint.name.startswith("portal."):
            response = client.post(url, data={**_override(m), "csrf_token": CSRF})
        elif endpoint.action == "update":
            response = client.post(url, json=_override(m), headers={"X-CSRF-Token": CSRF})
        else:  # pragma: no cover - a new kind of endpoint must be taught to the matrix
            raise AssertionError(f"the matrix cannot call {endpoint.method} {endpoint.name}")
        m.cache[key] = (response, events_since(m.store, before))
    return m.cache[key]


def _override(m: Matrix) -> dict[str, Any]:
    """An override of the subject's report, with the subject's reason value (so the matrix's
    later reads show the same values whichever order the cases run in)."""
    return {
        "dimension_id": m.subject.dimension_id,
        "score": 6.5,
        "reason": m.values["score_overrides.reason"],
    }


def _case_id(role: str, endpoint: Endpoint, field: str) -> str:
    return f"{role}-{endpoint.name}-{field}"


CASES = [
    pytest.param(role, endpoint, field, id=_case_id(role, endpoint, field))
    for role in MATRIX_ROLES
    for endpoint in ENDPOINTS
    for field in MATRIX_FIELDS
]


@pytest.mark.parametrize(("role", "endpoint", "field"), CASES)
def test_permission_matrix(matrix: Matrix, role: str, endpoint: Endpoint, field: str) -> None:
    """The response shows `field` exactly as the policy file says for this role and endpoint."""
    response, _events = fetch(matrix, role, endpoint)
    outcome = expected(role, endpoint, field)
    if outcome == "unauthenticated":
        assert response.status_code == 401
        return
    if outcome == "denied":
        assert response.status_code == 403, response.get_data(as_text=True)[:300]
        return
    ok = (201, 303) if endpoint.action == "update" else (200,)
    assert response.status_code in ok, response.get_data(as_text=True)[:300]
    if field == MEDIA_FIELD:
        body = response.get_data()
        shown = matrix.subject.media in body
        assert shown == (outcome == "read")
        return
    text = response_text(response)
    full = SHOWN_AS.get(field, matrix.values[field])
    mask = POLICY.mask_of(field)
    masked = apply_mask(mask, full) if mask else None
    assert masked != full
    if outcome == "read":
        assert full in text
    elif outcome == "masked":
        assert full not in text
        assert masked is not None and masked in text
    else:
        assert outcome == "hidden"
        assert full not in text
        if masked is not None and masked != TEXT_MASK:
            assert masked not in text


def _disclosed(role: str, endpoint: Endpoint) -> list[str]:
    """The field names the event of an allowed request must list (masked ones marked)."""
    names = []
    for field in endpoint.fields:
        if field == MEDIA_FIELD:
            names.append(field)
            continue
        rule = POLICY.rule(role, field)
        if rule is FieldRule.MASKED:
            names.append(f"{field}:masked")
        elif rule >= FieldRule.READ:
            names.append(field)
    return sorted(names)


AUDIT_ACTIONS = {"view": None, "search": "search", "export": "export"}


@pytest.mark.parametrize(
    ("role", "endpoint"),
    [
        pytest.param(role, endpoint, id=f"{role}-{endpoint.name}")
        for role in MATRIX_ROLES
        for endpoint in ENDPOINTS
    ],
)
def test_every_matrix_request_left_its_audit_event(
    matrix: Matrix, role: str, endpoint: Endpoint
) -> None:
    """Allowed: exactly one allowed event names the subject, with the disclosed field names.
    Denied: a denied event by the same actor, and no allowed one."""
    response, events = fetch(matrix, role, endpoint)
    outcome = expected(role, endpoint, endpoint.fields[0])
    if outcome == "unauthenticated":
        assert not [e for e in events if e.result == "allowed"]
        return
    actor = (
        f"candidate:{tokens.token_id(matrix.store, matrix.candidate_token)}"
        if role == CANDIDATE_ROLE
        else ACCOUNTS[role]
    )
    mine = [e for e in events if e.actor == actor]
    if outcome == "denied":
        assert mine and {e.result for e in mine} == {"denied"}
        return
    about = [e for e in mine if matrix.subject.subject_id in e.subject_ids]
    assert len(about) == 1, [(e.action, e.entity) for e in about]
    event = about[0]
    assert event.result == "allowed"
    assert event.subject_ids == [matrix.subject.subject_id]
    assert event.fields == _disclosed(role, endpoint)
    assert event.purpose == POLICY.role(role).default_purpose
    if endpoint.action in MEDIA_MODES:
        assert event.action == endpoint.action
    elif endpoint.action == "view":
        listed = endpoint.rule.endswith(("/candidates", "/applications", "/interviews", "/scores"))
        assert event.action == ("list" if listed else "read")
    else:
        assert event.action == endpoint.action


def test_the_matrix_covers_every_role_of_the_policy() -> None:
    """A role added to the policy (other than the box's own jobs) must get a matrix account."""
    assert set(MATRIX_ROLES) == set(ROLES) - {SYSTEM_ROLE}


def test_endpoint_list_matches_the_app(matrix: Matrix) -> None:
    """Every portal and API view is in ENDPOINTS with its rule and method, and vice versa, so a
    new endpoint cannot skip the matrix (the front page shows no personal data)."""
    routes = {
        (rule.endpoint, rule.rule, method)
        for rule in matrix.app.url_map.iter_rules()
        if rule.endpoint.split(".")[0] in ("portal", "api") and rule.endpoint != "portal.index"
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }
    declared = {(e.name, e.rule, e.method) for e in ENDPOINTS}
    assert routes == declared


def test_endpoint_fields_are_policy_fields() -> None:
    """An endpoint may only declare fields the policy rules on (or the recording itself)."""
    for endpoint in ENDPOINTS:
        for field in endpoint.fields:
            assert field in POLICY.fields or field == MEDIA_FIELD, (endpoint.name, field)


def test_no_personal_value_in_any_audit_event(matrix: Matrix) -> None:
    """After the whole matrix ran, no event column holds a value or a masked value."""
    for role in MATRIX_ROLES:
        for endpoint in ENDPOINTS:
            fetch(matrix, role, endpoint)
    forbidden = set(matrix.values.values()) | set(SHOWN_AS.values())
    for field, value in matrix.values.items():
        mask = POLICY.mask_of(field)
        if mask and mask != "text":
            forbidden.add(str(apply_mask(mask, value)))
    with matrix.store.session() as db:
        events = list(db.scalars(select(AuditEvent)))
    assert len(events) > len(MATRIX_ROLES) * len(ENDPOINTS) // 2
    for event in events:
        row = " ".join(
            str(v)
            for v in (
                event.actor,
                event.role,
                event.action,
                event.subject_ids,
                event.entity,
                event.fields,
                event.purpose,
                event.source_ip,
                event.result,
            )
        )
        for value in forbidden:
            assert value not in row, f"event {event.seq} holds a personal value"


@pytest.mark.parametrize("role", MATRIX_ROLES)
def test_rows_a_role_sees_nothing_of_are_not_listed(matrix: Matrix, role: str) -> None:
    """A comment or referral whose every field is hidden from the role is left out of the API
    answer (not listed empty): that HR wrote something about someone is itself not theirs."""
    endpoint = next(e for e in ENDPOINTS if e.name == "api.candidate")
    response, _events = fetch(matrix, role, endpoint)
    if response.status_code != 200:
        return
    body = response.get_json()
    for key, field in (("comments", "comments.body"), ("referrals", "referrals.note")):
        listed = bool(body[key])
        assert listed == (POLICY.rule(role, field) is not FieldRule.HIDDEN), (key, body[key])
