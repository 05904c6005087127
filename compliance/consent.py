"""Which consents hold for a person now (issue #5 reads them; issue #8 builds the register).

The latest row per purpose decides: a later refusal or a withdrawal ends an
earlier consent (PIPL Art. 15: withdrawal at any time; it does not undo what was
lawfully done before it).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.records import Consent, ConsentPurpose


def latest(db: Session, subject_id: str, purpose: ConsentPurpose) -> Consent | None:
    return db.scalars(
        select(Consent)
        .where(Consent.subject_id == subject_id, Consent.purpose == purpose)
        .order_by(Consent.given_at.desc(), Consent.id.desc())
        .limit(1)
    ).first()


def holds(db: Session, subject_id: str, purpose: ConsentPurpose) -> bool:
    """The person's latest answer for `purpose` was yes and has not been withdrawn."""
    row = latest(db, subject_id, purpose)
    return row is not None and row.granted and row.withdrawn_at is None
