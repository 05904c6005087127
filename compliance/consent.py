"""Which consents hold for a person now (issue #5 reads them; the register in
`compliance.register` writes them).

The latest row per purpose decides: a later refusal or a withdrawal ends an
earlier consent (PIPL Art. 15: withdrawal at any time; it does not undo what was
lawfully done before it).

A consent is informed only about the text the person saw (PIPL Art. 14): once the
DPO publishes a new notice text for a purpose, a consent given under any text that
is no longer current stops holding, and the processing it covered pauses until the
person consents again. A purpose no notice text was ever published for (a box
before the register was used) falls back to the latest answer alone.

Pipelines call `holds` before each step *and again right before writing its
results*: a withdrawal may land while a job runs, and what it covered must not be
written after it.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

# Imported for its side effect too: the profile guard that refuses a forbidden feature's
# results at flush time is registered wherever consent is checked.
from appliance.records import Consent, ConsentPurpose, NoticeText
from compliance import profiles as _profiles  # noqa: F401


def latest(db: Session, subject_id: str, purpose: ConsentPurpose) -> Consent | None:
    return db.scalars(
        select(Consent)
        .where(Consent.subject_id == subject_id, Consent.purpose == purpose)
        .order_by(Consent.given_at.desc(), Consent.id.desc())
        .limit(1)
    ).first()


def current_text_hashes(db: Session, purpose: str) -> set[str] | None:
    """The sha256 of every current notice text of `purpose` (one per language); None when
    no text was ever published for it."""
    rows = db.execute(
        select(NoticeText.sha256, NoticeText.retired_at).where(NoticeText.purpose == purpose)
    ).all()
    if not rows:
        return None
    return {sha for sha, retired in rows if retired is None}


def is_current(db: Session, consent: Consent) -> bool:
    """Whether `consent` was given under a notice text that is still current."""
    hashes = current_text_hashes(db, str(consent.purpose))
    return hashes is None or consent.text_sha256 in hashes


def holds(db: Session, subject_id: str, purpose: ConsentPurpose) -> bool:
    """The person's latest answer for `purpose` was yes, has not been withdrawn, and was
    given under the notice text in force."""
    row = latest(db, subject_id, purpose)
    return row is not None and row.granted and row.withdrawn_at is None and is_current(db, row)
