"""The one gate: every read or write of personal data passes here (ARCHITECTURE.md, issue #3).

The portal, the API, exports and workers never read a `PersonalField` themselves;
they load rows (non-personal columns are theirs to show) and hand them to a
`Gate`, which, from the reviewed policy (`compliance/policy.yaml`):

1. refuses a role that may not do this at all (no such action or purpose, or no
   rows): `AccessDenied`, which the web answers with 403;
2. applies row scope: org subtree for HR, assignment for interviewers, self for
   candidates. A row outside scope is `NotInScope`, answered with 404, so that
   nobody learns a row exists that they may not see. Lists and searches get the
   same scope as SQL (`scope()`), so out-of-scope rows never leave the database;
3. applies field rules (read, masked, hidden, write) to every personal field of
   each row; a field the policy does not name is hidden for everyone;
4. records the access in the audit log *before* any value is handed back (fail
   closed, PIPL Art. 51): one event per person for staff and candidates, one
   event per call listing every subject for the box's own jobs (a batch). Events
   carry ids and field names, never values; a masked field is named
   `table.field:masked`, so an auditor can tell a full ID number from a masked one.

Denials are recorded too (result `denied`), with the field names that were asked for.

Purposes: every call names one (PIPL Art. 6); a role may use only the purposes the
policy lists for it, and for an actor holding several roles only the roles that
allow the purpose count (an HR who also interviews sees, for `interview_review`,
what an interviewer sees).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, exists, false, func, or_, select, true
from sqlalchemy.orm import Session, object_session

from appliance.blobs import BlobReader
from appliance.personal import PersonalField, Unavailable, session_vault
from appliance.records import (
    Answer,
    AnswerAnalysis,
    Application,
    Candidate,
    Comment,
    Employee,
    EqualityData,
    Evaluation,
    ExpressionSignals,
    FaceSignals,
    InterviewSession,
    OrgUnit,
    Recording,
    Referral,
    ResumeParse,
    ScoreOverride,
    ScoreReport,
)
from appliance.store import Store
from compliance import audit
from compliance.actors import Actor
from compliance.masks import apply_mask
from compliance.policy import (
    CANDIDATE_ROLE,
    MEDIA_MODES,
    SYSTEM_ROLE,
    FieldRule,
    Policy,
    RowScope,
    default_policy,
)

MEDIA_FIELD = "recordings.media"
"""What a stream or download event names in `fields` (the recording, not a column)."""

# Rows that belong to the candidate named by their `subject_id` (org subtree and self scope).
_CANDIDATE_SUBJECT_ROWS: tuple[type[Any], ...] = (
    Answer,
    Recording,
    Evaluation,
    Comment,
    Referral,
    AnswerAnalysis,
    FaceSignals,
    ExpressionSignals,
    ScoreReport,
    ScoreOverride,
    ResumeParse,
    EqualityData,
)
# Rows about one answer, which an interviewer reaches through the answers of their sessions.
_PER_ANSWER_ROWS: tuple[type[Any], ...] = (
    Recording,
    AnswerAnalysis,
    FaceSignals,
    ExpressionSignals,
)


class AccessDenied(Exception):
    """The policy does not let this actor do this (403). The denial is already in the audit log."""


class NotInScope(AccessDenied):
    """The row exists but lies outside the actor's row scope (404: existence is not revealed)."""


@dataclass(frozen=True)
class Shown:
    """One row as the actor may see it: shown values (full or masked), hidden ones absent.

    `values` maps the field's short name (`phone`) to what may be displayed: the full
    value for read and write, the masked string for masked, "[unavailable]" once the
    subject was shredded, None when the field is empty. Templates use `shown.phone`
    or `'phone' in shown`; JSON uses `as_dict()`.
    """

    entity: str
    id: Any
    subject_id: str | None
    values: Mapping[str, str | None]
    masked: frozenset[str] = frozenset()
    hidden: frozenset[str] = frozenset()
    writable: frozenset[str] = frozenset()
    row: Any = field(default=None, repr=False, compare=False)
    """The ORM row, for its non-personal columns (ids, stage, dates)."""

    def __getitem__(self, name: str) -> str | None:
        return self.values[name]

    def __contains__(self, name: object) -> bool:
        return name in self.values

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.values.get(name, default)

    def as_dict(self) -> dict[str, Any]:
        """The shown values with the row's id; hidden fields are absent, `masked` lists the rest."""
        return {"id": self.id, **self.values, "masked": sorted(self.masked)}


@dataclass(frozen=True)
class _Reach:
    """One of an actor's roles and the rows it reaches."""

    role: str
    scope: RowScope
    org_path: str | None = None
    user_id: int | None = None
    candidate_id: int | None = None


def table_of(obj_or_model: Any) -> str:
    model = obj_or_model if isinstance(obj_or_model, type) else type(obj_or_model)
    return str(getattr(model, "__tablename__", model.__name__))


def personal_fields(model: type[Any]) -> list[PersonalField]:
    """The model's personal fields, from the registry every PersonalField joins when declared."""
    return [pf for owner, pf in PersonalField.registry if owner is model]


def subject_of(obj: Any) -> str | None:
    """Whose data the row is: its `subject_id`, or its candidate's for sessions and applications."""
    subject = getattr(obj, "subject_id", None)
    if subject is not None:
        return str(subject)
    if isinstance(obj, InterviewSession):
        obj = obj.application
    if isinstance(obj, Application):
        return obj.candidate.subject_id
    return None


def _assigned_to(user_id: int | None) -> ColumnElement[bool]:
    """The session lists the user in `interviewer_ids` (a JSON list; SQLite's json_each)."""
    if user_id is None:
        return false()
    each = func.json_each(InterviewSession.interviewer_ids).table_valued("value")
    return exists(select(each.c.value).where(each.c.value == user_id))


def _clause(reach: _Reach, model: type[Any]) -> ColumnElement[bool]:
    """The WHERE clause of the rows of `model` that `reach` covers; unknown models: none."""
    if reach.scope is RowScope.ALL:
        return true()
    if reach.scope is RowScope.ORG_SUBTREE and reach.org_path:
        units = select(OrgUnit.id).where(OrgUnit.path.startswith(reach.org_path, autoescape=True))
        if model is Candidate:
            return Candidate.org_unit_id.in_(units)
        if model is Employee:
            return Employee.org_unit_id.in_(units)
        candidates = select(Candidate.id).where(Candidate.org_unit_id.in_(units))
        if model is Application:
            return Application.candidate_id.in_(candidates)
        if model is InterviewSession:
            apps = select(Application.id).where(Application.candidate_id.in_(candidates))
            return InterviewSession.application_id.in_(apps)
        if model in _CANDIDATE_SUBJECT_ROWS:
            subjects = select(Candidate.subject_id).where(Candidate.org_unit_id.in_(units))
            return model.subject_id.in_(subjects)
    if reach.scope is RowScope.ASSIGNED:
        # Interviewers reach their sessions and the candidate, answers, recordings and
        # evaluations of those sessions only: not the candidate's other interviews.
        sessions = select(InterviewSession.id).where(_assigned_to(reach.user_id))
        session_apps = select(InterviewSession.application_id).where(_assigned_to(reach.user_id))
        if model is InterviewSession:
            return _assigned_to(reach.user_id)
        if model is Answer:
            return Answer.session_id.in_(sessions)
        if model in _PER_ANSWER_ROWS:
            answers = select(Answer.id).where(Answer.session_id.in_(sessions))
            return model.answer_id.in_(answers)
        if model is Evaluation:
            return Evaluation.session_id.in_(sessions)
        if model is ScoreReport:
            return ScoreReport.session_id.in_(sessions)
        if model is ScoreOverride:
            reports = select(ScoreReport.id).where(ScoreReport.session_id.in_(sessions))
            return ScoreOverride.report_id.in_(reports)
        if model is Application:
            return Application.id.in_(session_apps)
        if model is Candidate:
            owners = select(Application.candidate_id).where(Application.id.in_(session_apps))
            return Candidate.id.in_(owners)
    if reach.scope is RowScope.SELF and reach.candidate_id is not None:
        cid = reach.candidate_id
        if model is Candidate:
            return Candidate.id == cid
        if model is Application:
            return Application.candidate_id == cid
        if model is InterviewSession:
            own = select(Application.id).where(Application.candidate_id == cid)
            return InterviewSession.application_id.in_(own)
        if model in _CANDIDATE_SUBJECT_ROWS:
            subject = select(Candidate.subject_id).where(Candidate.id == cid).scalar_subquery()
            return model.subject_id == subject
    return false()


@dataclass
class _Plan:
    """What one row will disclose: the rule of each requested personal field."""

    obj: Any
    subject_id: str | None
    rules: dict[str, tuple[PersonalField, FieldRule]]

    def event_fields(self) -> list[str]:
        names = []
        for pf, rule in self.rules.values():
            if rule is FieldRule.MASKED:
                names.append(f"{pf.where}:masked")
            elif rule >= FieldRule.READ:
                names.append(pf.where)
        return names


class Gate:
    """The gate for one store and policy; cheap to make, keeps no per-request state."""

    def __init__(self, store: Store, policy: Policy | None = None) -> None:
        self.store = store
        self.policy = policy if policy is not None else default_policy()

    # --- who the actor is to the policy -------------------------------------------------

    def _reaches(self, actor: Actor) -> list[_Reach]:
        if actor.kind == "candidate":
            rows = self.policy.role(CANDIDATE_ROLE).rows
            return [_Reach(CANDIDATE_ROLE, rows, candidate_id=actor.candidate_id)]
        if actor.kind == "system":
            return [_Reach(SYSTEM_ROLE, self.policy.role(SYSTEM_ROLE).rows)]
        return [
            _Reach(g.role.value, self.policy.role(g.role.value).rows, g.org_path, actor.user_id)
            for g in actor.grants
        ]

    def default_purpose(self, actor: Actor) -> str | None:
        """The purpose a request that names none is made for: a candidate's token purpose if
        the policy allows it, else the first purpose the actor's first role lists."""
        reaches = self._reaches(actor)
        if actor.kind == "candidate" and actor.token_purpose:
            if actor.token_purpose in self.policy.role(CANDIDATE_ROLE).purposes:
                return actor.token_purpose
        for reach in sorted(reaches, key=lambda r: r.role):
            purpose = self.policy.role(reach.role).default_purpose
            if purpose is not None:
                return purpose
        return None

    def _usable(self, actor: Actor, action: str | None, purpose: str) -> list[_Reach]:
        """The actor's roles that allow `action` (view, search, export, a media mode; None:
        any, for writes) for `purpose`, and reach some rows."""
        usable = []
        for reach in self._reaches(actor):
            role = self.policy.role(reach.role)
            if reach.scope is RowScope.NONE or purpose not in role.purposes:
                continue
            if action in MEDIA_MODES:
                if action not in role.media:
                    continue
            elif action is not None and action not in role.actions:
                continue
            usable.append(reach)
        return usable

    def may(self, actor: Actor, action: str, purpose: str | None = None) -> bool:
        """Whether the actor may do `action` at all (for showing or hiding a link or button)."""
        purpose = purpose or self.default_purpose(actor)
        return purpose is not None and bool(self._usable(actor, action, purpose))

    # --- row scope ----------------------------------------------------------------------

    def scope(
        self, actor: Actor, model: type[Any], action: str = "view", purpose: str | None = None
    ) -> ColumnElement[bool]:
        """The WHERE clause of the rows of `model` the actor may reach for `action` (and
        `purpose`, default the actor's default): add it to every list or search query."""
        purpose = purpose or self.default_purpose(actor)
        if purpose is None:
            return false()
        clauses = [_clause(r, model) for r in self._usable(actor, action, purpose)]
        return or_(false(), *clauses)

    def scoped(
        self, actor: Actor, stmt: Select[Any], model: type[Any], purpose: str | None = None
    ) -> Select[Any]:
        return stmt.where(self.scope(actor, model, "view", purpose))

    def _covering(
        self, db: Session, reaches: Sequence[_Reach], objs: Sequence[Any]
    ) -> dict[int, list[str]]:
        """For each object (by id()), the roles among `reaches` whose scope covers it.

        Asked of the database with the same clauses lists use, one query per model and
        role, so a single row and a list can never disagree on scope.
        """
        covering: dict[int, list[str]] = {id(o): [] for o in objs}
        by_model: dict[type[Any], list[Any]] = {}
        for obj in objs:
            by_model.setdefault(type(obj), []).append(obj)
        for model, rows in by_model.items():
            pk = model.id
            for reach in reaches:
                ids = [r.id for r in rows]
                found = set(db.scalars(select(pk).where(pk.in_(ids), _clause(reach, model))))
                for row in rows:
                    if row.id in found:
                        covering[id(row)].append(reach.role)
        return covering

    # --- events -------------------------------------------------------------------------

    def _event(
        self,
        actor: Actor,
        action: str,
        entity: str,
        purpose: str,
        result: str,
        subject_ids: Iterable[str | None] = (),
        fields: Iterable[str] = (),
    ) -> None:
        audit.record(
            self.store,
            actor,
            action,
            entity,
            purpose,
            result=result,
            subject_ids=sorted({s for s in subject_ids if s}),
            fields=sorted(set(fields)),
        )

    def _deny(
        self,
        actor: Actor,
        action: str,
        purpose: str,
        objs: Sequence[Any],
        fields: Iterable[str],
        exc: type[AccessDenied],
        message: str,
        entity: str | None = None,
    ) -> AccessDenied:
        """Record the refusal (one event per person asked for) and return the exception."""
        names = list(fields)
        if not objs:
            self._event(actor, action, entity or "-", purpose, "denied", (), names)
        for obj in objs:
            self._event(
                actor,
                action,
                f"{table_of(obj)}:{obj.id}",
                purpose,
                "denied",
                [subject_of(obj)],
                [n for n in names if n.startswith(table_of(obj) + ".")],
            )
        return exc(message)

    # --- reads --------------------------------------------------------------------------

    def _requested(self, model: type[Any], fields: Collection[str] | None) -> list[PersonalField]:
        return [pf for pf in personal_fields(model) if fields is None or pf.where in fields]

    def view(
        self,
        actor: Actor,
        obj: Any,
        purpose: str,
        fields: Collection[str] | None = None,
        action: str = "read",
    ) -> Shown:
        """One row as the actor may see it; one audit event. NotInScope / AccessDenied."""
        return self.view_many(actor, [obj], purpose, fields, action=action)[0]

    def view_many(
        self,
        actor: Actor,
        objs: Sequence[Any],
        purpose: str,
        fields: Collection[str] | None = None,
        action: str = "read",
        policy_action: str = "view",
    ) -> list[Shown]:
        """Rows as the actor may see them, in order: one audit event per person (several rows
        of one person, e.g. a candidate and the comments about them, make one event), or one
        event for all for the box's jobs.

        `fields`: qualified names (`candidates.phone`) the caller will show; None: all.
        Only these are opened and recorded. Every row must be in scope, or the whole
        call is refused: callers query lists through `scope()` first.
        """
        requested = {type(o): self._requested(type(o), fields) for o in objs}
        asked = [pf.where for pfs in requested.values() for pf in pfs]
        usable = self._usable(actor, policy_action, purpose)
        if not usable:
            raise self._deny(
                actor,
                action,
                purpose,
                objs,
                asked,
                AccessDenied,
                f"the policy gives none of this account's roles {policy_action!r} "
                f"for the purpose {purpose!r}",
            )
        if not objs:
            return []
        db = object_session(objs[0])
        if db is None:
            raise ValueError("the gate reads rows of a session from Store.session()")
        covering = self._covering(db, usable, objs)
        outside = [o for o in objs if not covering[id(o)]]
        if outside:
            raise self._deny(
                actor,
                action,
                purpose,
                outside,
                asked,
                NotInScope,
                f"{table_of(outside[0])} {outside[0].id} is outside this account's row scope",
            )

        plans = []
        for obj in objs:
            roles = covering[id(obj)]
            rules = {
                pf.name: (pf, max(self.policy.rule(role, pf.where) for role in roles))
                for pf in requested[type(obj)]
            }
            plans.append(_Plan(obj, subject_of(obj), rules))
        self._record_reads(actor, action, purpose, plans)
        return [self._show(plan) for plan in plans]

    def _record_reads(self, actor: Actor, action: str, purpose: str, plans: list[_Plan]) -> None:
        """Before any value leaves the gate: one event per person, or one per batch job call."""
        if actor.kind == "system":
            entities = sorted({table_of(p.obj) for p in plans})
            self._event(
                actor,
                action,
                ",".join(entities),
                purpose,
                "allowed",
                [p.subject_id for p in plans],
                [f for p in plans for f in p.event_fields()],
            )
            return
        by_subject: dict[str | None, list[_Plan]] = {}
        for plan in plans:
            key = plan.subject_id if plan.subject_id is not None else f"row:{id(plan.obj)}"
            by_subject.setdefault(key, []).append(plan)
        for group in by_subject.values():
            first = group[0].obj
            self._event(
                actor,
                action,
                f"{table_of(first)}:{first.id}",
                purpose,
                "allowed",
                [group[0].subject_id],
                [f for p in group for f in p.event_fields()],
            )

    def _show(self, plan: _Plan) -> Shown:
        values: dict[str, str | None] = {}
        masked, hidden, writable = set(), set(), set()
        for name, (pf, rule) in plan.rules.items():
            if rule is FieldRule.HIDDEN:
                hidden.add(name)
                continue
            raw: str | Unavailable | None = getattr(plan.obj, name)
            if rule is FieldRule.MASKED:
                mask = self.policy.mask_of(pf.where)
                values[name] = apply_mask(mask, raw) if mask else None
                masked.add(name)
            else:
                values[name] = str(raw) if isinstance(raw, Unavailable) else raw
            if rule is FieldRule.WRITE:
                writable.add(name)
        return Shown(
            entity=table_of(plan.obj),
            id=plan.obj.id,
            subject_id=plan.subject_id,
            values=values,
            masked=frozenset(masked),
            hidden=frozenset(hidden),
            writable=frozenset(writable),
            row=plan.obj,
        )

    def list_rows(
        self,
        actor: Actor,
        db: Session,
        model: type[Any],
        purpose: str,
        fields: Collection[str] | None = None,
        action: str = "list",
        policy_action: str = "view",
        stmt: Select[Any] | None = None,
    ) -> list[Shown]:
        """The rows of `model` in the actor's scope (optionally narrowing `stmt`), shown."""
        self.require(actor, policy_action, purpose, table_of(model), action, fields)
        query = stmt if stmt is not None else select(model).order_by(model.id)
        rows = list(db.scalars(query.where(self.scope(actor, model, policy_action, purpose))))
        return self.view_many(actor, rows, purpose, fields, action, policy_action)

    def export(
        self, actor: Actor, db: Session, model: type[Any], purpose: str, fields: Collection[str]
    ) -> list[Shown]:
        """What an export of the list may hold: one `export` event per person exported."""
        return self.list_rows(actor, db, model, purpose, fields, "export", "export")

    def require(
        self,
        actor: Actor,
        policy_action: str,
        purpose: str,
        entity: str,
        action: str | None = None,
        fields: Collection[str] | None = None,
    ) -> None:
        """Refuse (recorded, AccessDenied) unless some role of the actor may do this at all."""
        if not self._usable(actor, policy_action, purpose):
            raise self._deny(
                actor,
                action or policy_action,
                purpose,
                [],
                sorted(fields or ()),
                AccessDenied,
                f"the policy gives none of this account's roles {policy_action!r} "
                f"for the purpose {purpose!r}",
                entity=entity,
            )

    def search(
        self,
        actor: Actor,
        db: Session,
        by: str,
        value: str,
        purpose: str,
        fields: Collection[str] | None = None,
    ) -> list[Shown]:
        """Candidates whose phone or e-mail equals `value`, by blind index, in scope.

        A search that finds nobody (in scope) still leaves one event, naming the field
        searched by: who looked people up is part of the record even without a hit.
        """
        if by not in ("phone", "email"):
            raise ValueError("search by phone or email")
        searched = f"candidates.{by}"
        self.require(actor, "search", purpose, "candidates", "search", [searched])
        descriptor: PersonalField = getattr(Candidate, by)
        index = descriptor.index_of(session_vault(db), value)
        column = getattr(Candidate, descriptor.index_attr or "")
        stmt = select(Candidate).where(column == index).order_by(Candidate.id)
        rows = list(db.scalars(stmt.where(self.scope(actor, Candidate, "search", purpose))))
        if not rows:
            self._event(actor, "search", "candidates", purpose, "allowed", (), [searched])
            return []
        return self.view_many(actor, rows, purpose, fields, "search", "search")

    # --- writes -------------------------------------------------------------------------

    def update(
        self, actor: Actor, obj: Any, changes: Mapping[str, str | None], purpose: str
    ) -> None:
        """Write personal fields (short names) the policy lets the actor write, and commit.

        Checked against the policy, recorded (no event, no write), then written in the
        gate's own transaction (see `_write`); `obj` is expired in its session, whose next
        transaction reads the new values. Call it with no write pending in `obj`'s session.
        """
        self.update_many(actor, [(obj, changes)], purpose)

    def update_many(
        self, actor: Actor, items: Sequence[tuple[Any, Mapping[str, str | None]]], purpose: str
    ) -> None:
        """Several writes: one event per person, or one for a batch job (Actor.system)."""
        if not items:
            return
        db = object_session(items[0][0])
        if db is None:
            raise ValueError("the gate writes rows of a session from Store.session()")
        plans = []
        for obj, changes in items:
            known = {pf.name: pf for pf in personal_fields(type(obj))}
            unknown = sorted(set(changes) - set(known))
            if unknown:
                raise ValueError(f"{table_of(obj)} has no personal field {', '.join(unknown)}")
            plans.append((obj, [known[name] for name in changes]))
        asked = [pf.where for _obj, pfs in plans for pf in pfs]
        objs = [obj for obj, _pfs in plans]
        usable = self._usable(actor, None, purpose)
        if not usable:
            raise self._deny(
                actor,
                "update",
                purpose,
                objs,
                asked,
                AccessDenied,
                f"none of this account's roles writes for the purpose {purpose!r}",
            )
        covering = self._covering(db, usable, objs)
        outside = [o for o in objs if not covering[id(o)]]
        if outside:
            raise self._deny(
                actor,
                "update",
                purpose,
                outside,
                asked,
                NotInScope,
                f"{table_of(outside[0])} {outside[0].id} is outside this account's row scope",
            )
        for obj, pfs in plans:
            refused = [
                pf.where
                for pf in pfs
                if max(self.policy.rule(r, pf.where) for r in covering[id(obj)]) < FieldRule.WRITE
            ]
            if refused:
                raise self._deny(
                    actor,
                    "update",
                    purpose,
                    [obj],
                    asked,
                    AccessDenied,
                    f"the policy does not let this account write {', '.join(refused)}",
                )
        written = [
            _Plan(obj, subject_of(obj), {pf.name: (pf, FieldRule.READ) for pf in pfs})
            for obj, pfs in plans
        ]
        self._record_reads(actor, "update", purpose, written)
        self._write(actor, usable, items, purpose)

    def _write(
        self,
        actor: Actor,
        usable: Sequence[_Reach],
        items: Sequence[tuple[Any, Mapping[str, str | None]]],
        purpose: str,
    ) -> None:
        """Apply checked and recorded changes in a transaction of the gate's own.

        Why not in the caller's session: SQLite has one writer. The audit event is written
        (and committed) first, in its own transaction; a caller's transaction that read
        before that commit can no longer upgrade to a writer in WAL mode, and one that
        already holds the write lock would make the audit log wait. So the write takes the
        lock at BEGIN (IMMEDIATE), rechecks row scope on what it will change, and commits.
        """
        with self.store.session() as writer:
            writer.connection(execution_options={"begin": "IMMEDIATE"})
            fresh = [writer.get(type(obj), obj.id) for obj, _changes in items]
            rows = [row for row in fresh if row is not None]
            covering = self._covering(writer, usable, rows)
            for obj, row in zip((o for o, _c in items), fresh, strict=True):
                if row is None or not covering[id(row)]:
                    # Moved out of scope (or deleted) since the check: the event above said
                    # allowed, so this one says the write did not happen.
                    writer.rollback()
                    self._event(
                        actor,
                        "update",
                        f"{table_of(obj)}:{obj.id}",
                        purpose,
                        "failed",
                        [subject_of(obj)],
                    )
                    raise NotInScope(f"{table_of(obj)} {obj.id} left this account's row scope")
            for row, (_obj, changes) in zip(fresh, items, strict=True):
                for name, value in changes.items():
                    setattr(row, name, value)
            writer.commit()
        for obj, _changes in items:
            caller = object_session(obj)
            if caller is not None:
                caller.expire(obj)

    # --- media --------------------------------------------------------------------------

    def authorize_media(self, actor: Actor, recording: Recording, mode: str, purpose: str) -> None:
        """Allow (recorded) or refuse streaming or downloading one recording.

        Download is refused unless the policy grants it to a role (by default nobody):
        a streamed answer stays on the box, a downloaded one leaves its controls.
        """
        if mode not in MEDIA_MODES:
            raise ValueError(f"media mode must be one of {MEDIA_MODES}")
        entity = f"recordings:{recording.id}"
        usable = self._usable(actor, mode, purpose)
        if not usable:
            raise self._deny(
                actor,
                mode,
                purpose,
                [recording],
                [MEDIA_FIELD],
                AccessDenied,
                f"the policy does not let this account {mode} recordings for {purpose!r}",
            )
        db = object_session(recording)
        if db is None:
            raise ValueError("the gate reads rows of a session from Store.session()")
        if not self._covering(db, usable, [recording])[id(recording)]:
            raise self._deny(
                actor,
                mode,
                purpose,
                [recording],
                [MEDIA_FIELD],
                NotInScope,
                f"recording {recording.id} is outside this account's row scope",
            )
        self._event(actor, mode, entity, purpose, "allowed", [recording.subject_id], [MEDIA_FIELD])

    def open_media(self, actor: Actor, recording: Recording, mode: str, purpose: str) -> BlobReader:
        """The recording's plaintext reader, once `authorize_media` allowed it (and recorded it).

        A recording still being written (or cut by a crash) streams up to its last
        complete chunk.
        """
        self.authorize_media(actor, recording, mode, purpose)
        return self.store.blobs.open(recording.blob_id, partial_ok=not recording.complete)
