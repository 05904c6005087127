"""Personal fields sealed per subject: shredding one subject leaves everyone else intact."""

from __future__ import annotations

from sqlalchemy import select

from appliance.personal import UNAVAILABLE
from appliance.records import Candidate, Comment, Subject
from appliance.store import Store
from tests.appliance.helpers import add_candidate, org_and_job


def _two_candidates(store: Store) -> tuple[int, int, str]:
    with store.transaction() as session:
        unit, job, user = org_and_job(session)
        gone = add_candidate(
            store,
            session,
            unit,
            job,
            user,
            "司马嘉怡",
            "138 0000 7001",
            "sima@example.cn",
            "希望调岗到儿科",
        )
        kept = add_candidate(
            store,
            session,
            unit,
            job,
            user,
            "Oliver Brandt",
            "+86 138-0000-7002",
            "oliver.b@example.com",
            "Good CPR answer",
        )
        return gone.id, kept.id, gone.subject_id


def _find_by_phone(store: Store, phone: str) -> list[int]:
    with store.session() as session:
        index = Candidate.phone.index_of(session.info["vault"], phone)
        return list(session.scalars(select(Candidate.id).where(Candidate.phone_index == index)))


def test_values_read_back_and_blind_index_finds_normalised_phone(store: Store) -> None:
    """A phone typed as +86 138-0000-7002 finds the candidate stored as 138 0000 7002 form."""
    _gone, kept, _ = _two_candidates(store)
    assert _find_by_phone(store, "13800007002") == [kept]
    assert _find_by_phone(store, "(+86) 138 0000 7002") == [kept]


def test_shredded_subject_reads_unavailable_others_untouched(store: Store) -> None:
    """After key destruction the subject's fields read UNAVAILABLE (no crash, no garbage),
    the other subject reads exactly as before, and dedupe by phone still works for them."""
    gone, kept, gone_subject = _two_candidates(store)
    with store.transaction() as session:
        store.shred_subject(session, gone_subject)

    with store.session() as session:
        shredded = session.get(Candidate, gone)
        other = session.get(Candidate, kept)
        assert shredded is not None and other is not None
        assert shredded.name is UNAVAILABLE
        assert shredded.phone is UNAVAILABLE and shredded.email is UNAVAILABLE
        assert str(shredded.name) == "[unavailable]"
        comments = {c.subject_id: c.body for c in session.scalars(select(Comment))}
        assert comments[gone_subject] is UNAVAILABLE
        assert (other.name, other.phone, other.email) == (
            "Oliver Brandt",
            "+86 138-0000-7002",
            "oliver.b@example.com",
        )
        assert comments[other.subject_id] == "Good CPR answer"
        subject = session.get(Subject, gone_subject)
        assert subject is not None and subject.shredded_at is not None

    assert _find_by_phone(store, "13800007002") == [kept]
    assert _find_by_phone(store, "13800007001") == [], "a shredded phone must not match"


def test_a_new_session_after_shredding_does_not_use_a_cached_key(store: Store) -> None:
    """Keys are cached per session only: a session opened before shredding, reused after,
    and a brand-new one both see UNAVAILABLE once the key is gone."""
    gone, _kept, gone_subject = _two_candidates(store)
    early = store.session()
    assert early.get(Candidate, gone).name == "司马嘉怡"  # type: ignore[union-attr]
    store.keyring.destroy(gone_subject)
    early.close()
    with store.session() as session:
        assert session.get(Candidate, gone).name is UNAVAILABLE  # type: ignore[union-attr]


def test_sealed_values_are_bound_to_their_subject(store: Store) -> None:
    """A sealed value copied onto another subject's row fails to open (it is not garbage)."""
    import pytest

    from appliance.errors import IntegrityError

    gone, kept, _ = _two_candidates(store)
    with store.transaction() as session:
        a, b = session.get(Candidate, gone), session.get(Candidate, kept)
        assert a is not None and b is not None
        b.name_sealed = a.name_sealed
    with store.session() as session, pytest.raises(IntegrityError):
        _ = session.get(Candidate, kept).name  # type: ignore[union-attr]
