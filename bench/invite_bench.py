"""10,000 interview invitations to a local SMTP server (issue 6, "Must show": goal <= 60 s).

What is timed, on a fresh data dir with the candidates already imported:

- invite: `workers.invitations.create_invitations` for all applications at once (the
  portal's POST /invitations): sessions, tokens, invitations and outbox rows in one
  transaction, one audit event, then the outbox jobs on redis (ids only);
- send: a real rq worker (burst, in this process, as `appliance run` starts it) works the
  outbox queue: per batch of `invitations.batch_size` messages it claims them, reads
  names and addresses through the gate in one call (one audit event per batch), composes
  text + HTML + ICS, and sends them over ONE SMTP session to a local aiosmtpd server.

The SMTP server (aiosmtpd) runs in a process of its own and counts what it receives;
the run fails unless every message arrived and is `sent` in the database.
Run: `.venv/bin/python bench/invite_bench.py [--count 10000] [--batch 200]`.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from appliance.datadir import init_data_dir  # noqa: E402
from appliance.queue import connect, redis_config, socket_path  # noqa: E402
from appliance.records import (  # noqa: E402
    Application,
    Candidate,
    InterviewPlan,
    InterviewQuestion,
    Job,
    MessageStatus,
    OrgKind,
    OrgUnit,
    OutboxMessage,
    Role,
    RoleAssignment,
    Stage,
    SubjectKind,
    User,
    utcnow,
)
from appliance.settings import load_settings  # noqa: E402
from compliance.actors import Actor, Grant  # noqa: E402
from compliance.signing import stop_agent  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "invite.txt"


SMTP_SERVER = """
import sys
from aiosmtpd.controller import Controller

class Counter:
    count = 0
    size = 0

    async def handle_DATA(self, server, session, envelope):
        Counter.count += 1
        Counter.size += len(envelope.content)
        return "250 OK"

controller = Controller(Counter(), hostname="127.0.0.1", port=int(sys.argv[1]))
controller.start()
print("ready", flush=True)
sys.stdin.readline()
controller.stop()
print(Counter.count, Counter.size, flush=True)
"""


class SmtpServer:
    """A local aiosmtpd server in its own process (as the hospital's relay is another
    machine: it does not share this process's CPU), counting what it receives."""

    def __init__(self, port: int) -> None:
        self.proc = subprocess.Popen(  # noqa: S603 (this interpreter, our own script)
            [sys.executable, "-c", SMTP_SERVER, str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the SMTP server did not start")

    def stop(self) -> tuple[int, int]:
        out, _err = self.proc.communicate("\n", timeout=30)
        count, size = out.split()
        return int(count), int(size)


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def seed(store: Any, count: int) -> tuple[Actor, list[int]]:
    with store.transaction() as db:
        unit = OrgUnit(kind=OrgKind.HQ, name="总院", code="HQ")
        db.add(unit)
        db.flush()
        unit.place_under(None)
        user = User(username="hr.bench", display_name="HR", password_hash="x")  # noqa: S106
        db.add(user)
        db.flush()
        db.add(RoleAssignment(user_id=user.id, role=Role.HR, org_unit_id=unit.id))
        job = Job(
            org_unit_id=unit.id,
            title="注册护士",
            requirements={"education": "大专", "licences": ["护士执业证书"], "years": 1},
        )
        plan = InterviewPlan(name="AI 视频面试", mode="async", round_no=1)
        plan.questions = [InterviewQuestion(position=0, text="为什么选择护理？")]
        job.plans.append(plan)
        db.add(job)
        actor = Actor.staff(user.username, user.id, (Grant(Role.HR, unit.path),), mfa=True)
    apps: list[int] = []
    for start in range(0, count, 500):
        with store.transaction() as db:
            batch = []
            for i in range(start, min(start + 500, count)):
                subject = store.new_subject(db, SubjectKind.CANDIDATE)
                candidate = Candidate(subject_id=subject.id, org_unit_id=unit.id, source="bench")
                db.add(candidate)
                candidate.name = f"候选人{i:05d}"
                candidate.email = f"c{i:05d}@example.com"
                candidate.phone = f"139{i:08d}"
                app = Application(candidate=candidate, job_id=job.id, stage=Stage.SCREENED)
                db.add(app)
                batch.append(app)
            db.flush()
            apps += [a.id for a in batch]
    return actor, apps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--no-write", action="store_true", help="do not write the results file")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="encinv"))
    load_before = load_average()
    port = free_port()
    smtp_server = SmtpServer(port)
    received = (0, 0)
    os.environ.update(
        {
            "ENCLAVE_CONFIG": "",
            "ENCLAVE_SECRETS": str(root / "none.toml"),
            "ENCLAVE_SMTP__HOST": "127.0.0.1",
            "ENCLAVE_SMTP__PORT": str(port),
            "ENCLAVE_SMTP__STARTTLS": "false",
            "ENCLAVE_INVITATIONS__BATCH_SIZE": str(args.batch),
            "ENCLAVE_INVITATIONS__BASE_URL": "https://hr.hospital.local",
        }
    )
    settings = load_settings(data_dir=root / "data")
    store = init_data_dir(settings, "BENCH-PASS-PHRASE").store
    conf = settings.data_dir / "redis" / "redis.conf"
    conf.write_text(redis_config(settings.data_dir, store.keys))
    conf.chmod(0o600)
    redis_proc = subprocess.Popen(  # noqa: S603 (the redis-server binary, our config)
        [shutil.which("redis-server") or "/usr/bin/redis-server", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        redis = connect(settings.data_dir, store.keys)
        for _ in range(100):
            if socket_path(settings.data_dir).exists():
                try:
                    redis.ping()
                    break
                except Exception:  # noqa: BLE001, S110 (not up yet)
                    pass
            time.sleep(0.05)
        t_seed = time.perf_counter()
        actor, apps = seed(store, args.count)
        seeded = time.perf_counter() - t_seed
        print(f"seeded {len(apps)} candidates in {seeded:.1f} s (not timed)", flush=True)

        from workers import runtime
        from workers.invitations import Slot, create_invitations

        start = (utcnow() + timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
        t0 = time.perf_counter()
        created = create_invitations(
            store, redis, actor, apps, Slot(start, start + timedelta(hours=8)), ["email"], settings
        )
        t1 = time.perf_counter()
        saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        import logging

        logging.getLogger().addHandler(logging.NullHandler())  # rq: no per-job lines
        logging.getLogger("rq").setLevel(logging.WARNING)
        logging.getLogger("workers").setLevel(logging.WARNING)
        runtime.run_worker(settings, ("outbox",), burst=True)
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        t2 = time.perf_counter()
        with store.session() as db:
            sent = db.scalar(
                select(func.count(OutboxMessage.id)).where(
                    OutboxMessage.status == MessageStatus.SENT
                )
            )
        runtime.close_store()
    finally:
        received = smtp_server.stop()
        redis_proc.terminate()
        redis_proc.wait(timeout=10)
        store.close()
        stop_agent(settings.data_dir / "gnupg")
        shutil.rmtree(root, ignore_errors=True)

    n = len(created.message_ids)
    ok = sent == n == received[0] == args.count
    total = t2 - t0
    lines = [
        "Invitation benchmark (bench/invite_bench.py)",
        f"  date       {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"  machine    {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        f"  python     {platform.python_version()}",
        f"  load avg   {load_before} before, {load_average()} after"
        " (1/5/15 min; the machine is shared)",
        f"  invitations {args.count:,} (e-mail: text + HTML + ICS),"
        f" batch {args.batch} per SMTP session",
        "",
        f"  invite (sessions, tokens, invitations, outbox rows, enqueue)  {t1 - t0:7.2f} s",
        f"  send (rq worker: claim, gate read, compose, SMTP, record)     {t2 - t1:7.2f} s",
        f"  total                                                         {total:7.2f} s",
        f"  rate                                                          {n / total:7.0f} msg/s",
        f"  received by the SMTP server: {received[0]:,} messages, {received[1] / 1e6:.1f} MB;"
        f" sent in the database: {sent:,}",
        f"  goal <= 60 s: {'met' if ok and total <= 60 else 'NOT met'}"
        + ("" if ok else "  (INCOMPLETE: not every message arrived)"),
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(report)
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
