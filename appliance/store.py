"""The appliance store: the encrypted database, the subject keyring and the blob store.

One `Store` per process, opened once (the pool lives in it) and shared by
every request and job: `store.session()` gives a session whose vault seals
and opens personal fields with the subjects' keys.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from appliance.blobs import BlobStore
from appliance.database import cipher_connect, cipher_engine, database_path, rekey_database
from appliance.errors import DatabaseKeyError, DataDirError
from appliance.keyring import SubjectKeyring
from appliance.keys import BoxKeys, keys_dir, store_database_key, unseal
from appliance.personal import Vault, clear_blind_indexes
from appliance.records import Subject, SubjectKind, utcnow
from appliance.settings import Settings

log = logging.getLogger(__name__)

# ARCHITECTURE.md "Data at rest": nothing else lives at the data dir's top level.
DATA_DIR_ENTRIES = ("enclave.db", "blobs", "keys", "redis", "certs", "gnupg", "logs")


class Store:
    def __init__(self, data_dir: Path, keys: BoxKeys, pool_size: int = 4) -> None:
        self.data_dir = data_dir
        self.keys = keys
        self.engine = cipher_engine(data_dir, keys.database, pool_size=pool_size)
        self.keyring = SubjectKeyring(keys_dir(data_dir) / "subjects", keys.keyring)
        self.blobs = BlobStore(data_dir / "blobs", self.keyring)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def open(cls, settings: Settings, passphrase: str | None = None, pool_size: int = 4) -> Store:
        """Unseal with the key file (or the recovery passphrase) and open the database."""
        data_dir = settings.data_dir
        if not database_path(data_dir).exists():
            raise DataDirError(
                f"{data_dir} holds no Enclave database; create it with "
                f"`appliance init --data-dir {data_dir}`"
            )
        keys = unseal(data_dir, key_file=settings.unseal_key_file, passphrase=passphrase)
        keys = finish_database_rekey(data_dir, keys)
        return cls(data_dir, keys, pool_size=pool_size)

    def session(self) -> Session:
        session = self._sessions()
        session.info["vault"] = Vault(self.keyring, self.keys.blind_index)
        return session

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on any error."""
        with self.session() as session, session.begin():
            yield session

    @contextmanager
    def write_transaction(self) -> Iterator[Session]:
        """Like `transaction`, but holding SQLite's write lock from BEGIN (IMMEDIATE).

        For a transaction that reads and then writes while other processes write too
        (workers): in WAL mode a plain transaction that read before another process
        committed cannot become a writer and fails with "database is locked"; one that
        takes the lock first waits its turn instead (busy timeout).
        """
        with self.session() as session:
            session.connection(execution_options={"begin": "IMMEDIATE"})
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def new_subject(self, session: Session, kind: SubjectKind) -> Subject:
        """A subject row with a fresh data key (a key without a row is harmless; not vice versa)."""
        subject = Subject(kind=kind)
        session.add(subject)
        session.flush()
        self.keyring.create(subject.id)
        return subject

    def shred_subject(self, session: Session, subject_id: str) -> None:
        """Destroy the subject's data key: their fields and blobs become unreadable everywhere,
        backups included (PIPL Art. 47). Blind indexes go too, or they would still match."""
        self.keyring.destroy(subject_id)
        session.info["vault"].forget(subject_id)
        clear_blind_indexes(session, subject_id)
        subject = session.scalars(select(Subject).where(Subject.id == subject_id)).one()
        subject.shredded_at = utcnow()

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def close(self) -> None:
        self.engine.dispose()


def finish_database_rekey(data_dir: Path, keys: BoxKeys) -> BoxKeys:
    """If a database rekey stopped half-way, find which key opens the file and settle on it."""
    if keys.database_previous is None:
        return keys
    path = database_path(data_dir)
    try:
        cipher_connect(path, keys.database).close()
    except DatabaseKeyError:
        log.warning("database rekey was interrupted; completing it now")
        rekey_database(path, keys.database_previous, keys.database)
    return store_database_key(data_dir, keys, keys.database, previous=None)
