"""`appliance doctor`: is this box healthy, and if not, what should IT do (issue 9, item 5).

Each check answers ok, warn or fail with one line a person can act on; the command
exits 0 when all are ok, 1 when any warns, 2 when any fails (`--json` for
monitoring). Checks: the keys unseal and the database opens, disk space of the data
dir, the TLS certificates' expiry, Redis answers, a live worker serves each queue,
the model weights match their pinned sha256, the clock is NTP-synchronised (warn
when that cannot be confirmed: audit timestamps and TOTP depend on it), and the
newest backup's age. Nothing here reads personal data.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from appliance.settings import Settings

State = Literal["ok", "warn", "fail"]
EXIT_CODES: dict[State, int] = {"ok": 0, "warn": 1, "fail": 2}
DEFAULT_BACKUP_DIR = Path("/var/backups/enclave")
"""Where the backup role's timer writes (ansible/roles/backup/defaults/main.yml)."""
DISK_FAIL_FREE, DISK_WARN_FREE = 0.05, 0.15
CERT_WARN_DAYS = 30
BACKUP_WARN, BACKUP_FAIL = timedelta(days=2), timedelta(days=7)
"""The timer runs daily: one missed run warns, a week without a backup fails."""


@dataclass(frozen=True)
class Check:
    name: str
    state: State
    detail: str


@dataclass
class Context:
    """What several checks share: the store once opened, Redis once connected."""

    settings: Settings
    backup_dir: Path
    store: Any = None
    redis: Any = None
    now: datetime = datetime.now(UTC)


def check_keys(ctx: Context) -> Check:
    from appliance.errors import ApplianceError
    from appliance.store import Store

    try:
        ctx.store = Store.open(ctx.settings, pool_size=1)
        ctx.store.ping()
    except ApplianceError as exc:
        return Check("keys", "fail", str(exc))
    except Exception as exc:  # a database that does not open, whatever the cause
        return Check("keys", "fail", f"the database does not open: {type(exc).__name__}: {exc}")
    return Check("keys", "ok", f"unsealed with {ctx.settings.unseal_key_file}; database opens")


def check_disk(ctx: Context) -> Check:
    folder = ctx.settings.data_dir if ctx.settings.data_dir.exists() else Path("/")
    usage = shutil.disk_usage(folder)
    free = usage.free / usage.total
    detail = f"{usage.free / 2**30:.1f} GiB free of {usage.total / 2**30:.1f} GiB ({free:.0%})"
    if free < DISK_FAIL_FREE:
        return Check("disk", "fail", f"{detail} in {folder}: free space now; recordings stop")
    if free < DISK_WARN_FREE:
        return Check("disk", "warn", f"{detail} in {folder}: plan more space")
    return Check("disk", "ok", detail)


def check_certificates(ctx: Context) -> Check:
    from cryptography import x509

    folder = ctx.settings.data_dir / "certs"
    found = [folder / name for name in ("server.pem", "ca.pem") if (folder / name).exists()]
    if not found:
        return Check("certificates", "warn", f"no certificate in {folder} yet (`appliance run`)")
    worst: Check | None = None
    for path in found:
        cert = x509.load_pem_x509_certificates(path.read_bytes())[0]
        left = cert.not_valid_after_utc - ctx.now
        if left <= timedelta(0):
            return Check(
                "certificates",
                "fail",
                f"{path.name} expired on {cert.not_valid_after_utc:%Y-%m-%d}",
            )
        if left < timedelta(days=CERT_WARN_DAYS) and worst is None:
            worst = Check(
                "certificates", "warn", f"{path.name} expires in {left.days} days; renew it"
            )
    names = ", ".join(p.name for p in found)
    return worst or Check("certificates", "ok", f"{names} valid for {CERT_WARN_DAYS}+ days")


def check_redis(ctx: Context) -> Check:
    from appliance import queue

    if ctx.store is None:
        return Check("redis", "fail", "not checked: the keys do not unseal (see keys)")
    ctx.redis = queue.connect(ctx.settings.data_dir, ctx.store.keys)
    try:
        ctx.redis.ping()
    except Exception as exc:  # any failure to answer
        ctx.redis = None
        where = queue.socket_path(ctx.settings.data_dir)
        return Check("redis", "fail", f"no answer on {where}: {type(exc).__name__}; start redis")
    return Check("redis", "ok", "answers on its unix socket")


def check_workers(ctx: Context) -> Check:
    from appliance.metrics import queue_metrics

    if ctx.redis is None:
        return Check("workers", "fail", "not checked: redis does not answer")
    workers = next(
        m
        for m in queue_metrics(ctx.redis, ctx.settings.workers.queues)
        if m.name == "enclave_queue_workers"
    )
    missing = [labels["queue"] for _, labels, value in workers.samples if value == 0]
    if missing:
        return Check("workers", "fail", f"no live worker for queue(s) {', '.join(missing)}")
    return Check("workers", "ok", f"every queue has a live worker ({len(workers.samples)})")


def check_models(ctx: Context) -> Check:
    from models import registry
    from models.specs import MODELS

    registry.forget_digests()  # rehash: a file changed since the last run must show
    problems = []
    for spec in MODELS:
        try:
            checks = registry.check(spec, ctx.settings.ai.models_dir)
        except registry.ModelUnavailable as exc:
            problems += [f"{spec.name}: {exc}"] if spec.required else []
            continue
        for item in checks:
            if item.state == "changed" or (item.state == "missing" and spec.required):
                problems.append(f"{spec.name}: {item.name} {item.state}")
        if spec.required and not checks:
            problems.append(f"{spec.name}: no pinned files")
    if problems:
        return Check("models", "fail", "; ".join(problems) + f"; {registry.FIX}")
    return Check("models", "ok", "every installed weight file matches its pinned sha256")


def ntp_synchronised(run: Callable[[list[str]], str | None]) -> bool | None:
    """True/False when timedatectl or chronyc can tell; None when neither can."""
    answer = run(["timedatectl", "show", "--property=NTPSynchronized", "--value"])
    if answer is not None and answer.strip() in ("yes", "no"):
        return answer.strip() == "yes"
    answer = run(["chronyc", "tracking"])
    if answer is not None and "Leap status" in answer:
        return "Leap status     : Normal" in answer or "Leap status : Normal" in answer
    return None


def _run_quietly(argv: list[str]) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)  # noqa: S603
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def check_clock(ctx: Context, run: Callable[[list[str]], str | None] = _run_quietly) -> Check:
    synced = ntp_synchronised(run)
    if synced is None:
        return Check("clock", "warn", "cannot confirm NTP sync (no timedatectl or chronyc answer)")
    if not synced:
        return Check("clock", "warn", "the clock is not NTP-synchronised; audit times drift")
    return Check("clock", "ok", "NTP-synchronised")


def check_backups(ctx: Context) -> Check:
    backups = sorted(ctx.backup_dir.glob("enclave-*.bak"), key=lambda p: p.stat().st_mtime)
    if not backups:
        return Check("backups", "warn", f"no backup in {ctx.backup_dir} (`appliance backup`)")
    newest = backups[-1]
    age = ctx.now - datetime.fromtimestamp(newest.stat().st_mtime, UTC)
    detail = f"newest {newest.name}, {age.total_seconds() / 3600:.0f} h old"
    if age > BACKUP_FAIL:
        return Check("backups", "fail", f"{detail}: check enclave-backup.timer")
    if age > BACKUP_WARN:
        return Check("backups", "warn", f"{detail}: the last run may have failed")
    return Check("backups", "ok", detail)


CHECKS: tuple[Callable[[Context], Check], ...] = (
    check_keys,
    check_disk,
    check_certificates,
    check_redis,
    check_workers,
    check_models,
    check_clock,
    check_backups,
)


def run_checks(settings: Settings, backup_dir: Path = DEFAULT_BACKUP_DIR) -> list[Check]:
    ctx = Context(settings, backup_dir, now=datetime.now(UTC))
    try:
        return [check(ctx) for check in CHECKS]
    finally:
        if ctx.store is not None:
            ctx.store.close()


def overall(checks: list[Check]) -> State:
    states = {c.state for c in checks}
    return "fail" if "fail" in states else "warn" if "warn" in states else "ok"


def as_json(checks: list[Check]) -> dict[str, Any]:
    return {"status": overall(checks), "checks": [asdict(c) for c in checks]}
