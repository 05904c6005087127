"""The SQLCipher file: encrypted on disk, opens only with the key, rekeys both ways."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select, text

from appliance import crypto
from appliance.database import cipher_connect, database_path
from appliance.errors import DatabaseKeyError
from appliance.records import Candidate, Comment
from appliance.settings import Settings
from appliance.store import Store
from tests.appliance.helpers import add_candidate, org_and_job
from tests.conftest import PASSPHRASE

PEOPLE = [
    ("欧阳慕青", "13800009871", "ouyang.muqing@example.cn", "夜班时主动协助抢救，沟通细致"),
    ("Harriet Quimby-Lang", "13800005432", "harriet.ql@example.com", "Strong ICU triage answer"),
]


def _fill(store: Store) -> None:
    with store.transaction() as session:
        unit, job, user = org_and_job(session)
        for name, phone, email, comment in PEOPLE:
            add_candidate(store, session, unit, job, user, name, phone, email, comment)


def _files(data_dir: Path) -> dict[str, bytes]:
    db = database_path(data_dir)
    return {p.name: p.read_bytes() for p in (db, db.with_name(db.name + "-wal")) if p.exists()}


def test_personal_strings_never_reach_the_database_file_or_wal(store: Store) -> None:
    """No inserted personal string (in any of its encodings) is in enclave.db or its WAL."""
    _fill(store)
    files = _files(store.data_dir)
    assert "enclave.db-wal" in files, "the WAL should hold the fresh writes while pooled"
    needles = [s for person in PEOPLE for s in person] + ["138-0000", "主管护师"]
    for name, content in files.items():
        for needle in needles:
            for encoded in (needle.encode("utf-8"), needle.encode("utf-16-le")):
                assert encoded not in content, f"{needle!r} found in {name}"
    with store.engine.connect() as conn:
        conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    assert all(n.encode() not in database_path(store.data_dir).read_bytes() for n, *_ in PEOPLE)


def test_plain_sqlite_cannot_open_the_file(store: Store) -> None:
    """Python's sqlite3 sees no database at all, not even the table names."""
    _fill(store)
    conn = sqlite3.connect(database_path(store.data_dir))
    with pytest.raises(sqlite3.DatabaseError, match="not a database"):
        conn.execute("SELECT name FROM sqlite_master").fetchall()
    conn.close()


def test_the_key_opens_it_and_reads_back(store: Store, settings: Settings) -> None:
    """A fresh process-like open with the key file reads every personal field back."""
    _fill(store)
    store.close()
    reopened = Store.open(settings)
    with reopened.session() as session:
        got = {(c.name, c.phone, c.email) for c in session.scalars(select(Candidate))}
        bodies = {c.body for c in session.scalars(select(Comment))}
    reopened.close()
    assert got == {(n, p, e) for n, p, e, _ in PEOPLE}
    assert bodies == {c for *_, c in PEOPLE}


def test_a_wrong_key_gives_the_clear_error(store: Store) -> None:
    """A wrong raw key fails with DatabaseKeyError naming the file, not a SQLite traceback."""
    _fill(store)
    with pytest.raises(DatabaseKeyError, match="does not open with this box's database key"):
        cipher_connect(database_path(store.data_dir), crypto.random_key())


def test_database_wal_and_shm_are_private(store: Store) -> None:
    """enclave.db, -wal and -shm are mode 0600 (service user only)."""
    _fill(store)
    db = database_path(store.data_dir)
    parts = [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
    for part in parts:
        assert part.exists(), part
        assert stat.S_IMODE(part.stat().st_mode) == 0o600, part


def test_connections_are_pooled_not_opened_per_use(store: Store) -> None:
    """Sequential sessions reuse one DBAPI connection (opening one costs a key setup)."""
    seen = set()
    for _ in range(5):
        with store.session() as session:
            raw = session.connection().connection.driver_connection
            seen.add(id(raw))
    assert len(seen) == 1


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ENCLAVE_CONFIG": ""},
    )


def test_rekey_round_trip_master_and_database(
    store: Store, settings: Settings, short_tmp: Path
) -> None:
    """`appliance rekey --database` changes master, key file and database key; data survives;
    the old key file, old passphrase and old database key no longer open anything."""
    _fill(store)
    old_db_key = store.keys.database
    old_key_file = settings.unseal_key_file.read_bytes()
    store.close()
    new_pass = short_tmp / "new-pass"
    new_pass.write_text("NEW-PASS-PHRASE-0002")
    result = _cli(
        "rekey",
        "--database",
        "--data-dir",
        str(settings.data_dir),
        "--passphrase-file",
        str(new_pass),
    )
    assert result.returncode == 0, result.stderr
    assert settings.unseal_key_file.read_bytes() != old_key_file

    reopened = Store.open(settings)
    with reopened.session() as session:
        assert {c.name for c in session.scalars(select(Candidate))} == {p[0] for p in PEOPLE}
    assert reopened.keys.database != old_db_key
    assert reopened.keys.database_previous is None
    reopened.close()
    with pytest.raises(DatabaseKeyError):
        cipher_connect(database_path(settings.data_dir), old_db_key)

    from appliance.errors import WrongKeyError
    from appliance.keys import unseal

    with pytest.raises(WrongKeyError):
        unseal(settings.data_dir, passphrase=PASSPHRASE)
    assert unseal(settings.data_dir, passphrase="new-pass-phrase-0002").database != old_db_key


def test_an_interrupted_database_rekey_is_finished_on_next_open(
    store: Store, settings: Settings
) -> None:
    """Keystore says new key (old kept as previous) but PRAGMA rekey never ran: open finishes."""
    from appliance.keys import store_database_key

    _fill(store)
    store.close()
    new_key = crypto.random_key()
    store_database_key(settings.data_dir, store.keys, new_key, previous=store.keys.database)
    reopened = Store.open(settings)
    assert reopened.keys.database == new_key and reopened.keys.database_previous is None
    with reopened.session() as session:
        assert len(session.scalars(select(Candidate)).all()) == len(PEOPLE)
    reopened.close()
    cipher_connect(database_path(settings.data_dir), new_key).close()
