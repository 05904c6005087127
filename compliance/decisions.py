"""Decisions on candidates and changes to their records, through the gate (issue 6, item 3).

- `move_stage`: a named person moves applications to a stage with a reason. The reason
  is an opinion about the candidate: it is stored as a `Comment` (sealed under the
  candidate's key, `comments.body` in policy.yaml) that the `StageChange` points at.
  A bulk move is one transaction: every application moves, or none does.
- `create_candidates`: new candidates and their applications to one job (add one, or an
  imported list), in one transaction, each in the job's org unit (row scope follows it).
  A person already on file in the actor's scope (same phone or e-mail, by blind index)
  gets an application, not a second record.
- `duplicate_pairs` / `merge_candidates`: two records of one person (same phone or
  e-mail) become one; the merged record's rows move to the survivor, re-sealed under the
  survivor's key, and a `CandidateMerge` records which, who, when and why.

Every write is checked against the policy the way `Gate.update_many` checks one (a role
of the actor whose scope covers the row must hold `write` on each personal field written)
and recorded in the audit log before it happens (fail closed, PIPL Art. 51); a write that
then fails leaves a `failed` event. AI scores never move a candidate: PIPL Art. 24 and
issue 6, "every decision needs a named person and a reason".
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from appliance.personal import Unavailable, session_vault
from appliance.records import (
    Application,
    Base,
    Candidate,
    CandidateMerge,
    Comment,
    Job,
    MergeReason,
    OrgUnit,
    Referral,
    Stage,
    StageChange,
    Subject,
    SubjectKind,
    new_uuid,
)
from appliance.store import Store
from compliance import audit
from compliance.actors import Actor
from compliance.gate import AccessDenied, Gate, NotInScope, personal_fields
from compliance.policy import FieldRule, RowScope

REASON_FIELD = "comments.body"
CONTACT_FIELDS = ("candidates.name", "candidates.phone", "candidates.email")
REFERRER_FIELD = "referrals.note"
MAX_REASON = 2000
"""Characters; a reason is a sentence or a paragraph, not a document."""
REFERRAL_CHANNEL = "referral"


class DecisionRefused(ValueError):
    """The request cannot be carried out as asked; `code` names why (the portal translates it).

    Codes: no_reason, reason_too_long, no_actor, no_selection, bad_stage, same_record,
    no_contact, duplicate_in_request, conflict.
    """

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(detail or code)
        self.code = code


@dataclass(frozen=True)
class NewCandidate:
    """One person to add: the values go straight into sealed columns, never into logs."""

    name: str
    phone: str | None = None
    email: str | None = None
    source: str | None = None
    referrer: str | None = None


@dataclass
class Created:
    """What `create_candidates` did, in the order of the people given."""

    candidate_ids: list[int] = field(default_factory=list)
    application_ids: list[int] = field(default_factory=list)
    subject_ids: list[str] = field(default_factory=list)
    existing: list[bool] = field(default_factory=list)
    """True where the person was already on file (in the actor's scope) and only applied."""

    @property
    def new_count(self) -> int:
        return self.existing.count(False)


@dataclass(frozen=True)
class DuplicatePair:
    first_id: int
    second_id: int
    reason: MergeReason


# --- who may write ---------------------------------------------------------------------------


def _named_person(actor: Actor) -> int:
    """The user id of the person deciding; jobs and candidates decide nothing."""
    if actor.kind != "staff" or actor.user_id is None:
        raise DecisionRefused("no_actor", "a decision needs a named staff member")
    return actor.user_id


def _one_grant(actor: Actor, grant: Any) -> Actor:
    return Actor.staff(actor.name, actor.user_id or 0, (grant,), actor.source_ip, actor.mfa)


def _writers(gate: Gate, actor: Actor, purpose: str, fields: Iterable[str]) -> list[Actor]:
    """The actor narrowed to each of its roles that may write every field for `purpose`."""
    names = list(fields)
    writers = []
    for grant in actor.grants:
        role = gate.policy.role(grant.role.value)
        if role.rows is RowScope.NONE or purpose not in role.purposes:
            continue
        if all(gate.policy.rule(grant.role.value, f) >= FieldRule.WRITE for f in names):
            writers.append(_one_grant(actor, grant))
    return writers


def _covered_ids(
    gate: Gate, db: Session, writers: Sequence[Actor], model: Any, ids: Iterable[int], purpose: str
) -> set[int]:
    """Of `ids`, the rows of `model` some writer role reaches (the gate's own scope clauses)."""
    wanted = list(ids)
    covered: set[int] = set()
    for writer in writers:
        stmt = select(model.id).where(model.id.in_(wanted))
        covered |= set(db.scalars(stmt.where(gate.scope(writer, model, "view", purpose))))
    return covered


def _deny(
    store: Store,
    actor: Actor,
    entity: str,
    purpose: str,
    subjects: Iterable[str],
    fields: Iterable[str],
    exc: type[AccessDenied],
    message: str,
) -> AccessDenied:
    audit.record(
        store, actor, "update", entity, purpose, "denied", sorted(set(subjects)), sorted(fields)
    )
    return exc(message)


def _record(
    store: Store,
    actor: Actor,
    action: str,
    entity: str,
    purpose: str,
    subjects: Iterable[str],
    fields: Iterable[str],
    result: str = "allowed",
) -> None:
    audit.record(
        store, actor, action, entity, purpose, result, sorted(set(subjects)), sorted(fields)
    )


# --- stage moves -----------------------------------------------------------------------------


def clean_reason(reason: str | None) -> str:
    text = (reason or "").strip()
    if not text:
        raise DecisionRefused("no_reason", "every decision needs a reason")
    if len(text) > MAX_REASON:
        raise DecisionRefused("reason_too_long", f"a reason has at most {MAX_REASON} characters")
    return text


def move_stage(
    store: Store,
    gate: Gate,
    actor: Actor,
    application_ids: Sequence[int],
    to_stage: Stage | str,
    reason: str | None,
    purpose: str,
) -> list[int]:
    """Move the applications to `to_stage`, each with the reason; returns the StageChange ids.

    All or nothing: one application out of scope or not writable refuses the whole move
    (recorded), and the rows are written in one transaction.
    """
    user_id = _named_person(actor)
    text = clean_reason(reason)
    try:
        stage = Stage(to_stage)
    except ValueError:
        raise DecisionRefused("bad_stage", "unknown stage") from None
    ids = sorted(set(application_ids))
    if not ids:
        raise DecisionRefused("no_selection", "select at least one application")
    subjects = _check_applications(store, gate, actor, ids, purpose)
    for app_id in ids:
        _record(
            store,
            actor,
            "update",
            f"applications:{app_id}",
            purpose,
            [subjects[app_id]],
            [REASON_FIELD],
        )
    try:
        return _write_moves(store, gate, actor, user_id, ids, stage, text, purpose)
    except Exception:
        for app_id in ids:
            _record(
                store,
                actor,
                "update",
                f"applications:{app_id}",
                purpose,
                [subjects[app_id]],
                [],
                "failed",
            )
        raise


def _check_applications(
    store: Store, gate: Gate, actor: Actor, ids: list[int], purpose: str
) -> dict[int, str]:
    """Application id -> subject id, once every application is in a writer role's scope."""
    writers = _writers(gate, actor, purpose, [REASON_FIELD])
    with store.session() as db:
        rows = db.execute(
            select(Application.id, Candidate.subject_id)
            .join(Candidate, Application.candidate_id == Candidate.id)
            .where(Application.id.in_(ids))
        ).all()
        subjects = {app_id: subject for app_id, subject in rows}
        if not writers:
            raise _deny(
                store,
                actor,
                "applications",
                purpose,
                subjects.values(),
                [REASON_FIELD],
                AccessDenied,
                "none of this account's roles decides for this purpose",
            )
        covered = _covered_ids(gate, db, writers, Application, ids, purpose)
    outside = [i for i in ids if i not in covered]
    if outside:
        raise _deny(
            store,
            actor,
            f"applications:{outside[0]}",
            purpose,
            [subjects[i] for i in outside if i in subjects],
            [REASON_FIELD],
            NotInScope,
            f"application {outside[0]} is outside this account's row scope",
        )
    return subjects


def _write_moves(
    store: Store,
    gate: Gate,
    actor: Actor,
    user_id: int,
    ids: list[int],
    stage: Stage,
    reason: str,
    purpose: str,
) -> list[int]:
    batch = uuid.uuid4().hex if len(ids) > 1 else None
    writers = _writers(gate, actor, purpose, [REASON_FIELD])
    with store.write_transaction() as db:
        if _covered_ids(gate, db, writers, Application, ids, purpose) != set(ids):
            raise NotInScope("an application left this account's row scope")
        changes = []
        for app in db.scalars(select(Application).where(Application.id.in_(ids))):
            comment = Comment(
                application_id=app.id, subject_id=app.candidate.subject_id, author_id=user_id
            )
            db.add(comment)
            db.flush()
            comment.body = reason
            change = StageChange(
                application_id=app.id,
                actor_id=user_id,
                from_stage=app.stage,
                to_stage=stage,
                reason_comment_id=comment.id,
                batch=batch,
            )
            app.stage = stage
            db.add(change)
            changes.append(change)
        db.flush()
        return [c.id for c in changes]


# --- new candidates --------------------------------------------------------------------------


def create_candidates(
    store: Store,
    gate: Gate,
    actor: Actor,
    job_id: int,
    people: Sequence[NewCandidate],
    purpose: str,
) -> Created:
    """Add `people` to the job's org unit and apply them to the job, in one transaction.

    A person whose phone or e-mail matches a candidate the actor may see is not added
    again: that candidate applies (if not already applied). Two people of `people` with
    the same phone or e-mail are refused (`duplicate_in_request`): the import says which rows.
    """
    user_id = _named_person(actor)
    fields = _fields_for(people)
    _check_people(people)
    job_unit = _job_unit(store, job_id)
    if not _may_create_in(gate, actor, purpose, fields, job_unit):
        raise _deny(
            store,
            actor,
            f"jobs:{job_id}",
            purpose,
            [],
            fields,
            AccessDenied,
            "this account may not add candidates to this job's department",
        )
    with store.session() as db:
        matches = _existing_matches(gate, actor, db, people, purpose)
    plan = Created()
    for i in range(len(people)):
        match = matches.get(i)
        plan.existing.append(match is not None)
        plan.subject_ids.append(match[1] if match else new_uuid())
    _record_creation(store, actor, job_id, purpose, people, plan, fields)
    try:
        return _write_people(store, user_id, job_id, job_unit[0], people, plan, matches)
    except Exception:
        _record(store, actor, "create", f"jobs:{job_id}", purpose, plan.subject_ids, [], "failed")
        raise


def _fields_for(people: Sequence[NewCandidate]) -> list[str]:
    fields = list(CONTACT_FIELDS)
    if any(p.referrer for p in people):
        fields.append(REFERRER_FIELD)
    return fields


def _check_people(people: Sequence[NewCandidate]) -> None:
    if not people:
        raise DecisionRefused("no_selection", "nobody to add")
    seen: dict[str, int] = {}
    for i, person in enumerate(people):
        if not person.name.strip() or not (person.phone or person.email):
            raise DecisionRefused(
                "no_contact", f"person {i + 1} needs a name and a phone or e-mail"
            )
        for key in _identity_keys(person):
            if key in seen:
                raise DecisionRefused("duplicate_in_request", f"people {seen[key] + 1} and {i + 1}")
            seen[key] = i


def _identity_keys(person: NewCandidate) -> list[str]:
    keys = []
    if person.phone:
        keys.append("p:" + Candidate.phone.normalise(person.phone))
    if person.email:
        keys.append("e:" + Candidate.email.normalise(person.email))
    return keys


def _job_unit(store: Store, job_id: int) -> tuple[int, str]:
    with store.session() as db:
        row = db.execute(
            select(OrgUnit.id, OrgUnit.path)
            .join(Job, Job.org_unit_id == OrgUnit.id)
            .where(Job.id == job_id)
        ).first()
    if row is None:
        raise NotInScope(f"no job {job_id}")
    return int(row[0]), str(row[1])


def _may_create_in(
    gate: Gate, actor: Actor, purpose: str, fields: list[str], unit: tuple[int, str]
) -> bool:
    """A writer role whose org subtree holds the job's unit (or that reaches all rows)."""
    for writer in _writers(gate, actor, purpose, fields):
        grant = writer.grants[0]
        scope = gate.policy.role(grant.role.value).rows
        if scope is RowScope.ALL:
            return True
        if scope is RowScope.ORG_SUBTREE and unit[1].startswith(grant.org_path):
            return True
    return False


def _existing_matches(
    gate: Gate, actor: Actor, db: Session, people: Sequence[NewCandidate], purpose: str
) -> dict[int, tuple[int, str]]:
    """Person index -> (candidate id, subject id) of a candidate in scope with their phone or
    e-mail (blind index look-up; no value leaves this function)."""
    vault = session_vault(db)
    found: dict[int, tuple[int, str]] = {}
    scope = gate.scope(actor, Candidate, "search", purpose)
    for i, person in enumerate(people):
        conds = []
        if person.phone:
            conds.append(Candidate.phone_index == Candidate.phone.index_of(vault, person.phone))
        if person.email:
            conds.append(Candidate.email_index == Candidate.email.index_of(vault, person.email))
        row = db.execute(
            select(Candidate.id, Candidate.subject_id)
            .where(or_(*conds), scope)
            .order_by(Candidate.id)
        ).first()
        if row is not None:
            found[i] = (int(row[0]), str(row[1]))
    return found


def _record_creation(
    store: Store,
    actor: Actor,
    job_id: int,
    purpose: str,
    people: Sequence[NewCandidate],
    plan: Created,
    fields: list[str],
) -> None:
    """One event per person before anything is written: the new records (create) and the
    people found already on file (search, since the look-up disclosed that they are)."""
    for person, subject, existing in zip(people, plan.subject_ids, plan.existing, strict=True):
        written = [f for f in fields if f != REFERRER_FIELD or person.referrer]
        if existing:
            matched = ["candidates.phone", "candidates.email"]
            _record(store, actor, "search", f"jobs:{job_id}", purpose, [subject], matched)
            written = [f for f in written if f == REFERRER_FIELD]
        _record(store, actor, "create", f"jobs:{job_id}", purpose, [subject], written)


def _write_people(
    store: Store,
    user_id: int,
    job_id: int,
    unit_id: int,
    people: Sequence[NewCandidate],
    plan: Created,
    matches: dict[int, tuple[int, str]],
) -> Created:
    new_keys: list[str] = []
    try:
        with store.write_transaction() as db:
            for i, person in enumerate(people):
                if i in matches:
                    candidate = db.get_one(Candidate, matches[i][0])
                else:
                    candidate = _new_candidate(store, db, plan.subject_ids[i], unit_id, person)
                    new_keys.append(plan.subject_ids[i])
                _add_referral(db, candidate, person)
                application = _apply(db, candidate, job_id, user_id)
                plan.candidate_ids.append(candidate.id)
                plan.application_ids.append(application.id)
    except BaseException:
        for subject_id in new_keys:  # rows rolled back: their keys protect nothing
            store.keyring.destroy(subject_id)
        raise
    return plan


def _new_candidate(
    store: Store, db: Session, subject_id: str, unit_id: int, person: NewCandidate
) -> Candidate:
    subject = Subject(id=subject_id, kind=SubjectKind.CANDIDATE)
    db.add(subject)
    db.flush()
    store.keyring.create(subject_id)
    candidate = Candidate(subject_id=subject_id, org_unit_id=unit_id, source=person.source)
    db.add(candidate)
    db.flush()
    candidate.name = person.name.strip()
    candidate.phone = person.phone or None
    candidate.email = person.email or None
    return candidate


def _add_referral(db: Session, candidate: Candidate, person: NewCandidate) -> None:
    if not person.referrer:
        return
    referral = Referral(
        candidate_id=candidate.id, subject_id=candidate.subject_id, channel=REFERRAL_CHANNEL
    )
    db.add(referral)
    db.flush()
    referral.note = person.referrer.strip()


def _apply(db: Session, candidate: Candidate, job_id: int, user_id: int) -> Application:
    """The candidate's application to the job: the existing one, or a new one (applied)."""
    found = db.scalars(
        select(Application).where(
            Application.candidate_id == candidate.id, Application.job_id == job_id
        )
    ).first()
    if found is not None:
        return found
    application = Application(candidate_id=candidate.id, job_id=job_id, stage=Stage.APPLIED)
    db.add(application)
    db.flush()
    db.add(
        StageChange(
            application_id=application.id, actor_id=user_id, from_stage=None, to_stage=Stage.APPLIED
        )
    )
    return application


# --- duplicates and merges -------------------------------------------------------------------


def duplicate_pairs(gate: Gate, actor: Actor, db: Session, purpose: str) -> list[DuplicatePair]:
    """Pairs of candidates in the actor's scope with the same phone or e-mail (blind indexes:
    no value is opened to find them)."""
    other = aliased(Candidate)
    pairs: dict[tuple[int, int], MergeReason] = {}
    for column, reason in (
        ("phone_index", MergeReason.SAME_PHONE),
        ("email_index", MergeReason.SAME_EMAIL),
    ):
        mine, theirs = getattr(Candidate, column), getattr(other, column)
        stmt = (
            select(Candidate.id, other.id)
            .join(other, and_(mine == theirs, Candidate.id < other.id))
            .where(mine.is_not(None))
            .where(gate.scope(actor, Candidate, "search", purpose))
            .where(
                other.id.in_(
                    select(Candidate.id).where(gate.scope(actor, Candidate, "search", purpose))
                )
            )
        )
        for first, second in db.execute(stmt):
            pairs.setdefault((int(first), int(second)), reason)
    return [DuplicatePair(a, b, r) for (a, b), r in sorted(pairs.items())]


def merge_candidates(
    store: Store,
    gate: Gate,
    actor: Actor,
    survivor_id: int,
    merged_id: int,
    reason: MergeReason | str,
    purpose: str,
) -> int:
    """Make `merged_id` part of `survivor_id`; returns the CandidateMerge id.

    The survivor keeps its own values and takes the merged record's where it has none.
    Applications, comments, consents, interviews, scores and everything else about the
    merged record move to the survivor (re-sealed under the survivor's key); two
    applications to the same job become the survivor's one. One transaction.
    """
    user_id = _named_person(actor)
    if survivor_id == merged_id:
        raise DecisionRefused("same_record", "a record cannot be merged into itself")
    why = MergeReason(reason)
    subjects = _check_merge(store, gate, actor, [survivor_id, merged_id], purpose)
    fields = _merge_fields()
    entity = f"candidates:{survivor_id}"
    _record(store, actor, "merge", entity, purpose, subjects.values(), fields)
    try:
        return _write_merge(store, user_id, survivor_id, merged_id, why)
    except IntegrityError:
        _record(store, actor, "merge", entity, purpose, subjects.values(), [], "failed")
        raise DecisionRefused(
            "conflict", "the two records cannot be merged automatically"
        ) from None
    except Exception:
        _record(store, actor, "merge", entity, purpose, subjects.values(), [], "failed")
        raise


def _merge_fields() -> list[str]:
    return sorted({pf.where for _model, pf in _subject_models_fields()})


def _check_merge(
    store: Store, gate: Gate, actor: Actor, ids: list[int], purpose: str
) -> dict[int, str]:
    writers = _writers(gate, actor, purpose, [*CONTACT_FIELDS, REASON_FIELD])
    with store.session() as db:
        subjects = {
            int(i): str(s)
            for i, s in db.execute(
                select(Candidate.id, Candidate.subject_id).where(Candidate.id.in_(ids))
            )
        }
        covered = _covered_ids(gate, db, writers, Candidate, ids, purpose) if writers else set()
    if not writers:
        raise _deny(
            store,
            actor,
            "candidates",
            purpose,
            subjects.values(),
            CONTACT_FIELDS,
            AccessDenied,
            "none of this account's roles may merge candidate records",
        )
    outside = [i for i in ids if i not in covered]
    if outside:
        raise _deny(
            store,
            actor,
            f"candidates:{outside[0]}",
            purpose,
            [subjects[i] for i in outside if i in subjects],
            CONTACT_FIELDS,
            NotInScope,
            f"candidate {outside[0]} is outside this account's row scope",
        )
    return subjects


def _write_merge(
    store: Store, user_id: int, survivor_id: int, merged_id: int, reason: MergeReason
) -> int:
    with store.write_transaction() as db:
        survivor = db.get_one(Candidate, survivor_id)
        merged = db.get_one(Candidate, merged_id)
        old_subject, new_subject = merged.subject_id, survivor.subject_id
        _fill_gaps(survivor, merged)
        moved: dict[str, int] = {}
        _fold_applications(db, survivor_id, merged_id, moved)
        _move_candidate_refs(db, survivor_id, merged_id, moved)
        db.delete(merged)
        db.flush()
        _move_subject_rows(db, old_subject, new_subject, moved)
        record = CandidateMerge(
            survivor_id=survivor_id,
            merged_candidate_id=merged_id,
            merged_subject_id=old_subject,
            actor_id=user_id,
            reason=reason,
            moved=moved,
        )
        db.add(record)
        db.flush()
        return record.id


def _fill_gaps(survivor: Candidate, merged: Candidate) -> None:
    for pf in personal_fields(Candidate):
        mine, theirs = getattr(survivor, pf.name), getattr(merged, pf.name)
        if mine is None and theirs is not None and not isinstance(theirs, Unavailable):
            setattr(survivor, pf.name, theirs)


def _foreign_keys_to(table: str) -> list[tuple[Any, Any]]:
    """(table, column) pairs of every column that references `table.id`."""
    found = []
    for tbl in Base.metadata.sorted_tables:
        for column in tbl.columns:
            for fk in column.foreign_keys:
                if fk.column.table.name == table and fk.column.name == "id":
                    found.append((tbl, column))
    return found


def _fold_applications(
    db: Session, survivor_id: int, merged_id: int, moved: dict[str, int]
) -> None:
    """Two applications to one job: the merged one's rows join the survivor's, then it goes."""
    theirs = {
        a.job_id: a
        for a in db.scalars(select(Application).where(Application.candidate_id == merged_id))
    }
    mine = {
        a.job_id: a
        for a in db.scalars(select(Application).where(Application.candidate_id == survivor_id))
    }
    for job_id, dup in theirs.items():
        keep = mine.get(job_id)
        if keep is None:
            continue
        for tbl, column in _foreign_keys_to("applications"):
            result: Any = db.execute(
                update(tbl).where(column == dup.id).values({column.name: keep.id})
            )
            if result.rowcount:
                moved[tbl.name] = moved.get(tbl.name, 0) + result.rowcount
        db.execute(delete(Application).where(Application.id == dup.id))


def _move_candidate_refs(
    db: Session, survivor_id: int, merged_id: int, moved: dict[str, int]
) -> None:
    for tbl, column in _foreign_keys_to("candidates"):
        if tbl.name == "candidate_merges":
            continue
        result: Any = db.execute(
            update(tbl).where(column == merged_id).values({column.name: survivor_id})
        )
        if result.rowcount:
            moved[tbl.name] = moved.get(tbl.name, 0) + result.rowcount


def _subject_models_fields() -> list[tuple[Any, Any]]:
    pairs = []
    for mapper in Base.registry.mappers:
        model = mapper.class_
        if model in (Candidate, Subject, CandidateMerge) or "subject_id" not in mapper.columns:
            continue
        for pf in personal_fields(model):
            pairs.append((model, pf))
    return pairs


def _move_subject_rows(db: Session, old: str, new: str, moved: dict[str, int]) -> None:
    """Rows about the merged subject become the survivor's: personal fields re-sealed under
    the survivor's key (the field's seal is bound to its subject), other rows re-pointed.
    Blobs keep their own key (their header names it), so the old subject is not shredded."""
    vault = session_vault(db)
    for mapper in Base.registry.mappers:
        model = mapper.class_
        if model in (Candidate, Subject, CandidateMerge) or "subject_id" not in mapper.columns:
            continue
        pfs = personal_fields(model)
        rows = list(db.scalars(select(model).where(model.subject_id == old)))
        for row in rows:
            values = {pf.name: getattr(row, pf.name) for pf in pfs}
            row.subject_id = new
            for pf in pfs:
                value = values[pf.name]
                pf.seal_into(row, vault, None if isinstance(value, Unavailable) else value)
        if rows:
            moved[model.__tablename__] = moved.get(model.__tablename__, 0) + len(rows)
    db.flush()
