"""The gate without the web: unlisted fields hidden for everyone, writes by the policy, media
rules, purposes, batch jobs' single event, shredded subjects, and failing closed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from appliance.datadir import init_data_dir
from appliance.personal import PersonalField
from appliance.records import Answer, AuditEvent, Candidate, OrgUnit, Recording, Role, User
from appliance.settings import Settings
from appliance.store import Store
from compliance import audit
from compliance.actors import Actor, Grant
from compliance.gate import AccessDenied, Gate, NotInScope
from compliance.policy import POLICY_PATH, default_policy, parse_policy
from tests.conftest import PASSPHRASE
from tests.webapp.test_row_scope import (
    CandidateFile,
    add_candidate_file,
    assert_no_values_in_audit,
    events_since,
    last_seq,
)


@pytest.fixture
def demo(settings: Settings) -> Iterator[Store]:
    store = init_data_dir(settings, PASSPHRASE, demo=True).store
    yield store
    store.close()


@pytest.fixture
def files(demo: Store) -> dict[str, CandidateFile]:
    return {
        "east": add_candidate_file(demo, "EAST-CARD", "GateEast", ["interviewer"]),
        "west": add_candidate_file(demo, "WEST-NURS", "GateWest"),
    }


def staff(store: Store, username: str, *extra: tuple[Role, str]) -> Actor:
    """The demo account as the gate sees it, with `extra` (role, org code) grants added."""
    with store.session() as db:
        user = db.scalars(select(User).where(User.username == username)).one()
        grants = [Grant(a.role, a.org_unit.path) for a in user.roles]
        for role, code in extra:
            path = db.scalars(select(OrgUnit.path).where(OrgUnit.code == code)).one()
            grants.append(Grant(role, path))
        return Actor.staff(username, user.id, tuple(grants), mfa=True)


def candidate_actor(person: CandidateFile) -> Actor:
    return Actor.candidate("tok" + person.subject_id[:8], person.candidate_id, "data_request")


def everyone(store: Store, person: CandidateFile) -> list[Actor]:
    names = ("sysadmin", "secadmin", "auditadmin", "auditor", "hradmin", "hr.east")
    return [
        *(staff(store, n) for n in (*names, "interviewer", "dpo", "integration")),
        candidate_actor(person),
        Actor.system("job-1"),
    ]


def test_a_field_without_a_policy_entry_is_hidden_for_everyone(
    demo: Store, files: dict[str, CandidateFile], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A personal field added to a model without a policy rule: listed as unlisted (so the
    policy test fails), and hidden for every role, none of whom may read or write it."""
    monkeypatch.setattr(PersonalField, "registry", list(PersonalField.registry))
    nickname = PersonalField("address_sealed")
    monkeypatch.setattr(Candidate, "nickname", nickname, raising=False)
    nickname.__set_name__(Candidate, "nickname")
    policy = default_policy()
    assert policy.unlisted_fields() == ["candidates.nickname"]

    gate = Gate(demo, policy)
    person = files["east"]
    seen = 0
    for actor in everyone(demo, person):
        purpose = gate.default_purpose(actor)
        with demo.session() as db:
            candidate = db.get(Candidate, person.candidate_id)
            try:
                shown = gate.view(actor, candidate, purpose or "unspecified")
            except AccessDenied:
                continue
            seen += 1
            assert "nickname" not in shown and "nickname" in shown.hidden
            with pytest.raises(AccessDenied):
                gate.update(actor, candidate, {"nickname": "x"}, purpose or "unspecified")
    assert seen == 7  # hr_admin, hr, interviewer, dpo, integration, candidate, system
    with demo.session() as db:
        events = list(db.scalars(select(AuditEvent)))
    shown = [f for e in events if e.result == "allowed" for f in e.fields]
    assert shown and not [f for f in shown if "nickname" in f]
    # Each refused write names the field asked for (a name, never a value).
    refused = [e for e in events if e.result == "denied" and e.action == "update"]
    assert len(refused) == 7 and all(e.fields == ["candidates.nickname"] for e in refused)


def test_a_batch_job_records_one_event_listing_every_subject(
    demo: Store, files: dict[str, CandidateFile]
) -> None:
    """Actor.system reading every transcript: one event, all subject ids, field names only."""
    gate = Gate(demo)
    job = Actor.system("rq-42")
    before = last_seq(demo)
    with demo.session() as db:
        answers = list(db.scalars(select(Answer).order_by(Answer.id)))
        shown = gate.view_many(job, answers, "processing", ["answers.transcript"], action="asr")
    assert {s["transcript"] for s in shown} == {
        f.values["answers.transcript"] for f in files.values()
    }
    events = events_since(demo, before)
    assert len(events) == 1
    event = events[0]
    assert event.actor == "job:rq-42" and event.role == "system" and event.action == "asr"
    assert event.subject_ids == sorted(f.subject_id for f in files.values())
    assert event.fields == ["answers.transcript"]
    assert event.entity == "answers"
    assert_no_values_in_audit(demo, [v for f in files.values() for v in f.values.values()])


def test_writes_follow_the_policy_and_are_recorded(
    demo: Store, files: dict[str, CandidateFile]
) -> None:
    east, west = files["east"], files["west"]
    gate = Gate(demo)
    hr = staff(demo, "hr.east")
    before = last_seq(demo)
    with demo.transaction() as db:
        candidate = db.get(Candidate, east.candidate_id)
        gate.update(hr, candidate, {"phone": "13900001111"}, "screening")
    with demo.session() as db:
        # The blind index moved with the value: the new number finds them, the old one not.
        found = Gate(demo).search(hr, db, "phone", "139 0000 1111", "screening")
        assert [s.id for s in found] == [east.candidate_id]
        old_phone = east.values["candidates.phone"]
        assert Gate(demo).search(hr, db, "phone", old_phone, "screening") == []
    update = [e for e in events_since(demo, before) if e.action == "update"]
    assert [(e.result, e.fields, e.subject_ids) for e in update] == [
        ("allowed", ["candidates.phone"], [east.subject_id])
    ]

    interviewer = staff(demo, "interviewer")
    with demo.session() as db:
        candidate = db.get(Candidate, east.candidate_id)
        with pytest.raises(AccessDenied) as refused:
            gate.update(interviewer, candidate, {"name": "改名"}, "interview_review")
        assert not isinstance(refused.value, NotInScope)
        west_row = db.get(Candidate, west.candidate_id)
        with pytest.raises(NotInScope):
            gate.update(hr, west_row, {"phone": "13900002222"}, "screening")
        own = candidate_actor(east)
        gate.update(own, candidate, {"email": "new.address@example.org"}, "data_request")
        with pytest.raises(AccessDenied):
            gate.update(own, candidate, {"id_number": "110101199001011111"}, "data_request")
        db.rollback()
    denied = [e for e in events_since(demo, before) if e.result == "denied"]
    assert [(e.actor, e.fields) for e in denied] == [
        ("interviewer", ["candidates.name"]),
        ("hr.east", ["candidates.phone"]),
        (own.name, ["candidates.id_number"]),
    ]


def test_nobody_downloads_a_recording_unless_the_policy_grants_it(
    demo: Store, files: dict[str, CandidateFile]
) -> None:
    """Download: refused (403, not 404) for every role by the shipped policy. A policy that
    grants it lets that role download; streaming follows the stream rule and row scope."""
    person = files["east"]
    gate = Gate(demo)
    with demo.session() as db:
        recording = db.get(Recording, person.recording_id)
        assert recording is not None
        for actor in everyone(demo, person):
            purpose = gate.default_purpose(actor) or "unspecified"
            with pytest.raises(AccessDenied) as refused:
                gate.authorize_media(actor, recording, "download", purpose)
            assert not isinstance(refused.value, NotInScope)
        with gate.open_media(staff(demo, "hr.east"), recording, "stream", "screening") as media:
            assert media.read() == person.media

        granted = (POLICY_PATH.read_text(encoding="utf-8")).replace(
            "    media: [stream]\n  hr:", "    media: [stream, download]\n  hr:", 1
        )
        generous = Gate(demo, parse_policy(granted))
        with generous.open_media(staff(demo, "hradmin"), recording, "download", "screening") as m:
            assert m.read() == person.media
        with pytest.raises(AccessDenied):
            generous.authorize_media(staff(demo, "hr.east"), recording, "download", "screening")


def test_a_purpose_the_role_does_not_have_is_refused(
    demo: Store, files: dict[str, CandidateFile]
) -> None:
    gate = Gate(demo)
    before = last_seq(demo)
    with demo.session() as db:
        candidate = db.get(Candidate, files["east"].candidate_id)
        with pytest.raises(AccessDenied):
            gate.view(staff(demo, "hr.east"), candidate, "data_request")
    [event] = events_since(demo, before)
    assert (event.result, event.purpose, event.subject_ids) == (
        "denied",
        "data_request",
        [files["east"].subject_id],
    )


def test_an_actor_with_two_roles_sees_each_row_as_the_role_that_reaches_it(
    demo: Store, files: dict[str, CandidateFile]
) -> None:
    """HR of the east branch who also interviews in the west: east rows as HR, and, for the
    purpose interview_review, the assigned west session as an interviewer (no phone)."""
    east, west = files["east"], files["west"]
    with demo.transaction() as db:
        session = db.get(Answer, west.answer_id).session  # type: ignore[union-attr]
        session.interviewer_ids = [staff(demo, "hr.east").user_id]
    actor = staff(demo, "hr.east", (Role.INTERVIEWER, "WEST-NURS"))
    gate = Gate(demo)
    with demo.session() as db:
        west_row = db.get(Candidate, west.candidate_id)
        east_row = db.get(Candidate, east.candidate_id)
        as_interviewer = gate.view(actor, west_row, "interview_review")
        assert as_interviewer["name"] == west.values["candidates.name"]
        assert "phone" not in as_interviewer
        with pytest.raises(NotInScope):
            gate.view(actor, west_row, "screening")
        as_hr = gate.view(actor, east_row, "screening")
        assert as_hr["phone"] == east.values["candidates.phone"]
        assert as_hr["id_number"] == "3201**********" + east.values["candidates.id_number"][-4:]


def test_a_shredded_subject_reads_unavailable_full_or_masked(
    demo: Store, files: dict[str, CandidateFile]
) -> None:
    person = files["east"]
    with demo.transaction() as db:
        demo.shred_subject(db, person.subject_id)
    gate = Gate(demo)
    with demo.session() as db:
        candidate = db.get(Candidate, person.candidate_id)
        full = gate.view(staff(demo, "hradmin"), candidate, "screening")
        masked = gate.view(staff(demo, "dpo"), candidate, "data_request")
    assert full["phone"] == "[unavailable]"
    assert masked["phone"] == "[unavailable]" and "phone" in masked.masked


def test_no_event_no_data(
    demo: Store, files: dict[str, CandidateFile], monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the access cannot be recorded, nothing is handed out (fail closed, PIPL Art. 51)."""

    def broken(*_args: Any, **_kwargs: Any) -> int:
        raise OSError("disk full")

    monkeypatch.setattr(audit, "record", broken)
    with demo.session() as db:
        candidate = db.get(Candidate, files["east"].candidate_id)
        with pytest.raises(OSError):
            Gate(demo).view(staff(demo, "hradmin"), candidate, "screening")


def test_gate_module_has_no_flask(tmp_path: Path) -> None:
    """The gate runs in workers too: compliance never imports Flask."""
    import compliance.gate as gate_module

    source = Path(gate_module.__file__).read_text(encoding="utf-8")
    assert "flask" not in source.lower()
