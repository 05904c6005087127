"""Candidate tokens (signed, expiring, one candidate, one purpose, revocable, no personal
data) and integration accounts' API tokens, against the demo hospital in a real store."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from appliance.datadir import init_data_dir
from appliance.records import AuditEvent, Candidate, CandidateToken, Role, User, utcnow
from appliance.store import Store
from compliance import tokens
from compliance.accounts import NotPermitted
from compliance.actors import Actor
from tests.conftest import settings_for

HR = Actor.staff("hr.east", 6, (), mfa=True)
SYSTEM = Actor(kind="system", name="system")


@pytest.fixture
def demo(short_tmp: Path) -> Iterator[Store]:
    store = init_data_dir(settings_for(short_tmp / "data"), "TEST-PASS", demo=True).store
    yield store
    store.close()


def _candidate(store: Store, name: str = "吴子涵") -> Candidate:
    with store.session() as db:
        for candidate in db.scalars(select(Candidate)).all():
            if candidate.name == name:
                return candidate
    raise AssertionError(name)


def _events(store: Store, action: str) -> list[AuditEvent]:
    with store.session() as db:
        return list(db.scalars(select(AuditEvent).where(AuditEvent.action == action)).all())


def test_a_valid_token_resolves_to_its_candidate_for_its_purpose(demo: Store) -> None:
    candidate = _candidate(demo)
    token = tokens.issue(demo, candidate.id, "interview", timedelta(days=7), HR)
    actor = tokens.resolve(demo, token, "interview", source_ip="10.1.1.1")
    assert actor.kind == "candidate" and actor.candidate_id == candidate.id
    assert actor.token_purpose == "interview" and actor.source_ip == "10.1.1.1"
    assert actor.name == f"candidate:{tokens.token_id(demo, token)}"
    (issued,) = _events(demo, "token.issue")
    assert issued.actor == "hr.east" and issued.subject_ids == [candidate.subject_id]
    with demo.session() as db:
        row = db.get(CandidateToken, tokens.token_id(demo, token))
        assert row is not None and row.created_by_id == 6 and row.purpose == "interview"


def test_a_token_carries_no_personal_data(demo: Store) -> None:
    """Neither the string nor its decoded bytes hold a name, phone, email or candidate id."""
    candidate = _candidate(demo, "Emily Carter")
    token = tokens.issue(demo, candidate.id, "data_request", timedelta(days=1), HR)
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert len(token) < 100 and token.isascii()
    assert all(c.isalnum() or c in "-_" for c in token)
    for value in ("Emily", "Carter", "13800004321", "emily.carter", candidate.subject_id):
        assert value not in token and value.encode() not in raw
    assert tokens.token_id(demo, token) not in (str(candidate.id), candidate.subject_id)


def test_an_expired_token_is_refused(demo: Store) -> None:
    candidate = _candidate(demo)
    token = tokens.issue(demo, candidate.id, "interview", timedelta(hours=1), HR)
    later = utcnow() + timedelta(hours=1, seconds=1)
    with pytest.raises(tokens.TokenExpired) as err:
        tokens.resolve(demo, token, "interview", now=later)
    assert "过期" in err.value.zh
    assert tokens.resolve(demo, token, "interview", now=later - timedelta(seconds=5))


def test_a_revoked_token_is_refused(demo: Store) -> None:
    candidate = _candidate(demo)
    token = tokens.issue(demo, candidate.id, "interview", timedelta(days=7), HR)
    other = tokens.issue(demo, candidate.id, "data_request", timedelta(days=7), HR)
    assert tokens.revoke(demo, tokens.token_id(demo, token), HR)
    assert not tokens.revoke(demo, tokens.token_id(demo, token), HR)
    with pytest.raises(tokens.TokenRevoked):
        tokens.resolve(demo, token, "interview")
    assert tokens.resolve(demo, other, "data_request").candidate_id == candidate.id
    assert tokens.revoke_for_candidate(demo, candidate.id) == 1
    with pytest.raises(tokens.TokenRevoked):
        tokens.resolve(demo, other, "data_request")
    assert [e.actor for e in _events(demo, "token.revoke")] == ["hr.east", "system"]


def test_a_token_for_one_purpose_does_not_open_another(demo: Store) -> None:
    candidate = _candidate(demo)
    token = tokens.issue(demo, candidate.id, "interview", timedelta(days=7), HR)
    with pytest.raises(tokens.WrongTokenPurpose):
        tokens.resolve(demo, token, "data_request")
    assert tokens.resolve_any(demo, token).token_purpose == "interview"


def test_a_tampered_token_is_refused_whatever_byte_changed(demo: Store) -> None:
    """Flip each byte of the decoded token (id, purpose, expiry, signature): all refused."""
    candidate = _candidate(demo)
    token = tokens.issue(demo, candidate.id, "interview", timedelta(days=7), HR)
    raw = base64.urlsafe_b64decode(token + "==")
    for i in range(len(raw)):
        changed = raw[:i] + bytes([raw[i] ^ 0x01]) + raw[i + 1 :]
        forged = base64.urlsafe_b64encode(changed).rstrip(b"=").decode()
        with pytest.raises(tokens.BadTokenSignature):
            tokens.resolve(demo, forged, "interview")
    for junk in ("", "x", "!!!!", token[:-4], token + "AAAA"):
        with pytest.raises(tokens.BadTokenSignature):
            tokens.resolve(demo, junk, "interview")
    refusals = _events(demo, "token.rejected")
    assert refusals and {e.result for e in refusals} == {"denied"}
    assert {e.actor for e in refusals} == {"unknown"}


def test_a_token_signed_by_another_box_is_refused(demo: Store, short_tmp: Path) -> None:
    other = init_data_dir(settings_for(short_tmp / "other"), "TEST-PASS", demo=True).store
    try:
        token = tokens.issue(other, _candidate(other).id, "interview", timedelta(days=1), HR)
    finally:
        other.close()
    with pytest.raises(tokens.BadTokenSignature):
        tokens.resolve(demo, token, "interview")


def test_erasing_the_candidate_kills_their_tokens(demo: Store) -> None:
    candidate = _candidate(demo)
    token = tokens.issue(demo, candidate.id, "data_request", timedelta(days=7), HR)
    with demo.transaction() as db:
        demo.shred_subject(db, candidate.subject_id)
    with pytest.raises(tokens.TokenRevoked):
        tokens.resolve(demo, token, "data_request")


def test_issue_checks_purpose_ttl_and_candidate(demo: Store) -> None:
    candidate = _candidate(demo)
    with pytest.raises(ValueError, match="purpose"):
        tokens.issue(demo, candidate.id, "everything", timedelta(days=1), HR)
    with pytest.raises(ValueError, match="ttl"):
        tokens.issue(demo, candidate.id, "interview", timedelta(days=91), HR)
    with pytest.raises(ValueError, match="ttl"):
        tokens.issue(demo, candidate.id, "interview", timedelta(0), HR)
    with pytest.raises(LookupError):
        tokens.issue(demo, 99999, "interview", timedelta(days=1), HR)


# --- API tokens ---------------------------------------------------------------------------


def _user_id(store: Store, username: str) -> int:
    with store.session() as db:
        return db.scalars(select(User.id).where(User.username == username)).one()


def test_an_api_token_resolves_to_the_integration_account_with_its_grants(demo: Store) -> None:
    uid = _user_id(demo, "integration")
    token = tokens.issue_api_token(demo, uid, SYSTEM)
    actor = tokens.resolve_api_token(demo, token, source_ip="10.2.2.2")
    assert actor.name == "integration" and actor.user_id == uid and actor.mfa
    assert actor.roles == {Role.INTEGRATION} and actor.grants[0].org_path == "/1/"
    with demo.session() as db:
        stored = db.get(User, uid).password_hash  # type: ignore[union-attr]
    assert stored.startswith("token$") and token not in stored


def test_a_wrong_or_replaced_api_token_is_refused_and_logged(demo: Store) -> None:
    uid = _user_id(demo, "integration")
    first = tokens.issue_api_token(demo, uid, SYSTEM)
    second = tokens.issue_api_token(demo, uid, SYSTEM)
    for bad in (first, second[:-1] + ("A" if second[-1] != "A" else "B"), "", "ehr_", "token$"):
        with pytest.raises(tokens.BadApiToken):
            tokens.resolve_api_token(demo, bad)
    assert tokens.resolve_api_token(demo, second).name == "integration"
    tokens.revoke_api_token(demo, uid, SYSTEM)
    with pytest.raises(tokens.BadApiToken):
        tokens.resolve_api_token(demo, second)
    assert len(_events(demo, "api_token.rejected")) == 6


def test_api_tokens_are_only_for_integration_accounts(demo: Store) -> None:
    with pytest.raises(ValueError, match="not an integration account"):
        tokens.issue_api_token(demo, _user_id(demo, "hr.east"), SYSTEM)
    with pytest.raises(NotPermitted):
        tokens.issue_api_token(demo, _user_id(demo, "integration"), HR)


def test_an_integration_account_given_another_role_by_a_crafted_row_is_refused(
    demo: Store,
) -> None:
    from appliance.records import RoleAssignment

    uid = _user_id(demo, "integration")
    token = tokens.issue_api_token(demo, uid, SYSTEM)
    with demo.transaction() as db:
        db.add(RoleAssignment(user_id=uid, role=Role.HR_ADMIN, org_unit_id=1))
    with pytest.raises(tokens.BadApiToken):
        tokens.resolve_api_token(demo, token)
