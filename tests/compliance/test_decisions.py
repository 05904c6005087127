"""Decisions through the gate (issue 6, item 3): a named person and a reason for every
move, all-or-nothing bulk moves, candidates created in the job's department, and merges
of duplicates that move everything to the survivor and leave a record."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from appliance.datadir import init_data_dir
from appliance.records import (
    Application,
    AuditEvent,
    Candidate,
    CandidateMerge,
    Comment,
    Consent,
    ConsentPurpose,
    Job,
    MergeReason,
    OrgUnit,
    Stage,
    StageChange,
    User,
)
from appliance.store import Store
from compliance.actors import Actor, Grant
from compliance.decisions import (
    DecisionRefused,
    NewCandidate,
    create_candidates,
    duplicate_pairs,
    merge_candidates,
    move_stage,
)
from compliance.gate import AccessDenied, Gate, NotInScope
from compliance.signing import stop_agent
from tests.conftest import settings_for

PURPOSE = "screening"


@pytest.fixture
def demo(short_tmp: Path) -> Iterator[Store]:
    settings = settings_for(short_tmp / "data")
    store = init_data_dir(settings, "TEST-PASS", demo=True).store
    yield store
    store.close()
    stop_agent(settings.data_dir / "gnupg")


def staff(store: Store, username: str) -> Actor:
    with store.session() as db:
        user = db.scalars(select(User).where(User.username == username)).one()
        grants = tuple(Grant(a.role, a.org_unit.path) for a in user.roles)
        return Actor.staff(username, user.id, grants, mfa=True)


def job_in(store: Store, code: str) -> int:
    with store.session() as db:
        return int(
            db.scalars(
                select(Job.id)
                .join(OrgUnit, Job.org_unit_id == OrgUnit.id)
                .where(OrgUnit.code == code)
            ).one()
        )


def add(store: Store, actor: Actor, job_id: int, *people: NewCandidate) -> list[int]:
    return create_candidates(
        store, Gate(store), actor, job_id, list(people), PURPOSE
    ).application_ids


def test_a_bulk_move_records_who_when_why_for_each(demo: Store) -> None:
    hr = staff(demo, "hr.east")
    apps = add(
        demo,
        hr,
        job_in(demo, "EAST-CARD"),
        NewCandidate("甲", "13900000001"),
        NewCandidate("乙", None, "yi@example.org"),
    )
    ids = move_stage(demo, Gate(demo), hr, apps, Stage.SCREENED, "  资质符合要求 ", PURPOSE)
    with demo.session() as db:
        changes = db.scalars(select(StageChange).where(StageChange.id.in_(ids))).all()
        assert {c.application_id for c in changes} == set(apps)
        assert {(c.from_stage, c.to_stage) for c in changes} == {(Stage.APPLIED, Stage.SCREENED)}
        assert len({c.batch for c in changes}) == 1 and changes[0].batch is not None
        assert {c.actor_id for c in changes} == {hr.user_id}
        for change in changes:
            comment = db.get_one(Comment, change.reason_comment_id)
            assert comment.body == "资质符合要求"  # sealed under the candidate's key
            assert b"\xe8\xb5\x84" not in (comment.body_sealed or b"")
        stages = db.scalars(select(Application.stage).where(Application.id.in_(apps))).all()
        assert set(stages) == {Stage.SCREENED}
        events = db.scalars(
            select(AuditEvent).where(AuditEvent.actor == "hr.east", AuditEvent.action == "update")
        ).all()
        assert {e.entity for e in events} >= {f"applications:{a}" for a in apps}
        assert all("资质" not in str(e.fields) for e in events)


@pytest.mark.parametrize("reason", ["", "   ", None])
def test_no_reason_no_decision(demo: Store, reason: str | None) -> None:
    hr = staff(demo, "hr.east")
    apps = add(demo, hr, job_in(demo, "EAST-CARD"), NewCandidate("丙", "13900000003"))
    with pytest.raises(DecisionRefused) as refused:
        move_stage(demo, Gate(demo), hr, apps, Stage.REJECTED, reason, PURPOSE)
    assert refused.value.code == "no_reason"
    with demo.session() as db:
        assert (
            db.scalar(select(Application.stage).where(Application.id == apps[0])) is Stage.APPLIED
        )


def test_jobs_decide_nothing(demo: Store) -> None:
    hr = staff(demo, "hr.east")
    apps = add(demo, hr, job_in(demo, "EAST-CARD"), NewCandidate("丁", "13900000004"))
    with pytest.raises(DecisionRefused) as refused:
        move_stage(demo, Gate(demo), Actor.system("x"), apps, Stage.OFFER, "AI 高分", "processing")
    assert refused.value.code == "no_actor"


def test_one_application_out_of_scope_moves_none(demo: Store) -> None:
    east, west = staff(demo, "hr.east"), staff(demo, "hr.west")
    mine = add(demo, east, job_in(demo, "EAST-CARD"), NewCandidate("戊", "13900000005"))
    theirs = add(demo, west, job_in(demo, "WEST-NURS"), NewCandidate("己", "13900000006"))
    with pytest.raises(NotInScope):
        move_stage(demo, Gate(demo), east, mine + theirs, Stage.SCREENED, "一起筛选", PURPOSE)
    with demo.session() as db:
        assert (
            db.scalar(select(func.count(StageChange.id)).where(StageChange.from_stage.is_not(None)))
            == 0
        )
        assert (
            db.scalar(select(Application.stage).where(Application.id == mine[0])) is Stage.APPLIED
        )
        denied = db.scalars(select(AuditEvent).where(AuditEvent.result == "denied")).all()
        assert any(e.entity == f"applications:{theirs[0]}" for e in denied)


def test_interviewers_and_admins_cannot_decide_or_add(demo: Store) -> None:
    hr = staff(demo, "hr.east")
    apps = add(demo, hr, job_in(demo, "EAST-CARD"), NewCandidate("庚", "13900000007"))
    for username in ("interviewer", "sysadmin"):
        with pytest.raises(AccessDenied):
            move_stage(demo, Gate(demo), staff(demo, username), apps, Stage.HIRED, "好", PURPOSE)
        with pytest.raises(AccessDenied):
            add(
                demo,
                staff(demo, username),
                job_in(demo, "EAST-CARD"),
                NewCandidate("辛", "13900000008"),
            )


def test_new_candidates_take_the_jobs_unit_and_hr_elsewhere_cannot_add(demo: Store) -> None:
    east, west = staff(demo, "hr.east"), staff(demo, "hr.west")
    job = job_in(demo, "EAST-CARD")
    with pytest.raises(AccessDenied):
        add(demo, west, job, NewCandidate("壬", "13900000009"))
    created = create_candidates(
        demo, Gate(demo), east, job, [NewCandidate("壬", "13900000009")], PURPOSE
    )
    with demo.session() as db:
        candidate = db.get_one(Candidate, created.candidate_ids[0])
        assert candidate.org_unit_id == db.get_one(Job, job).org_unit_id
        assert candidate.name == "壬" and candidate.phone == "13900000009"
        first = db.scalars(
            select(StageChange).where(StageChange.application_id == created.application_ids[0])
        ).one()
        assert (
            first.from_stage is None
            and first.to_stage is Stage.APPLIED
            and first.actor_id == east.user_id
        )


def test_two_of_the_same_person_in_one_request_are_refused(demo: Store) -> None:
    hr = staff(demo, "hr.east")
    with demo.session() as db:
        before = db.scalar(select(func.count(Candidate.id)))
    with pytest.raises(DecisionRefused) as refused:
        add(
            demo,
            hr,
            job_in(demo, "EAST-CARD"),
            NewCandidate("癸", "139 0000 0010"),
            NewCandidate("癸二", "+8613900000010"),
        )
    assert refused.value.code == "duplicate_in_request"
    with demo.session() as db:
        assert db.scalar(select(func.count(Candidate.id))) == before


def test_duplicates_are_found_by_blind_index_and_merged_with_a_record(demo: Store) -> None:
    """Two records of one person (created in different jobs of HR admin's scope) become one:
    the applications, comments, consents move, re-sealed; the merge is recorded."""
    admin, east = staff(demo, "hradmin"), staff(demo, "hr.east")
    gate = Gate(demo)
    first = create_candidates(
        demo, gate, east, job_in(demo, "EAST-CARD"), [NewCandidate("周一", "13911112222")], PURPOSE
    )
    second = create_candidates(
        demo,
        gate,
        admin,
        job_in(demo, "WEST-NURS"),
        [NewCandidate("周一", None, "zhou@example.org")],
        PURPOSE,
    )
    # The same person again with both contacts, in the west: now a duplicate by e-mail only.
    with demo.transaction() as db:
        other = db.get_one(Candidate, second.candidate_ids[0])
        db.add(
            Consent(
                subject_id=other.subject_id,
                purpose=ConsentPurpose.RECORDING,
                granted=True,
                notice_version="v1",
                text_sha256="0" * 64,
            )
        )
        mine = db.get_one(Candidate, first.candidate_ids[0])
        mine.email = "Zhou@Example.org "
    move_stage(demo, gate, admin, second.application_ids, Stage.SCREENED, "西院区初筛通过", PURPOSE)
    with demo.session() as db:
        pairs = duplicate_pairs(gate, admin, db, PURPOSE)
        assert [(p.first_id, p.second_id, p.reason) for p in pairs] == [
            (first.candidate_ids[0], second.candidate_ids[0], MergeReason.SAME_EMAIL)
        ]
        assert duplicate_pairs(gate, east, db, PURPOSE) == []  # the west record is not theirs
    with pytest.raises(NotInScope):
        merge_candidates(
            demo, gate, east, first.candidate_ids[0], second.candidate_ids[0], "same_email", PURPOSE
        )
    merge_id = merge_candidates(
        demo, gate, admin, first.candidate_ids[0], second.candidate_ids[0], "same_email", PURPOSE
    )
    with demo.session() as db:
        assert db.get(Candidate, second.candidate_ids[0]) is None
        survivor = db.get_one(Candidate, first.candidate_ids[0])
        apps = db.scalars(select(Application).where(Application.candidate_id == survivor.id)).all()
        assert {a.id for a in apps} == {*first.application_ids, *second.application_ids}
        reasons = db.scalars(
            select(Comment).where(Comment.application_id == second.application_ids[0])
        ).all()
        assert [c.body for c in reasons] == ["西院区初筛通过"]
        assert {c.subject_id for c in reasons} == {survivor.subject_id}
        consent = db.scalars(select(Consent)).one()
        assert consent.subject_id == survivor.subject_id
        record = db.get_one(CandidateMerge, merge_id)
        assert (
            record.survivor_id == survivor.id
            and record.merged_candidate_id == second.candidate_ids[0]
        )
        assert record.actor_id == admin.user_id and record.reason is MergeReason.SAME_EMAIL
        assert record.moved["applications"] == 1 and record.moved["comments"] == 1
        assert record.moved["consents"] == 1
        event = db.scalars(select(AuditEvent).where(AuditEvent.action == "merge")).one()
        assert set(event.subject_ids) == {survivor.subject_id, record.merged_subject_id}


def test_merging_two_applications_to_one_job_keeps_one(demo: Store) -> None:
    hr = staff(demo, "hr.east")
    gate = Gate(demo)
    job = job_in(demo, "EAST-CARD")
    a = create_candidates(demo, gate, hr, job, [NewCandidate("吴甲", "13922223333")], PURPOSE)
    b = create_candidates(
        demo, gate, hr, job, [NewCandidate("吴甲", None, "wu@example.org")], PURPOSE
    )
    move_stage(demo, gate, hr, b.application_ids, Stage.SCREENED, "电话面谈", PURPOSE)
    merge_candidates(demo, gate, hr, a.candidate_ids[0], b.candidate_ids[0], "same_person", PURPOSE)
    with demo.session() as db:
        apps = db.scalars(
            select(Application).where(Application.candidate_id == a.candidate_ids[0])
        ).all()
        assert [x.id for x in apps] == a.application_ids
        moved = db.scalars(
            select(StageChange).where(StageChange.application_id == apps[0].id)
        ).all()
        assert any(c.to_stage is Stage.SCREENED for c in moved)
        survivor = db.get_one(Candidate, a.candidate_ids[0])
        assert survivor.email == "wu@example.org"  # a gap filled from the merged record


def test_a_record_cannot_merge_into_itself(demo: Store) -> None:
    hr = staff(demo, "hr.east")
    created = create_candidates(
        demo,
        Gate(demo),
        hr,
        job_in(demo, "EAST-CARD"),
        [NewCandidate("郑", "13933334444")],
        PURPOSE,
    )
    with pytest.raises(DecisionRefused) as refused:
        cid = created.candidate_ids[0]
        merge_candidates(demo, Gate(demo), hr, cid, cid, "same_phone", PURPOSE)
    assert refused.value.code == "same_record"


def test_erasing_a_merged_person_shreds_every_key_they_had(demo: Store) -> None:
    """PIPL Art. 47: the merged record keeps its own key (files sealed under it), so
    erasing the survivor must destroy that key too, with its own certificate."""
    from compliance.deletion import erase_subject

    hr = staff(demo, "hr.east")
    gate = Gate(demo)
    job = job_in(demo, "EAST-CARD")
    a = create_candidates(demo, gate, hr, job, [NewCandidate("郑乙", "13933334444")], PURPOSE)
    b = create_candidates(
        demo, gate, hr, job, [NewCandidate("郑乙", None, "zheng@example.org")], PURPOSE
    )
    merge_id = merge_candidates(
        demo, gate, hr, a.candidate_ids[0], b.candidate_ids[0], "same_person", PURPOSE
    )
    with demo.session() as db:
        merged_subject = db.get_one(CandidateMerge, merge_id).merged_subject_id
        survivor_subject = db.get_one(Candidate, a.candidate_ids[0]).subject_id
    assert demo.keyring.exists(merged_subject) and demo.keyring.exists(survivor_subject)
    certificate = erase_subject(demo, Actor.system("test"), survivor_subject, "PIPL Art. 47 test")
    assert not demo.keyring.exists(survivor_subject)
    assert not demo.keyring.exists(merged_subject)
    assert certificate.subject_id == survivor_subject
