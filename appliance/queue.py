"""The queue connection: redis-server on a unix socket in `<data dir>/redis/`, with a password.

Redis is the queue only (ARCHITECTURE.md): jobs carry record ids, never
personal data. The password is derived from the master key, so every process
that can unseal the box can reach the queue and nothing else needs a copy.
"""

from __future__ import annotations

import re
from pathlib import Path

from redis import Redis

from appliance import crypto
from appliance.keys import BoxKeys

QUEUES = ("realtime", "analysis", "documents", "outbox", "maintenance")
WORKER_TTL = 30
"""Seconds; a worker heartbeats every WORKER_TTL - 15 s. /healthz trusts a heartbeat for 2x."""
_ID = re.compile(r"[0-9a-f]{32}")


def socket_path(data_dir: Path) -> Path:
    return data_dir / "redis" / "redis.sock"


def redis_password(keys: BoxKeys) -> str:
    return crypto.derive_key(keys.master, b"enclave:redis-password").hex()


def connect(data_dir: Path, keys: BoxKeys) -> Redis:
    return Redis(
        unix_socket_path=str(socket_path(data_dir)),
        password=redis_password(keys),
        socket_timeout=5,
        socket_connect_timeout=2,
    )


def redis_config(data_dir: Path, keys: BoxKeys) -> str:
    """redis.conf for the box: no TCP port, AOF on, the password, files under redis/."""
    folder = data_dir / "redis"
    return "\n".join(
        [
            "port 0",
            f"unixsocket {socket_path(data_dir)}",
            "unixsocketperm 700",
            f"requirepass {redis_password(keys)}",
            f"dir {folder}",
            "appendonly yes",
            "appendfsync everysec",
            "save ''",
            "protected-mode yes",
            "daemonize no",
            f"logfile {data_dir / 'logs' / 'redis.log'}",
            "loglevel notice",
            "",
        ]
    )


def check_payload(args: tuple[object, ...]) -> None:
    """Jobs carry ids only: ints (row ids) or 32-hex ids (subjects, blobs). Nothing else."""
    for arg in args:
        if isinstance(arg, bool) or not (
            isinstance(arg, int) or (isinstance(arg, str) and _ID.fullmatch(arg))
        ):
            raise TypeError(
                f"job arguments must be record ids (int or 32-hex id), not {type(arg).__name__}; "
                "pass the id and let the job read the record through the store"
            )
