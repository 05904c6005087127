"""`appliance run`: start and watch every process of one box (development and demo).

In production Ansible installs systemd units that do the same job; here one
process supervises redis-server, gunicorn (the web app over TLS), the media
service and one rq worker per queue. A child that dies is restarted with a
growing delay and the event is logged; SIGTERM or SIGINT stops them all, web
first and redis last, so no job is cut off mid-write by a vanished queue.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from appliance import queue
from appliance.keyring import write_private
from appliance.keys import BoxKeys
from appliance.settings import Settings

log = logging.getLogger("enclave.supervisor")

RESTART_DELAYS = (1, 2, 5, 10, 30)
STABLE_AFTER = 60.0  # seconds up before a child's restart delay starts over
STOP_GRACE = 15.0


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    next_start: float = 0.0
    last_exit: int | None = None
    log_path: Path = field(default_factory=Path)


def process_table_path(settings: Settings) -> Path:
    return settings.run_dir / "processes.json"


def media_socket(settings: Settings) -> Path:
    return settings.run_dir / "media.sock"


def child_specs(settings: Settings, certfile: Path, keyfile: Path) -> list[tuple[str, list[str]]]:
    """What runs on one box, in start order."""
    py = sys.executable
    data_dir = settings.data_dir
    web = [
        py,
        "-m",
        "gunicorn",
        "--no-control-socket",
        "--bind",
        f"{settings.web.host}:{settings.web.port}",
        "--workers",
        str(settings.web.workers),
        "--certfile",
        str(certfile),
        "--keyfile",
        str(keyfile),
        "--worker-tmp-dir",
        str(settings.run_dir),
        "--access-logfile",
        str(data_dir / "logs" / "access.log"),
        "--logger-class",
        "webapp.access_log.AccessLogger",  # no candidate link tokens in the access log
        "--error-logfile",
        "-",
        "webapp:create_app()",
    ]
    specs = [
        ("redis", ["redis-server", str(data_dir / "redis" / "redis.conf")]),
        ("media", [py, "-m", "webapp.media", "--socket", str(media_socket(settings))]),
        ("web", web),
    ]
    for name in settings.workers.queues:
        specs.append(
            (
                f"worker-{name}",
                [py, "-m", "appliance", "worker", "--queue", name, "--data-dir", str(data_dir)],
            )
        )
    # Enqueues the periodic jobs when they are due (workers/jobs.py PERIODIC_JOBS).
    specs.append(("scheduler", [py, "-m", "appliance", "scheduler", "--data-dir", str(data_dir)]))
    # Prometheus text on the internal port (appliance/metrics.py, issue 9).
    specs.append(("metrics", [py, "-m", "appliance", "metrics", "--data-dir", str(data_dir)]))
    return specs


class Supervisor:
    def __init__(
        self, settings: Settings, keys: BoxKeys, certfile: Path, keyfile: Path, env: dict[str, str]
    ) -> None:
        self.settings = settings
        self.keys = keys
        self.env = env
        self.children = [
            Child(name, argv) for name, argv in child_specs(settings, certfile, keyfile)
        ]
        self.stopping = False

    def prepare(self) -> None:
        self.settings.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        conf = self.settings.data_dir / "redis" / "redis.conf"
        write_private(conf, queue.redis_config(self.settings.data_dir, self.keys).encode())
        stale = queue.socket_path(self.settings.data_dir)
        if stale.exists():
            stale.unlink()

    def _spawn(self, child: Child) -> None:
        child.log_path = self.settings.data_dir / "logs" / f"{child.name}.log"
        fd = os.open(child.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            child.process = subprocess.Popen(  # noqa: S603  (fixed argv, no shell)
                child.argv,
                stdout=fd,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.settings.run_dir,
                # Own session: a Ctrl-C in the terminal reaches only the supervisor, which
                # then stops the children in order (redis last) instead of all at once.
                start_new_session=True,
            )
        finally:
            os.close(fd)
        child.started_at = time.monotonic()
        log.info("started %s (pid %d)", child.name, child.process.pid)

    def _wait_for_redis(self, timeout: float = 10.0) -> None:
        """Workers and web need the queue; starting them first only fills logs with errors."""
        conn = queue.connect(self.settings.data_dir, self.keys)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                conn.ping()
                return
            except Exception:  # noqa: S112  (not up yet)
                time.sleep(0.1)
        log.error("redis did not answer within %.0f s; see logs/redis.log", timeout)

    def start(self) -> None:
        self.prepare()
        for child in self.children:
            self._spawn(child)
            if child.name == "redis":
                self._wait_for_redis()
        self.write_table()

    def check(self) -> None:
        """Restart children that exited, with a delay that grows while they keep failing."""
        now = time.monotonic()
        for child in self.children:
            proc = child.process
            if proc is not None and proc.poll() is None:
                continue
            if proc is not None:
                child.last_exit = proc.returncode
                child.process = None
                up = now - child.started_at
                if up > STABLE_AFTER:
                    child.restarts = 0
                delay = RESTART_DELAYS[min(child.restarts, len(RESTART_DELAYS) - 1)]
                child.next_start = now + delay
                log.warning(
                    "%s exited with code %s after %.0f s; restarting in %d s (see %s)",
                    child.name,
                    child.last_exit,
                    up,
                    delay,
                    child.log_path,
                )
            if now >= child.next_start:
                child.restarts += 1
                self._spawn(child)
                self.write_table()

    def stop(self) -> None:
        """Front first (web, media, scheduler), then workers (they finish their job), then
        redis; each tier is signalled at once, and SIGKILLed after a grace period."""
        tiers = [
            [c for c in self.children if c.name in ("web", "media", "scheduler", "metrics")],
            [c for c in self.children if c.name.startswith("worker-")],
            [c for c in self.children if c.name == "redis"],
        ]
        for tier in tiers:
            running = [(c, c.process) for c in tier if c.process and c.process.poll() is None]
            for _child, proc in running:
                proc.terminate()
            deadline = time.monotonic() + STOP_GRACE
            for child, proc in running:
                try:
                    proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.warning("%s did not stop in %.0f s; killing it", child.name, STOP_GRACE)
                    proc.kill()
                    proc.wait()
                log.info("stopped %s", child.name)
        process_table_path(self.settings).unlink(missing_ok=True)

    def write_table(self) -> None:
        table = {
            "supervisor": os.getpid(),
            "data_dir": str(self.settings.data_dir),
            "url": f"https://{self.settings.web.host}:{self.settings.web.port}/",
            "children": {
                c.name: {
                    "pid": c.process.pid if c.process else None,
                    "restarts": c.restarts,
                    "last_exit": c.last_exit,
                }
                for c in self.children
            },
        }
        write_private(process_table_path(self.settings), json.dumps(table, indent=2).encode())

    def run_forever(self) -> None:
        def _on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s; stopping", signal.Signals(signum).name)
            self.stopping = True

        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
        self.start()
        try:
            while not self.stopping:
                self.check()
                time.sleep(0.5)
        finally:
            self.stop()


def read_process_table(settings: Settings) -> dict[str, object] | None:
    try:
        table: dict[str, object] = json.loads(process_table_path(settings).read_text())
    except FileNotFoundError:
        return None
    return table
