"""Bias audit of the AI scoring: selection rates, scoring rates and impact ratios by
category, as the NYC DCWP rules for Local Law 144 define them (6 RCNY 5-300, 5-301).

- Selection rate: of the individuals in a category, the share selected to move
  forward (here: whose application reached one of `selected_stages`).
- Scoring rate: of the individuals in a category, the share whose score is above the
  median score of the full sample.
- Impact ratio: a category's rate divided by the rate of the most selected (or
  highest scoring) category.
- Intersectional categories (e.g. sex x age band) where the data allows.
- Individuals whose category is unknown are counted and left out of the rates.
- A category below 2% of the sample may be left out of the impact ratios (the DCWP
  rules allow the auditor to, with a note): it is, and says so. Categories under 30
  people get a warning that their rates are unstable.

Categories come from `EqualityData` (sealed; read through the gate by the box's own
job, one audit event), never from anything a model sees. Results hold counts and rates
per category only; no individual's category or score leaves this module.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.personal import Unavailable
from appliance.records import (
    Application,
    BiasAudit,
    Candidate,
    EqualityData,
    InterviewSession,
    ScoreReport,
    Stage,
    utcnow,
)
from appliance.store import Store
from compliance import audit
from compliance.actors import Actor
from compliance.gate import Gate

UNKNOWN = "unknown"
EXCLUDE_BELOW_SHARE = 0.02
"""DCWP: a category under 2% of the data may be excluded from the impact ratios."""
WARN_BELOW = 30
SELECTED_STAGES = (Stage.OFFER, Stage.HIRED)
AGE_BANDS = ((0, 25, "<25"), (25, 35, "25-34"), (35, 45, "35-44"), (45, 55, "45-54"),
             (55, 65, "55-64"), (65, 200, "65+"))  # fmt: skip


@dataclass(frozen=True)
class Person:
    """One individual the tool assessed: their categories, whether selected, their score."""

    categories: Mapping[str, str | None]
    selected: bool | None = None
    score: float | None = None


@dataclass(frozen=True)
class GroupRate:
    group: str
    n: int
    hits: int
    rate: float
    impact_ratio: float | None
    share: float
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "n": self.n,
            "hits": self.hits,
            "rate": round(self.rate, 6),
            "rate_percent": round(self.rate * 100, 1),
            "impact_ratio": None if self.impact_ratio is None else round(self.impact_ratio, 4),
            "share": round(self.share, 4),
            "note": self.note,
        }


def group_of(person: Person, category: str | Sequence[str]) -> str:
    """The person's group in `category` (or the intersection of several), or UNKNOWN."""
    names = [category] if isinstance(category, str) else list(category)
    values = [person.categories.get(n) for n in names]
    if any(v is None or str(v).strip() == "" or v == UNKNOWN for v in values):
        return UNKNOWN
    return " x ".join(str(v) for v in values)


def _rates(counted: dict[str, tuple[int, int]], total: int) -> list[GroupRate]:
    """Rates and impact ratios from (n, hits) per group; `total` is the sample with a known
    category (shares are of it)."""
    rows = []
    for group, (n, hits) in sorted(counted.items()):
        share = n / total if total else 0.0
        note = None
        if share < EXCLUDE_BELOW_SHARE:
            note = "under 2% of the sample: left out of the impact ratios (DCWP rules)"
        elif n < WARN_BELOW:
            note = f"fewer than {WARN_BELOW} people: the rate is unstable"
        rows.append(GroupRate(group, n, hits, hits / n if n else 0.0, None, share, note))
    eligible = [r.rate for r in rows if r.share >= EXCLUDE_BELOW_SHARE]
    best = max(eligible, default=0.0)
    return [
        GroupRate(
            r.group,
            r.n,
            r.hits,
            r.rate,
            (r.rate / best if best else None) if r.share >= EXCLUDE_BELOW_SHARE else None,
            r.share,
            r.note,
        )
        for r in rows
    ]


def selection_rates(people: Iterable[Person], category: str | Sequence[str]) -> dict[str, Any]:
    counted: dict[str, tuple[int, int]] = {}
    unknown = 0
    for person in people:
        if person.selected is None:
            continue
        group = group_of(person, category)
        if group == UNKNOWN:
            unknown += 1
            continue
        n, hits = counted.get(group, (0, 0))
        counted[group] = (n + 1, hits + int(person.selected))
    total = sum(n for n, _ in counted.values())
    return {
        "groups": [r.as_dict() for r in _rates(counted, total)],
        "unknown": unknown,
        "assessed": total + unknown,
    }


def scoring_rates(people: Iterable[Person], category: str | Sequence[str]) -> dict[str, Any]:
    """Shares above the median score of the full sample (unknowns included in the median,
    as they are in the sample; excluded from the rates)."""
    scored = [p for p in people if p.score is not None]
    median = statistics.median(p.score for p in scored if p.score is not None) if scored else None
    counted: dict[str, tuple[int, int]] = {}
    unknown = 0
    for person in scored:
        group = group_of(person, category)
        if group == UNKNOWN:
            unknown += 1
            continue
        n, hits = counted.get(group, (0, 0))
        above = median is not None and person.score is not None and person.score > median
        counted[group] = (n + 1, hits + int(above))
    total = sum(n for n, _ in counted.values())
    return {
        "median": median,
        "groups": [r.as_dict() for r in _rates(counted, total)],
        "unknown": unknown,
        "assessed": total + unknown,
    }


def age_band(birth_year: str | int | None, at: datetime) -> str | None:
    try:
        age = at.year - int(str(birth_year))
    except (TypeError, ValueError):
        return None
    return next((label for low, high, label in AGE_BANDS if low <= age < high), None)


def analyse(
    people: Sequence[Person],
    categories: Sequence[str],
    intersections: Sequence[Sequence[str]] = (),
) -> dict[str, Any]:
    """The full table: per category and intersection, selection and scoring rates."""
    measures: dict[str, Any] = {}
    for category in [*categories, *intersections]:
        key = category if isinstance(category, str) else " x ".join(category)
        measures[key] = {
            "selection": selection_rates(people, category),
            "scoring": scoring_rates(people, category),
        }
    return {"sample": len(people), "categories": measures}


# --- on the box's data ----------------------------------------------------------------


def load_people(
    store: Store,
    actor: Actor,
    job_ids: Sequence[int] | None,
    selected_stages: Sequence[Stage] = SELECTED_STAGES,
    at: datetime | None = None,
) -> list[Person]:
    """One Person per application to the jobs (all jobs when None), with the AI's overall
    score of its latest scored session and the candidate's equality data, read through the
    gate as the box's own job (one audit event per call)."""
    moment = at or utcnow()
    gate = Gate(store)
    with store.session() as db:
        query = select(Application).order_by(Application.id)
        if job_ids is not None:
            query = query.where(Application.job_id.in_(list(job_ids)))
        applications = list(db.scalars(query))
        subject_of = {
            a.id: db.scalars(
                select(Candidate.subject_id).where(Candidate.id == a.candidate_id)
            ).one()
            for a in applications
        }
        reports = _latest_reports(db, [a.id for a in applications])
        equality = list(
            db.scalars(
                select(EqualityData).where(EqualityData.subject_id.in_(set(subject_of.values())))
            )
        )
        shown_reports = (
            gate.view_many(actor, list(reports.values()), "processing", action="bias_audit")
            if reports
            else []
        )
        shown_equality = (
            gate.view_many(actor, equality, "processing", action="bias_audit") if equality else []
        )
    scores = {s.row.application_id: _overall(s.get("report")) for s in shown_reports}
    cats = {s.subject_id: _categories(s.get("categories"), moment) for s in shown_equality}
    stages = set(selected_stages)
    return [
        Person(
            categories=cats.get(subject_of[a.id], {}),
            selected=a.stage in stages,
            score=scores.get(a.id),
        )
        for a in applications
    ]


def _latest_reports(db: Session, application_ids: list[int]) -> dict[int, ScoreReport]:
    latest: dict[int, ScoreReport] = {}
    if not application_ids:
        return latest
    rows = db.scalars(
        select(ScoreReport)
        .join(InterviewSession, InterviewSession.id == ScoreReport.session_id)
        .where(ScoreReport.application_id.in_(application_ids))
        .order_by(ScoreReport.updated_at, ScoreReport.id)
    )
    for row in rows:
        latest[row.application_id] = row
    return latest


def _overall(value: str | None) -> float | None:
    if not value or isinstance(value, Unavailable):
        return None
    try:
        overall = json.loads(value).get("overall")
        return None if overall is None else float(overall)
    except (ValueError, TypeError, AttributeError):
        return None


def _categories(value: str | None, at: datetime) -> dict[str, str | None]:
    if not value or isinstance(value, Unavailable):
        return {}
    try:
        raw = json.loads(value)
    except ValueError:
        return {}
    out = {str(k): (None if v is None else str(v)) for k, v in raw.items()}
    if "age_band" not in out and "birth_year" in out:
        out["age_band"] = age_band(out["birth_year"], at)
    out.pop("birth_year", None)
    return out


def run_audit(
    store: Store,
    actor: Actor,
    job_ids: Sequence[int] | None = None,
    categories: Sequence[str] = ("sex", "age_band"),
    intersections: Sequence[Sequence[str]] = (("sex", "age_band"),),
    selected_stages: Sequence[Stage] = SELECTED_STAGES,
    independent_auditor: str | None = None,
) -> BiasAudit:
    """Compute, store and audit a bias audit of the AI scoring. The data is read by the box's
    own job on `actor`'s behalf (staff never see anyone's categories or scores here)."""
    reader = Actor(kind="system", name=f"bias-audit({actor.name})")
    people = load_people(store, reader, job_ids, selected_stages)
    results = analyse(people, categories, intersections)
    scope = {
        "jobs": None if job_ids is None else list(job_ids),
        "categories": list(categories),
        "intersections": [list(i) for i in intersections],
        "selected_stages": [s.value for s in selected_stages],
        "independent_auditor": independent_auditor,
        "rules": "NYC Local Law 144; DCWP 6 RCNY 5-300, 5-301",
    }
    with store.transaction() as db:
        row = BiasAudit(made_by=actor.name, scope=scope, results=results)
        db.add(row)
        db.flush()
    audit.record(store, actor, "bias.audit", f"bias_audits:{row.id}", "processing")
    return row


def audit_current(db: Session, max_age_days: int, now: datetime | None = None) -> bool:
    """A bias audit no older than `max_age_days` exists (NYC 20-871(a): one year)."""
    since = (now or utcnow()) - timedelta(days=max_age_days)
    return (
        db.scalars(select(BiasAudit.id).where(BiasAudit.made_at >= since).limit(1)).first()
        is not None
    )


def to_csv(results: Mapping[str, Any]) -> str:
    """One row per category, group and measure, for the export and the public summary."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["category", "measure", "group", "n", "hits", "rate", "impact_ratio", "share", "note"]
    )
    for category, measures in results["categories"].items():
        for measure in ("selection", "scoring"):
            table = measures[measure]
            for g in table["groups"]:
                writer.writerow(
                    [category, measure, g["group"], g["n"], g["hits"], g["rate"],
                     g["impact_ratio"], g["share"], g["note"] or ""]
                )  # fmt: skip
            writer.writerow([category, measure, UNKNOWN, table["unknown"], "", "", "", "", ""])
    return out.getvalue()
