"""SQLCipher against plain SQLite on the same record workload, in one run.

Two stores are built side by side, identical except for the database
connection: the appliance's `Store` over `cipher_connect` (SQLCipher, raw
key) and the same `Store` over `plain_connect` (a plain SQLite file with the
same pragmas). Both seal personal fields with the subjects' keys through the
same keyring and `Vault`, so the ratio isolates what SQLCipher adds.

Phases, the same code on both stores:

- inserts: candidates with a new subject, name/phone/email, an application
  and a comment, committed in batches of 50 (an import job);
- indexed reads: by phone through the blind index, and by primary key;
- portal mix: pipeline pages, candidate views, stage moves and comments,
  about 70% reads and 30% writes, one short transaction each (web requests).

Each round builds both stores on fresh files; in every phase they take turns
(a batch or 50 requests each, the first mover alternating), so background
noise on a shared machine hits both alike. The table shows each phase's
median over the rounds. Run: `.venv/bin/python bench/store_bench.py --help`.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlcipher3.dbapi2 as sqlcipher
from sqlalchemy import select
from sqlalchemy.orm import selectinload, sessionmaker

from appliance import migrate
from appliance.database import (  # the private two: the very set-up the appliance uses
    _configure,
    _key_pragma,
    cipher_connect,
    database_path,
    make_engine,
    plain_connect,
)
from appliance.keyring import SubjectKeyring
from appliance.keys import BOX_KEYS, BoxKeys
from appliance.records import (
    Application,
    Candidate,
    Comment,
    Job,
    JobStatus,
    OrgKind,
    OrgUnit,
    Stage,
    SubjectKind,
    User,
)
from appliance.store import Store

GOAL = 1.3
BATCH = 50  # candidates per import transaction
STEP = 50  # requests each store runs before the other takes its turn
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢"  # noqa: E501
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉萍红娥玲芬燕彬鹏辉建国俊婷雪慧"
DEPARTMENTS = ("心内科", "普外科", "护理部", "检验科")
JOB_TITLES = ("主治医师", "住院医师", "护士", "护士长", "检验技师", "药剂师")
OPEN_STAGES = (Stage.APPLIED, Stage.SCREENED, Stage.INVITED, Stage.INTERVIEWED, Stage.REVIEWED)
NEXT_STAGE = {stage: OPEN_STAGES[(i + 1) % len(OPEN_STAGES)] for i, stage in enumerate(OPEN_STAGES)}
COMMENTS = (
    "简历匹配度高，建议安排面试。",
    "有三甲医院工作经历。",
    "已电话沟通，候选人同意参加面试。",
)


class TimedKeyring(SubjectKeyring):
    """The real keyring, counting the time spent in key files (the same on both stores)."""

    def __init__(self, folder: Path, keyring_key: bytes) -> None:
        super().__init__(folder, keyring_key)
        self.seconds = 0.0

    def create(self, subject_id: str) -> bytes:
        start = time.perf_counter()
        try:
            return super().create(subject_id)
        finally:
            self.seconds += time.perf_counter() - start

    def data_key(self, subject_id: str) -> bytes:
        start = time.perf_counter()
        try:
            return super().data_key(subject_id)
        finally:
            self.seconds += time.perf_counter() - start


class DriverClock:
    """Seconds spent inside the SQLite library (execute, fetch, commit) through one store."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def timed(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return call


class TimedCursor:
    """A DB-API cursor whose calls into the library are clocked; the rest passes through."""

    def __init__(self, cursor: Any, clock: DriverClock) -> None:
        self._cursor = cursor
        self._clock = clock

    def execute(self, *args: Any) -> TimedCursor:
        self._clock.timed(self._cursor.execute)(*args)
        return self

    def executemany(self, *args: Any) -> TimedCursor:
        self._clock.timed(self._cursor.executemany)(*args)
        return self

    def fetchone(self) -> Any:
        return self._clock.timed(self._cursor.fetchone)()

    def fetchmany(self, *args: Any) -> Any:
        return self._clock.timed(self._cursor.fetchmany)(*args)

    def fetchall(self) -> Any:
        return self._clock.timed(self._cursor.fetchall)()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


class TimedConnection:
    """A DB-API connection handing out TimedCursors and clocking commit and rollback."""

    def __init__(self, conn: Any, clock: DriverClock) -> None:
        object.__setattr__(self, "_conn", conn)
        object.__setattr__(self, "_clock", clock)

    def cursor(self, *args: Any) -> TimedCursor:
        return TimedCursor(self._conn.cursor(*args), self._clock)

    def commit(self) -> None:
        self._clock.timed(self._conn.commit)()

    def rollback(self) -> None:
        self._clock.timed(self._conn.rollback)()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._conn, name, value)  # e.g. SQLAlchemy setting isolation_level


class BenchStore(Store):
    """The appliance's Store, with the engine rebuilt over a given connect function.

    Store has no seam for its engine, so this replaces `engine` and the private
    sessionmaker `Store.__init__` built over it (before either was used). The
    keyring and the driver calls are clocked, identically on both stores.
    """

    def __init__(
        self, data_dir: Path, keys: BoxKeys, connect: Callable[[], Any], module: Any
    ) -> None:
        super().__init__(data_dir, keys)
        self.engine.dispose()  # never connected: the cipher file is not even created
        self.driver = DriverClock()
        self.engine = make_engine(lambda: TimedConnection(connect(), self.driver), module=module)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.keyring = TimedKeyring(self.keyring.folder, keys.keyring)


def _with_pragmas(connect: Callable[[], Any], pragmas: list[str]) -> Callable[[], Any]:
    """Extra `PRAGMA name = value` after the appliance's own set-up (for experiments)."""

    def connect_tuned() -> Any:
        conn = connect()
        for pragma in pragmas:
            conn.execute(f"PRAGMA {pragma}")
        return conn

    return connect_tuned


def _cipher_connect_with_codec(path: Path, key: bytes, codec: list[str]) -> Any:
    """`cipher_connect` with codec pragmas (page size, HMAC, ...) between the key and the
    first read, the only place SQLCipher takes them. Experiments only: the files it makes
    do not open with the appliance's settings."""
    conn = sqlcipher.connect(str(path), check_same_thread=False, isolation_level=None)
    conn.execute(_key_pragma(key))
    for pragma in codec:
        conn.execute(f"PRAGMA {pragma}")
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    _configure(conn)
    return conn


def _bundled_plain_connect(path: Path) -> Any:
    """`plain_connect` through sqlcipher3 with no key: its bundled SQLite, unencrypted."""
    conn = sqlcipher.connect(str(path), check_same_thread=False, isolation_level=None)
    _configure(conn)
    return conn


def cipher_store(data_dir: Path, keys: BoxKeys, args: argparse.Namespace) -> BenchStore:
    """What `cipher_engine` builds: `cipher_connect` with the raw key under `make_engine`."""
    path = database_path(data_dir)

    def connect() -> Any:
        if args.cipher_codec:
            return _cipher_connect_with_codec(path, keys.database, args.cipher_codec)
        return cipher_connect(path, keys.database)

    return BenchStore(data_dir, keys, _with_pragmas(connect, args.cipher_pragma), sqlcipher)


def plain_store(data_dir: Path, keys: BoxKeys, args: argparse.Namespace) -> BenchStore:
    """The same engine and pragmas over an unencrypted file (`plain_connect`)."""
    path = database_path(data_dir)
    if args.baseline == "bundled":
        connect = _with_pragmas(lambda: _bundled_plain_connect(path), args.pragma)
        return BenchStore(data_dir, keys, connect, sqlcipher)
    return BenchStore(
        data_dir, keys, _with_pragmas(lambda: plain_connect(path), args.pragma), sqlite3
    )


@dataclass
class Fixture:
    """What the workload needs to know about a freshly built store."""

    org_unit_ids: list[int]
    job_ids: list[int]
    author_id: int
    candidate_ids: list[int] = field(default_factory=list)
    application_ids: list[int] = field(default_factory=list)


def set_up(store: Store) -> Fixture:
    """Schema, an org tree, one HR user and a few open jobs (not timed)."""
    migrate.upgrade(store.engine)
    with store.transaction() as session:
        hq = OrgUnit(kind=OrgKind.HQ, name="总院", code="HQ")
        session.add(hq)
        session.flush()
        hq.place_under(None)
        depts = []
        for i, name in enumerate(DEPARTMENTS):
            dept = OrgUnit(kind=OrgKind.DEPARTMENT, name=name, code=f"D{i}")
            session.add(dept)
            session.flush()
            dept.place_under(hq)
            depts.append(dept)
        author = User(username="hr.bench", display_name="人事 测试", password_hash="-")  # noqa: S106 (never logs in)
        session.add(author)
        jobs = [
            Job(org_unit_id=depts[i % len(depts)].id, title=title, status=JobStatus.OPEN)
            for i, title in enumerate(JOB_TITLES)
        ]
        session.add_all(jobs)
        session.flush()
        return Fixture([d.id for d in depts], [j.id for j in jobs], author.id)


def chinese_name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choices(GIVEN, k=rng.choice((1, 2))))


def phone_of(i: int) -> str:
    return f"138-{i // 10000:04d}-{i % 10000:04d}"


def insert_candidates(store: Store, fx: Fixture, count: int, seed: int) -> Iterator[int]:
    """An import job: each candidate gets a subject (and key), an application and a comment."""
    rng = random.Random(seed)
    for start in range(0, count, BATCH):
        with store.transaction() as session:
            for i in range(start, min(start + BATCH, count)):
                subject = store.new_subject(session, SubjectKind.CANDIDATE)
                cand = Candidate(
                    subject_id=subject.id, org_unit_id=rng.choice(fx.org_unit_ids), source="网申"
                )
                session.add(cand)
                cand.name = chinese_name(rng)
                cand.phone = phone_of(i)
                cand.email = f"candidate{i}@example.cn"
                app = Application(
                    candidate=cand, job_id=rng.choice(fx.job_ids), stage=rng.choice(OPEN_STAGES)
                )
                session.add(app)
                session.flush()
                note = Comment(application_id=app.id, subject_id=subject.id, author_id=fx.author_id)
                session.add(note)
                note.body = rng.choice(COMMENTS)
                fx.candidate_ids.append(cand.id)
                fx.application_ids.append(app.id)
        yield min(BATCH, count - start)


def indexed_reads(store: Store, fx: Fixture, count: int, seed: int) -> Iterator[int]:
    """Look-ups one request each: by phone through the blind index, and by primary key."""
    rng = random.Random(seed)
    numbers = rng.sample(range(len(fx.candidate_ids)), min(count, len(fx.candidate_ids)))
    for start in range(0, len(numbers), STEP):
        for i in numbers[start : start + STEP]:
            with store.session() as session:
                wanted = Candidate.phone.index_of(session.info["vault"], phone_of(i))
                query = select(Candidate).where(Candidate.phone_index == wanted)
                assert session.scalars(query).one().name
            with store.session() as session:
                cand = session.get(Candidate, rng.choice(fx.candidate_ids))
                assert cand is not None and cand.name
        yield 2 * len(numbers[start : start + STEP])


def pipeline_page(store: Store, fx: Fixture, rng: random.Random) -> None:
    """The board's column: one job's applications in one stage, newest first, 50 a page."""
    with store.session() as session:
        rows = session.execute(
            select(Application, Candidate)
            .join(Application.candidate)
            .where(Application.job_id == rng.choice(fx.job_ids))
            .where(Application.stage == rng.choice(OPEN_STAGES))
            .order_by(Application.updated_at.desc())
            .limit(50)
        ).all()
        names = [cand.name for _, cand in rows]
        assert all(names)


def candidate_view(store: Store, fx: Fixture, rng: random.Random) -> None:
    """One candidate's page: personal fields, applications and the comments on them."""
    with store.session() as session:
        cand = session.get(
            Candidate,
            rng.choice(fx.candidate_ids),
            options=[selectinload(Candidate.applications)],
        )
        assert cand is not None
        shown = [cand.name, cand.phone, cand.email]
        app_ids = [app.id for app in cand.applications]
        notes = session.scalars(
            select(Comment).where(Comment.application_id.in_(app_ids)).order_by(Comment.id)
        ).all()
        shown += [note.body for note in notes]
        assert all(shown)


def move_stage(store: Store, fx: Fixture, rng: random.Random) -> None:
    with store.transaction() as session:
        app = session.get(Application, rng.choice(fx.application_ids))
        assert app is not None
        app.stage = NEXT_STAGE.get(app.stage, Stage.APPLIED)


def add_comment(store: Store, fx: Fixture, rng: random.Random) -> None:
    with store.transaction() as session:
        app = session.get(Application, rng.choice(fx.application_ids))
        assert app is not None
        note = Comment(
            application_id=app.id, subject_id=app.candidate.subject_id, author_id=fx.author_id
        )
        session.add(note)
        note.body = rng.choice(COMMENTS)


# 70% reads, 30% writes, each its own short transaction as a web request would be.
PORTAL_MIX = ((pipeline_page, 40), (candidate_view, 30), (move_stage, 15), (add_comment, 15))


def portal_mix(store: Store, fx: Fixture, count: int, seed: int) -> Iterator[int]:
    rng = random.Random(seed)
    actions = [action for action, _ in PORTAL_MIX]
    weights = [weight for _, weight in PORTAL_MIX]
    requests = rng.choices(actions, weights, k=count)
    for start in range(0, count, STEP):
        for action in requests[start : start + STEP]:
            action(store, fx, rng)
        yield len(requests[start : start + STEP])


@dataclass(frozen=True)
class Phase:
    name: str
    run: Callable[[Store, Fixture, int, int], Iterator[int]]
    unit: str


PHASES = (
    Phase("inserts", insert_candidates, "candidates"),
    Phase("indexed reads", indexed_reads, "look-ups"),
    Phase("portal mix", portal_mix, "requests"),
)
ENGINES = ("plain", "cipher")


@dataclass
class Sample:
    seconds: float = 0.0
    ops: int = 0
    keyring_seconds: float = 0.0
    driver_seconds: float = 0.0


def run_phase(
    phase: Phase, stores: dict[str, BenchStore], fixtures: dict[str, Fixture], size: int, seed: int
) -> dict[str, Sample]:
    """Both stores take turns, a batch or STEP requests each, so noise hits both alike."""
    samples = {engine: Sample() for engine in stores}
    steps = {engine: phase.run(stores[engine], fixtures[engine], size, seed) for engine in stores}
    for engine in stores:
        stores[engine].keyring.seconds = stores[engine].driver.seconds = 0.0
    turn = 0
    # Collect between turns, untimed, so a collection's pause does not land on one store
    # only; frozen objects (the set-up, earlier phases) are not scanned again each time.
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        while steps:
            order = list(stores) if turn % 2 == 0 else list(stores)[::-1]
            for engine in order:
                if engine not in steps:
                    continue
                gc.collect()
                start = time.perf_counter()
                try:
                    samples[engine].ops += next(steps[engine])
                except StopIteration:
                    del steps[engine]
                samples[engine].seconds += time.perf_counter() - start
            turn += 1
    finally:
        gc.enable()
        gc.unfreeze()
    for engine, sample in samples.items():
        sample.keyring_seconds = stores[engine].keyring.seconds
        sample.driver_seconds = stores[engine].driver.seconds
    return samples


def run_round(
    round_no: int, keys: BoxKeys, args: argparse.Namespace, workdir: Path
) -> dict[tuple[str, str], Sample]:
    """Both stores on fresh files; every phase run on both, taking turns."""
    engines = ENGINES if round_no % 2 == 0 else ENGINES[::-1]
    stores: dict[str, BenchStore] = {}
    fixtures: dict[str, Fixture] = {}
    for engine in engines:
        data_dir = workdir / f"round{round_no}-{engine}"
        data_dir.mkdir(mode=0o700)
        make = cipher_store if engine == "cipher" else plain_store
        stores[engine] = make(data_dir, keys, args)
        fixtures[engine] = set_up(stores[engine])
    sizes = {"candidates": args.candidates, "look-ups": args.lookups, "requests": args.requests}
    samples: dict[tuple[str, str], Sample] = {}
    try:
        for phase_no, phase in enumerate(PHASES):
            seed = 1000 * phase_no + 7
            by_engine = run_phase(phase, stores, fixtures, sizes[phase.unit], seed)
            samples.update({(phase.name, engine): s for engine, s in by_engine.items()})
        for engine, store in stores.items():
            with store.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            size = database_path(store.data_dir).stat().st_size
            samples[("db bytes", engine)] = Sample(seconds=size)
    finally:
        for store in stores.values():
            store.close()
    return samples


def describe(store: Store, cipher: bool) -> list[str]:
    with store.engine.connect() as conn:

        def one(sql: str) -> Any:
            row = conn.exec_driver_sql(sql).fetchone()
            return None if row is None else row[0]

        lines = [f"SQLite {one('select sqlite_version()')}"]
        if cipher:
            lines[0] = (
                f"SQLCipher {one('PRAGMA cipher_version')} ({one('PRAGMA cipher_provider')} "
                f"{one('PRAGMA cipher_provider_version')}), bundled " + lines[0]
            )
            lines.append(
                f"cipher_page_size={one('PRAGMA cipher_page_size')} "
                f"hmac={one('PRAGMA cipher_hmac_algorithm')} "
                f"use_hmac={one('PRAGMA cipher_use_hmac')} "
                f"memory_security={one('PRAGMA cipher_memory_security')}"
            )
        lines.append(
            f"page_size={one('PRAGMA page_size')} cache_size={one('PRAGMA cache_size')} "
            f"journal_mode={one('PRAGMA journal_mode')} synchronous={one('PRAGMA synchronous')} "
            f"temp_store={one('PRAGMA temp_store')} secure_delete={one('PRAGMA secure_delete')} "
            f"mmap_size={one('PRAGMA mmap_size')}"
        )
    return lines


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def bench_keys() -> BoxKeys:
    """Random box keys held in memory; the bench needs no keystore (or Argon2) on disk."""
    return BoxKeys(**{name: secrets.token_bytes(32) for name in ("master", *BOX_KEYS)})


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f}"


def round_line(samples: dict[tuple[str, str], Sample]) -> str:
    ratios = [
        f"{p.name} {samples[(p.name, 'cipher')].seconds / samples[(p.name, 'plain')].seconds:.2f}x"
        for p in PHASES
    ]
    total = {e: sum(samples[(p.name, e)].seconds for p in PHASES) for e in ENGINES}
    return "  ".join([*ratios, f"total {total['cipher'] / total['plain']:.2f}x"])


def report(results: list[dict[tuple[str, str], Sample]]) -> float:
    """The table of medians over the rounds; returns the overall ratio."""

    def median(phase: str, engine: str, what: str = "seconds") -> float:
        return float(statistics.median(getattr(r[(phase, engine)], what) for r in results))

    header = (
        f"{'phase':<14} {'ops':>5} {'plain ms':>9} {'SQLCipher ms':>12} {'ratio':>6} "
        f"{'plain ops/s':>11} {'SQLCipher ops/s':>15}"
    )
    rule = "-" * len(header)
    print(header, rule, sep="\n")
    for phase in PHASES:
        plain, cipher = median(phase.name, "plain"), median(phase.name, "cipher")
        ops = results[0][(phase.name, "plain")].ops
        print(
            f"{phase.name:<14} {ops:>5} {fmt_ms(plain):>9} {fmt_ms(cipher):>12} "
            f"{cipher / plain:>5.2f}x {ops / plain:>11,.0f} {ops / cipher:>15,.0f}"
        )
    totals = {
        engine: statistics.median(sum(r[(p.name, engine)].seconds for p in PHASES) for r in results)
        for engine in ENGINES
    }
    overall = totals["cipher"] / totals["plain"]
    print(rule)
    print(
        f"{'total':<14} {'':>5} {fmt_ms(totals['plain']):>9} {fmt_ms(totals['cipher']):>12} "
        f"{overall:>5.2f}x"
    )
    print()
    print("Where the time goes (medians, ms): inside the SQLite library (execute, fetch, commit),")
    print("in subject key files (the same work on both), and the rest (SQLAlchemy, field sealing).")
    header = (
        f"{'phase':<14} {'SQLite: plain':>13} {'SQLCipher':>9} {'ratio':>6} "
        f"{'key files: plain':>16} {'SQLCipher':>9} {'rest: plain':>11} {'SQLCipher':>9}"
    )
    print(header, "-" * len(header), sep="\n")
    for phase in PHASES:
        lib = {e: median(phase.name, e, "driver_seconds") for e in ENGINES}
        keyfiles = {e: median(phase.name, e, "keyring_seconds") for e in ENGINES}
        rest = {e: median(phase.name, e) - lib[e] - keyfiles[e] for e in ENGINES}
        print(
            f"{phase.name:<14} {fmt_ms(lib['plain']):>13} {fmt_ms(lib['cipher']):>9} "
            f"{lib['cipher'] / lib['plain']:>5.2f}x {fmt_ms(keyfiles['plain']):>16} "
            f"{fmt_ms(keyfiles['cipher']):>9} {fmt_ms(rest['plain']):>11} "
            f"{fmt_ms(rest['cipher']):>9}"
        )
    plain_b, cipher_b = median("db bytes", "plain"), median("db bytes", "cipher")
    print(
        f"database file after checkpoint: plain {plain_b / 1e6:.2f} MB, "
        f"SQLCipher {cipher_b / 1e6:.2f} MB ({cipher_b / plain_b:.2f}x)"
    )
    print()
    verdict = "met" if overall <= GOAL else "NOT met"
    print(f"overall ratio SQLCipher/plain (total time): {overall:.2f}x; goal <= {GOAL}x: {verdict}")
    return overall


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidates", type=int, default=2000, help="inserted per round")
    parser.add_argument("--lookups", type=int, default=500, help="by phone, and as many by id")
    parser.add_argument("--requests", type=int, default=600, help="portal mix requests")
    parser.add_argument("--repeat", type=int, default=3, help="rounds on fresh files")
    parser.add_argument(
        "--pragma",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra pragma on the plain connection, after the appliance's (experiments)",
    )
    parser.add_argument(
        "--cipher-pragma",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra pragma on the SQLCipher connection, after the appliance's (experiments)",
    )
    parser.add_argument(
        "--cipher-codec",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="codec pragma between PRAGMA key and the first read, e.g. cipher_use_hmac=OFF",
    )
    parser.add_argument(
        "--baseline",
        choices=("stdlib", "bundled"),
        default="stdlib",
        help="plain SQLite through the stdlib sqlite3 (default) or sqlcipher3 with no key",
    )
    return parser.parse_args(argv)


@contextmanager
def workspace() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="enclave-bench-") as tmp:
        yield Path(tmp)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"store_bench  {datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"host: nproc {len(os.sched_getaffinity(0))}, CPU {cpu_model()}, {platform.platform()}")
    print(f"python {platform.python_version()}, stdlib sqlite3 on SQLite {sqlite3.sqlite_version}")
    print(
        f"workload: {args.candidates} candidates in batches of {BATCH}, "
        f"{args.lookups} phone + {args.lookups} id look-ups, {args.requests} portal requests; "
        f"{args.repeat} rounds, median per phase"
    )
    keys = bench_keys()
    with workspace() as workdir:
        probe = workdir / "probe"
        for engine, make in (("plain", plain_store), ("cipher", cipher_store)):
            (probe / engine).mkdir(parents=True)
            store = make(probe / engine, keys, args)
            for line in describe(store, engine == "cipher"):
                print(f"{engine:>6}: {line}")
            store.close()
        if args.pragma or args.cipher_pragma or args.cipher_codec or args.baseline != "stdlib":
            print(
                f"EXPERIMENT: baseline {args.baseline}, plain pragmas {args.pragma}, SQLCipher "
                f"pragmas {args.cipher_pragma}, SQLCipher codec {args.cipher_codec}"
            )
        print(
            "confound: sqlcipher3 bundles its own SQLite build (version, defaults such as "
            "cache_size above), so with the stdlib baseline the ratio also holds the "
            "difference between two SQLite builds; `--baseline bundled` removes it."
        )
        print()
        results = []
        for round_no in range(args.repeat):
            samples = run_round(round_no, keys, args, workdir)
            results.append(samples)
            print(f"round {round_no + 1}/{args.repeat}: {round_line(samples)}", flush=True)
        report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
