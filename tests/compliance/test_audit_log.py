"""The audit log: gap-free events, signed checkpoints every N events or M minutes, RFC 9162
proofs, and a verification that names the first stored entry anyone edited, deleted or
reordered (in process, and through `appliance audit verify`)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text

from appliance.records import AuditCheckpoint, AuditEvent, Role
from appliance.settings import AuditSettings, Settings
from appliance.store import Store
from compliance import audit, merkle, signing
from compliance.actors import Actor, Grant

APPLIANCE = str(Path(sys.executable).with_name("appliance"))

HR = Actor.staff("hr.east", 7, (Grant(Role.HR, "/1/2/"),), source_ip="10.0.0.7", mfa=True)
JOB = Actor.system("rq-42")


@pytest.fixture
def log(store: Store) -> Iterator[Store]:
    """The test store, sealing a checkpoint every 5 events; its gpg-agent stopped after."""
    audit.configure(store, AuditSettings(checkpoint_every=5, checkpoint_minutes=60))
    yield store
    signing.stop_agent(signing.gnupg_home(store.data_dir))


def fill(store: Store, count: int) -> list[int]:
    seqs = []
    for i in range(count):
        actor = HR if i % 3 else JOB
        seqs.append(
            audit.record(
                store,
                actor,
                "candidate.read" if i % 4 else "candidate.update",
                f"candidates:{i}",
                "screening",
                result=audit.RESULTS[i % 3],
                subject_ids=[f"subj{i:04d}", f"subj{i + 1:04d}"],
                fields=["phone", "name"],
            )
        )
    return seqs


def sql(store: Store, statement: str, **params: object) -> None:
    with store.engine.begin() as conn:
        conn.execute(text(statement), params)


def test_events_are_gap_free_and_their_bytes_are_their_leaves(log: Store) -> None:
    assert fill(log, 12) == list(range(12))
    with log.session() as session:
        events = session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
    for event in events:
        data = audit.event_bytes(event)
        assert audit.leaf_hash(data) == event.leaf_hash == merkle.leaf_hash(data)
        assert b" " not in data.replace(b"candidate.", b"")  # canonical: no spaces
    assert events[1].fields == ["name", "phone"]  # sorted field names, never values
    assert events[1].role == "hr" and events[0].role == "system"


def test_a_checkpoint_is_signed_every_n_events(log: Store) -> None:
    fill(log, 12)
    checkpoints = audit.list_checkpoints(log)
    assert [c.size for c in checkpoints] == [5, 10]
    leaves = audit.leaf_hashes(log, 12)
    signer = audit.signer_for(log)
    public_key = signer.export_public_key()
    for checkpoint in checkpoints:
        assert checkpoint.root == merkle.root_of(leaves[: checkpoint.size]).hex()
        assert checkpoint.time.endswith("Z")
        signed = audit.canonical(
            {"root": checkpoint.root, "size": checkpoint.size, "time": checkpoint.time}
        )
        # Stock gpg with nothing but the box's public key accepts the signature.
        assert signing.verify_with_public_key(public_key, signed, checkpoint.signature) == (
            signer.fingerprint
        )
        assert (
            signing.verify_with_public_key(public_key, signed + b" ", checkpoint.signature) is None
        )


def test_a_checkpoint_is_signed_when_minutes_pass_with_new_events(store: Store) -> None:
    audit.configure(store, AuditSettings(checkpoint_every=1000, checkpoint_minutes=1))
    try:
        fill(store, 3)
        assert audit.list_checkpoints(store) == []
        assert audit.checkpoint_if_due(store) is None  # the first event is seconds old
        first = audit.checkpoint_now(store)
        assert first is not None and first.size == 3
        assert audit.checkpoint_now(store) == first  # nothing new: the same checkpoint
        sql(store, "UPDATE audit_checkpoints SET at = datetime(at, '-2 minutes')")
        assert audit.checkpoint_if_due(store) is None  # minutes passed, but no new event
        fill(store, 1)  # ...and now one arrives: sealed at once
        assert [c.size for c in audit.list_checkpoints(store)] == [3, 4]
    finally:
        signing.stop_agent(signing.gnupg_home(store.data_dir))


def test_the_checkpoint_frontier_survives_a_new_process(log: Store, settings: Settings) -> None:
    """A second Store (another worker process) continues the tree from the stored leaves."""
    fill(log, 7)
    other = Store.open(settings, pool_size=1)
    try:
        audit.configure(other, AuditSettings(checkpoint_every=5))
        fill(other, 4)
        assert [c.size for c in audit.list_checkpoints(other)] == [5, 10]
        assert audit.verify_live(other).ok
    finally:
        other.close()


def test_concurrent_writers_get_gap_free_sequence_numbers(log: Store) -> None:
    errors: list[BaseException] = []

    def write() -> None:
        try:
            fill(log, 15)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with log.engine.connect() as conn:
        seqs = list(conn.execute(select(AuditEvent.seq).order_by(AuditEvent.seq)).scalars())
        times = list(conn.execute(select(AuditEvent.at).order_by(AuditEvent.seq)).scalars())
    assert seqs == list(range(60))
    assert times == sorted(times)  # time never goes back as seq rises: ranges are contiguous
    result = audit.verify_live(log)
    assert result.ok, result.problem


def test_verify_live_passes_and_counts_unsealed_events(log: Store) -> None:
    fill(log, 13)
    result = audit.verify_live(log)
    assert result.ok and result.problem is None
    assert (result.events, result.checkpoints, result.unsealed) == (13, 2, 3)
    assert "13 events" in result.summary() and "3 newest" in result.summary()


def _swap_contents(store: Store, a: int, b: int) -> None:
    columns = "at, actor, role, action, subject_ids, entity, fields, purpose, source_ip, result"
    with store.engine.begin() as conn:
        rows = {
            r.seq: r
            for r in conn.execute(
                text(f"SELECT seq, {columns}, leaf_hash FROM audit_events WHERE seq IN (:a, :b)"),  # noqa: S608
                {"a": a, "b": b},
            )
        }
        for target, source in ((a, rows[b]), (b, rows[a])):
            values = dict(source._mapping)
            values["seq"] = target
            sets = ", ".join(f"{c} = :{c}" for c in [*columns.split(", "), "leaf_hash"])
            conn.execute(text(f"UPDATE audit_events SET {sets} WHERE seq = :seq"), values)  # noqa: S608


def _forge(store: Store, seq: int) -> None:
    """Edit an event *and* recompute its leaf hash: only the signed checkpoint catches it."""
    sql(store, "UPDATE audit_events SET actor = 'mallory' WHERE seq = :s", s=seq)
    with store.session() as session, session.begin():
        event = session.get(AuditEvent, seq)
        assert event is not None
        event.leaf_hash = audit.leaf_hash(audit.event_bytes(event))


TAMPERING: dict[str, tuple[Callable[[Store], None], str]] = {
    "edit a column": (
        lambda s: sql(s, "UPDATE audit_events SET result = 'allowed' WHERE seq = 4"),
        "event 4: content does not match its leaf hash",
    ),
    "edit the field names": (
        lambda s: sql(s, """UPDATE audit_events SET fields = '["name"]' WHERE seq = 2"""),
        "event 2: content does not match its leaf hash",
    ),
    "delete a row": (
        lambda s: sql(s, "DELETE FROM audit_events WHERE seq = 6"),
        "event 6 missing (gap",
    ),
    "swap two rows' contents": (
        lambda s: _swap_contents(s, 3, 8),
        "event 3: content does not match its leaf hash",
    ),
    "move a row to the end": (
        lambda s: sql(s, "UPDATE audit_events SET seq = 99 WHERE seq = 7"),
        "event 7 missing (gap",
    ),
    "edit and rehash": (
        lambda s: _forge(s, 1),
        "checkpoint size 5: root mismatch",
    ),
    "delete the newest rows": (
        lambda s: sql(s, "DELETE FROM audit_events WHERE seq >= 9"),
        "checkpoint size 10: the log holds only 9 events",
    ),
    "edit a checkpoint's time": (
        lambda s: sql(s, "UPDATE audit_checkpoints SET at = datetime(at, '-1 day') WHERE size = 5"),
        "checkpoint size 5: signature does not verify",
    ),
}


@pytest.mark.parametrize("how", list(TAMPERING))
def test_tampering_is_detected_and_the_first_bad_entry_named(log: Store, how: str) -> None:
    fill(log, 12)
    assert audit.verify_live(log).ok
    tamper, expected = TAMPERING[how]
    tamper(log)
    result = audit.verify_live(log)
    assert not result.ok
    assert result.problem is not None and result.problem.startswith(expected), result.problem


def _cli_verify(settings: Settings) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    env.update(ENCLAVE_CONFIG="", ENCLAVE_SECRETS="/nonexistent/secrets.toml")
    return subprocess.run(
        [APPLIANCE, "audit", "verify", "--data-dir", str(settings.data_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "how", ["edit a column", "delete a row", "swap two rows' contents", "move a row to the end"]
)
def test_appliance_audit_verify_fails_naming_the_first_bad_entry(
    log: Store, settings: Settings, how: str
) -> None:
    fill(log, 12)
    ok = _cli_verify(settings)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("ok: 12 events and 2 signed checkpoints hold")
    tamper, expected = TAMPERING[how]
    tamper(log)
    bad = _cli_verify(settings)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert bad.stdout.startswith(f"FAILED: {expected}"), bad.stdout


def test_inclusion_and_consistency_proofs_from_the_live_log(log: Store) -> None:
    fill(log, 12)
    latest = audit.checkpoint_now(log)
    assert latest is not None and latest.size == 12
    for seq in range(12):
        proof = audit.inclusion_proof(log, seq)
        assert proof.verify() and proof.tree_size == 12
        assert proof.root.hex() == latest.root
    early = audit.inclusion_proof(log, 3, checkpoint_size=5)
    assert early.verify() and early.tree_size == 5
    wrong = audit.InclusionProof(3, 12, early.leaf_hash, early.path, bytes.fromhex(latest.root))
    assert not wrong.verify()
    for first in (5, 10):
        consistency = audit.consistency_proof(log, first)
        assert consistency.verify() and consistency.second == 12
        assert consistency.as_dict()["kind"] == "consistency"
    with pytest.raises(audit.AuditIntegrityError):
        audit.consistency_proof(log, 7)  # no checkpoint of that size


def test_search_filters_by_actor_subject_action_result_and_time(log: Store) -> None:
    fill(log, 12)
    by_actor = audit.search_events(log, audit.EventQuery(actor="job:rq-42"))
    assert [e.seq for e in by_actor] == [9, 6, 3, 0]
    by_subject = audit.search_events(log, audit.EventQuery(subject_id="subj0005"))
    assert [e.seq for e in by_subject] == [5, 4]
    by_action = audit.search_events(log, audit.EventQuery(action="candidate.update"))
    assert [e.seq for e in by_action] == [8, 4, 0]
    denied = audit.search_events(log, audit.EventQuery(result="denied"))
    assert [e.seq for e in denied] == [10, 7, 4, 1]
    with log.session() as session:
        t5 = session.scalars(select(AuditEvent.at).where(AuditEvent.seq == 5)).one()
        t8 = session.scalars(select(AuditEvent.at).where(AuditEvent.seq == 8)).one()
    window = audit.search_events(log, audit.EventQuery(start=t5, end=t8))
    assert [e.seq for e in window] == [7, 6, 5]
    page = audit.search_events(log, audit.EventQuery(before_seq=5, limit=2))
    assert [e.seq for e in page] == [4, 3]


def test_a_checkpoint_that_cannot_be_signed_does_not_fail_the_read(
    log: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """The event is committed first (fail closed); sealing waits for the next try."""
    fill(log, 4)
    gnupg = signing.gnupg_home(log.data_dir)
    signing.stop_agent(gnupg)
    signing._signers.clear()
    os.rename(gnupg, gnupg.with_name("gnupg.away"))
    gnupg.write_text("not a directory")
    try:
        assert audit.record(log, HR, "candidate.read", "candidates:1", "screening") == 4
        assert audit.list_checkpoints(log) == []
        assert "audit checkpoint after event 4 failed" in caplog.text
    finally:
        gnupg.unlink()
        os.rename(gnupg.with_name("gnupg.away"), gnupg)
        signing._signers.clear()
    assert audit.record(log, HR, "candidate.read", "candidates:1", "screening") == 5
    assert [c.size for c in audit.list_checkpoints(log)] == [6]


def test_the_box_key_is_protected_by_the_box_keys(log: Store) -> None:
    """The private key in gnupg/ does not sign with any other passphrase."""
    fill(log, 5)
    home = signing.gnupg_home(log.data_dir)
    assert (home.stat().st_mode & 0o777) == 0o700
    signer = audit.signer_for(log)
    import gnupg

    gpg = gnupg.GPG(gnupghome=str(signer._gpg_home))
    attempt = gpg.sign(b"x", keyid=signer.fingerprint, passphrase="wrong", detach=True)
    assert not str(attempt).startswith("-----BEGIN PGP SIGNATURE-----")
    uids = [uid for key in gpg.list_keys() for uid in key["uids"]]
    assert len(uids) == 1 and uids[0].startswith("Enclave HR appliance <box-")
    assert uids[0].endswith("@enclave.invalid>")


def test_the_box_key_works_from_a_data_dir_too_deep_for_a_socket(short_tmp: Path) -> None:
    """gpg-agent's socket path must fit in 107 bytes: a deep data dir goes through an alias."""
    from appliance.keys import BoxKeys

    deep = short_tmp / ("d" * 60) / ("e" * 60)
    keys = BoxKeys(*(os.urandom(32) for _ in range(5)))
    signer = signing.BoxSigner(deep, keys)
    try:
        assert len(str(deep / "gnupg" / "S.gpg-agent.browser")) > 107
        signature = signer.sign_detached(b"checkpoint")
        assert signer.verify_detached(b"checkpoint", signature)
        assert not signer.verify_detached(b"checkpoinT", signature)
        assert (deep / "gnupg" / "pubring.kbx").exists()  # the files live in the data dir
    finally:
        signer.stop_agent()


def test_checkpoint_rows_hold_what_the_signature_covers(log: Store) -> None:
    fill(log, 5)
    with log.session() as session:
        row = session.scalars(select(AuditCheckpoint)).one()
    checkpoint = audit.list_checkpoints(log)[0]
    assert checkpoint.time == audit.format_time(row.at)
    assert audit.signer_for(log).verify_detached(checkpoint.signed_bytes(), row.signature)
