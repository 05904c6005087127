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


def redis_worker_password(keys: BoxKeys, worker: str) -> str:
    """A worker host's own Redis password (scale-out): one per host, so one can be shut out."""
    return crypto.derive_key(keys.master, b"enclave:redis-worker:" + worker.encode()).hex()


def redis_tls_config(
    keys: BoxKeys, certs_dir: Path, bind: str, port: int, workers: tuple[str, ...]
) -> str:
    """Extra redis.conf lines for scale-out: a TLS port that demands a client certificate
    of the box's CA (`appliance certs worker NAME`), and one ACL user per worker host.

    Worker users reach rq's keys only and no admin or dangerous command; the firewall
    opens the port to the worker hosts alone. Append to `redis_config`'s text.
    """
    lines = [
        f"bind {bind}",
        f"tls-port {port}",
        f"tls-cert-file {certs_dir / 'server.pem'}",
        f"tls-key-file {certs_dir / 'server.key'}",
        f"tls-ca-cert-file {certs_dir / 'ca.pem'}",
        "tls-auth-clients yes",
        'tls-protocols "TLSv1.2 TLSv1.3"',
    ]
    for worker in workers:
        password = redis_worker_password(keys, worker)
        lines.append(
            f"user {worker} on >{password} ~rq:* &* +@all -@admin -@dangerous "
            "+client|setname +client|getname +client|id +info"
        )
    return "\n".join([*lines, ""])


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
