"""The SQLCipher database: one pooled engine per process, keyed with the raw key.

Every connection is set up by one function (Signal-Desktop's pattern): the
raw-key pragma first (no PBKDF2 per open: ~75 ms saved each time), a check
that the key fits, then WAL, foreign keys and secure delete. Connections
come from a pool and are reused across requests and jobs.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlcipher3.dbapi2 as sqlcipher
from sqlalchemy import Engine, create_engine
from sqlalchemy.pool import QueuePool

from appliance.errors import DatabaseKeyError

DB_NAME = "enclave.db"


def database_path(data_dir: Path) -> Path:
    return data_dir / DB_NAME


def _key_pragma(key: bytes) -> str:
    return f"PRAGMA key = \"x'{key.hex()}'\""


def _ensure_private_file(path: Path) -> None:
    """Create the db file 0600 before SQLite does; its WAL and SHM inherit the mode."""
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for suffix in ("", "-wal", "-shm"):
        part = path.with_name(path.name + suffix)
        if part.exists():
            os.chmod(part, 0o600)


def _configure(conn: Any) -> None:
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA secure_delete = ON")
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA synchronous = NORMAL")  # safe with WAL; a crash loses no committed txn


def cipher_connect(path: Path, key: bytes) -> Any:
    """A new SQLCipher connection with the raw key; DatabaseKeyError if the key does not fit."""
    _ensure_private_file(path)
    conn = sqlcipher.connect(str(path), check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA cipher_log_level = NONE")  # a wrong key is reported below, once, clearly
    conn.execute(_key_pragma(key))
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlcipher.DatabaseError:
        conn.close()
        raise DatabaseKeyError(
            f"database {path} does not open with this box's database key (wrong key, another "
            "box's file, or not an Enclave database); nothing was changed"
        ) from None
    _configure(conn)
    return conn


def plain_connect(path: Path) -> Any:
    """Plain SQLite with the same settings: only for the benchmark's baseline."""
    conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    _configure(conn)
    return conn


def make_engine(connect: Callable[[], Any], module: Any = sqlcipher, pool_size: int = 4) -> Engine:
    """A pooled engine over `connect`. isolation_level=None + SQLAlchemy's own BEGIN."""
    engine = create_engine(
        "sqlite://",
        creator=connect,
        module=module,
        poolclass=QueuePool,
        pool_size=pool_size,
        max_overflow=4,
        pool_pre_ping=False,
    )
    _use_explicit_begin(engine)
    return engine


def _use_explicit_begin(engine: Engine) -> None:
    """pysqlite's implicit transactions break SAVEPOINT and SERIALIZABLE reads; begin ourselves.

    (SQLAlchemy docs, "Serializable isolation / Savepoints / Transactional DDL".) A connection
    with execution option `begin="IMMEDIATE"` takes the write lock at BEGIN: needed where a
    transaction reads then writes while others write too (WAL would refuse the late upgrade).
    """
    from sqlalchemy import event

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("begin", "")
        conn.exec_driver_sql(f"BEGIN {mode}" if mode in ("IMMEDIATE", "EXCLUSIVE") else "BEGIN")


def cipher_engine(data_dir: Path, key: bytes, pool_size: int = 4) -> Engine:
    path = database_path(data_dir)
    return make_engine(lambda: cipher_connect(path, key), pool_size=pool_size)


def rekey_database(path: Path, old_key: bytes, new_key: bytes) -> None:
    """Re-encrypt the whole database under `new_key` (SQLCipher `PRAGMA rekey`).

    SQLCipher cannot rekey in WAL mode, so checkpoint and leave WAL first.
    """
    conn = cipher_connect(path, old_key)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.execute(f"PRAGMA rekey = \"x'{new_key.hex()}'\"")
    finally:
        conn.close()
    cipher_connect(path, new_key).close()  # proves the new key opens it, and restores WAL
