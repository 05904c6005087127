"""A real converge of ansible/site.yml into a throwaway Debian 12 root, and the box it makes.

The root is made by debootstrap (cached as a tarball between runs under
/var/cache/enclave-ci), the release comes from a wheelhouse built from this
checkout (scripts/build-wheelhouse.sh), and Ansible reaches the root through
its chroot connection (scripts/converge-chroot.sh). These machines have no
systemd as PID 1, so nothing is started by systemctl: the tests start the
services the way their installed units would, from the units' own ExecStart
lines (user, capabilities, environment, working directory), in a network
namespace of their own, and check what they answer.

Needs root, debootstrap (or the cached root), util-linux (unshare, setpriv),
iproute2 and Debian's python3.11 with venv; a missing one fails the test with
the package to install.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.ops.rollback_release import DRILL_COLUMN, DRILL_REVISION, broken_release

# `make converge` runs it; `make test` not yet (about 15 min on a fresh machine: issue 9).
pytestmark = [pytest.mark.slow, pytest.mark.converge]

REPO = Path(__file__).resolve().parents[2]
CONVERGE = REPO / "scripts" / "converge-chroot.sh"
WHEELHOUSE = REPO / "scripts" / "build-wheelhouse.sh"
CACHE = Path(os.environ.get("ENCLAVE_CI_CACHE", "/var/cache/enclave-ci"))
UNIT_DIR = "etc/systemd/system"
DATA_DIR = "/var/lib/enclave"
HTTPS_PORT = 443
QUEUES = ("realtime", "analysis", "documents", "outbox", "maintenance")
# Start order, as `appliance run` does: the queue first, then what uses it.
SERVICES = (
    "enclave-redis",
    "enclave-media",
    "enclave-web",
    *(f"enclave-worker-{q}" for q in QUEUES),
    "enclave-scheduler",
)
RECAP = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
    r"\s+failed=(?P<failed>\d+)",
    re.MULTILINE,
)
TOOLS = {
    "debootstrap": "debootstrap",
    "chroot": "coreutils",
    "unshare": "util-linux",
    "findmnt": "util-linux",
    "ip": "iproute2",
    "systemd-analyze": "systemd",
    "systemctl": "systemd",
}


def _timing(label: str, seconds: float) -> None:
    sys.stderr.write(f"\n[converge timing] {label}: {seconds:.0f} s\n")


def _check_prerequisites() -> None:
    if os.geteuid() != 0:
        pytest.fail("the converge test needs root (chroot, mount, network namespaces)")
    for tool, package in TOOLS.items():
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: apt-get install {package} (make install-test)")
    if not Path("/usr/bin/python3.11").exists():
        pytest.fail("Debian's python3.11 is missing: apt-get install python3.11 python3.11-venv")
    if not (REPO / ".venv" / "bin" / "ansible-playbook").exists():
        pytest.fail("ansible-core is not in .venv: make install-test")


def _run(
    argv: list[str], timeout: float, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"{shlex.join(argv)} exited {result.returncode}:\n"
            f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
        )
    return result


@dataclass
class Converge:
    returncode: int
    output: str
    seconds: float

    def recap(self) -> dict[str, int]:
        match = RECAP.search(self.output)
        assert match, f"no PLAY RECAP in the output:\n{self.output[-4000:]}"
        return {k: int(v) for k, v in match.groupdict().items() if k != "host"}


@dataclass
class Box:
    base: Path
    root: Path
    state: Path
    converges: list[Converge] = field(default_factory=list)
    host_ruleset_before: str = ""

    def path(self, inside: str) -> Path:
        return self.root / inside.lstrip("/")

    def chroot(
        self, *argv: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return _run(["chroot", str(self.root), *argv], timeout=timeout, check=check)

    def units(self, pattern: str = "enclave*") -> list[Path]:
        return sorted(self.path(UNIT_DIR).glob(pattern))


def _host_ruleset(root: Path) -> str:
    """This machine's nftables ruleset, read with the root's nft (only reads)."""
    result = _run(["chroot", str(root), "nft", "list", "ruleset"], timeout=60, check=False)
    return f"rc={result.returncode}\n{result.stdout}\n{result.stderr}"


def _converge(box: Box, wheelhouse: Path, *playbook_args: str, log: str = "") -> Converge:
    """One run of site.yml into the root; its output goes to converge-<n>.log (or `log`)."""
    env = dict(os.environ, ENCLAVE_BUNDLE=str(wheelhouse), ENCLAVE_STATE=str(box.state))
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(CONVERGE), "converge", str(box.root), *playbook_args],
        capture_output=True,
        text=True,
        timeout=1200,
        env=env,
        cwd=REPO,
    )
    run = Converge(result.returncode, result.stdout + result.stderr, time.monotonic() - started)
    (box.base / (log or f"converge-{len(box.converges) + 1}.log")).write_text(run.output)
    return run


def _processes_in(root: Path) -> list[int]:
    """Processes whose root is the chroot: only what this test started there."""
    found = []
    real = os.path.realpath(root)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "root") == real:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _kill_all_in(root: Path) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = _processes_in(root)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while _processes_in(root) and time.monotonic() < deadline:
            time.sleep(0.2)


@pytest.fixture(scope="module")
def box() -> Iterator[Box]:
    """Build the wheelhouse, make the root, converge twice; remove it all afterwards."""
    _check_prerequisites()
    base = Path(tempfile.mkdtemp(prefix="enclave-converge-", dir="/var/tmp"))
    box = Box(base=base, root=base / "root", state=base / "state")
    try:
        started = time.monotonic()
        _run(["bash", str(WHEELHOUSE), str(base / "wheelhouse")], timeout=1800)
        _timing("wheelhouse", time.monotonic() - started)
        started = time.monotonic()
        made = _run(["bash", str(CONVERGE), "root", str(box.root)], timeout=1800)
        how = "from cache" if "unpacking the cached" in made.stdout else "fresh debootstrap"
        _timing(f"Debian 12 root ({how})", time.monotonic() - started)
        box.host_ruleset_before = _host_ruleset(box.root)
        for n in (1, 2):
            run = _converge(box, base / "wheelhouse")
            box.converges.append(run)
            _timing(f"converge {n}", run.seconds)
            if run.returncode != 0:
                break
        yield box
    finally:
        _kill_all_in(box.root)
        subprocess.run(["bash", str(CONVERGE), "destroy", str(box.root)], timeout=300, check=False)
        if not box.root.exists():
            shutil.rmtree(base, ignore_errors=True)


def test_first_converge_succeeds(box: Box) -> None:
    """site.yml converges a bare Debian 12 root through the chroot connection."""
    first = box.converges[0]
    assert first.returncode == 0, first.output[-8000:]
    recap = first.recap()
    assert recap["failed"] == 0 and recap["unreachable"] == 0, recap
    assert recap["changed"] > 0


def test_second_converge_changes_nothing(box: Box) -> None:
    """Idempotence: the second run reports changed=0."""
    assert len(box.converges) == 2, "the first converge failed"
    second = box.converges[1]
    assert second.returncode == 0, second.output[-8000:]
    recap = second.recap()
    assert recap["changed"] == 0 and recap["failed"] == 0, (recap, changed_tasks(second.output))


def changed_tasks(output: str) -> list[str]:
    """The tasks (and loop items) a run reported as changed, by name."""
    found, task = [], ""
    for line in output.splitlines():
        named = re.match(r"^TASK \[(.*)\]", line)
        if named:
            task = named.group(1)
        elif line.startswith("changed: "):
            found.append(f"{task} {line[len('changed: ') :]}")
    return found


def test_units_pass_systemd_analyze_verify(box: Box) -> None:
    """Every unit the playbook installed verifies against the root it was installed in."""
    units = (
        box.units("enclave*.service") + box.units("enclave*.timer") + box.units("enclave.target")
    )
    names = {u.name for u in units}
    expected = {f"{s}.service" for s in SERVICES} | {
        "enclave-backup.service",
        "enclave-backup.timer",
        "enclave-cert-renew.service",
        "enclave-cert-renew.timer",
        "enclave.target",
    }
    assert names >= expected, sorted(expected - names)
    result = _run(
        [
            "systemd-analyze",
            "verify",
            f"--root={box.root}",
            "--man=no",
            *(f"/{UNIT_DIR}/{u.name}" for u in units),
        ],
        timeout=120,
        check=False,
    )
    output = (result.stdout + result.stderr).strip()
    ours = [line for line in output.splitlines() if "enclave" in line]
    assert result.returncode == 0 and not ours, output


def test_units_are_enabled_for_boot(box: Box) -> None:
    """A reboot of a real host starts the whole box: every unit is wanted by enclave.target."""
    names = [f"{s}.service" for s in SERVICES] + [
        "enclave.target",
        "enclave-backup.timer",
        "enclave-cert-renew.timer",
        "nftables.service",
        "chrony.service",
    ]
    for name in names:
        result = _run(
            ["systemctl", f"--root={box.root}", "is-enabled", name], timeout=60, check=False
        )
        assert result.stdout.strip() == "enabled", (name, result.stdout, result.stderr)
    masked = _run(
        ["systemctl", f"--root={box.root}", "is-enabled", "redis-server.service"], 60, check=False
    )
    assert masked.stdout.strip() == "masked", "Debian's own redis-server (TCP 6379) must stay off"


def _unit(path: Path) -> dict[str, list[str]]:
    """A unit file's settings: key -> values in order (systemd allows repeats)."""
    settings: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key.strip(), []).append(value.strip())
    return settings


@pytest.mark.parametrize("service", SERVICES)
def test_services_run_as_the_service_user_with_hardening(box: Box, service: str) -> None:
    unit = _unit(box.path(f"{UNIT_DIR}/{service}.service"))
    assert unit["User"] == ["enclave"] and unit["Group"] == ["enclave"]
    for key, value in (
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LimitCORE", "0"),
    ):
        assert unit.get(key) == [value], (service, key, unit.get(key))
    capabilities = unit["CapabilityBoundingSet"]
    assert capabilities == (["CAP_NET_BIND_SERVICE"] if service == "enclave-web" else [""])


def test_firewall_is_written_into_the_root_and_never_applied_here(box: Box) -> None:
    """The ruleset lands in the root and loads in a namespace of its own; this machine's
    rules are the same before and after both converges."""
    assert _host_ruleset(box.root) == box.host_ruleset_before
    conf = box.path("etc/nftables.conf").read_text()
    assert "policy drop" in conf
    loaded = _run(
        [
            "unshare",
            "--net",
            "chroot",
            str(box.root),
            "sh",
            "-c",
            "nft -f /etc/nftables.conf && nft list ruleset",
        ],
        timeout=60,
    ).stdout
    assert "table inet enclave" in loaded
    assert re.search(
        r"chain input \{\s*type filter hook input priority filter; policy drop;", loaded
    )
    assert f"tcp dport {HTTPS_PORT} accept" in loaded
    assert "udp dport 40000-40199 accept" in loaded  # appliance_media_udp_port_min..max


# --- the services, started from their units' command lines -------------------------


def _user_ids(root: Path, user: str) -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3])
    raise AssertionError(f"no user {user} in the root")


def _as_unit(unit: dict[str, list[str]], command: str, netns: str, root: Path) -> list[str]:
    """argv that runs one Exec line the way systemd would: in the namespace and the root,
    as User=/Group= with AmbientCapabilities=, CapabilityBoundingSet= and
    NoNewPrivileges=, in WorkingDirectory= with Environment= only."""
    full_privileges = command.startswith("+")
    argv = shlex.split(command.lstrip("@-:+!"))
    env = [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin",
        *unit.get("Environment", []),
    ]
    if full_privileges:
        return ["ip", "netns", "exec", netns, "chroot", str(root), "env", "-i", *env, *argv]
    user = unit["User"][0]
    privileges = ["--reuid", user, "--regid", unit["Group"][0], "--init-groups"]
    ambient = [
        c.lower().removeprefix("cap_")
        for c in " ".join(unit.get("AmbientCapabilities", [])).split()
    ]
    if ambient:
        caps = ",".join(f"+{c}" for c in ambient)
        privileges += ["--inh-caps", caps, "--ambient-caps", caps]
    bounding = [
        c.lower().removeprefix("cap_")
        for c in " ".join(unit.get("CapabilityBoundingSet", [])).split()
    ]
    privileges += ["--bounding-set", ",".join(["-all", *(f"+{c}" for c in bounding)])]
    if unit.get("NoNewPrivileges") == ["yes"]:
        privileges.append("--no-new-privs")
    workdir = unit.get("WorkingDirectory", ["/"])[0]
    return [
        "ip", "netns", "exec", netns, "chroot", str(root), "setpriv", *privileges, "--",
        "env", "-i", "-C", workdir, f"USER={user}", f"LOGNAME={user}", *env, *argv,
    ]  # fmt: skip


@dataclass
class Running:
    netns: str
    processes: dict[str, subprocess.Popen[bytes]]
    logs: Path
    health: dict[str, object]


def _health(box: Box, netns: str) -> dict[str, object]:
    client = (
        "import json, ssl, urllib.request, urllib.error\n"
        f"ctx = ssl.create_default_context(cafile='{DATA_DIR}/certs/ca.pem')\n"
        "try:\n"
        f"    r = urllib.request.urlopen('https://127.0.0.1:{HTTPS_PORT}/healthz',\n"
        "                               context=ctx, timeout=5)\n"
        "    print(r.read().decode())\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(e.read().decode())\n"
        "except OSError as e:\n"
        "    print(json.dumps({'status': 'unreachable', 'error': str(e)}))\n"
    )
    result = _run(
        ["ip", "netns", "exec", netns, "chroot", str(box.root), "python3", "-c", client],
        timeout=60,
        check=False,
    )
    try:
        answer: dict[str, object] = json.loads(result.stdout)
    except json.JSONDecodeError:
        answer = {"status": "no answer", "stdout": result.stdout, "stderr": result.stderr}
    return answer


def _start_services(
    box: Box, netns: str, logs: Path, processes: dict[str, subprocess.Popen[bytes]], tag: str = ""
) -> dict[str, object]:
    """Start every service from its unit (ExecStartPre first) into `processes`, logging to
    logs/<service><tag>.log; returns the /healthz answer once ok, a process died, or 5 min."""
    # The box's own firewall, in the box's own namespace.
    _run(
        ["ip", "netns", "exec", netns, "chroot", str(box.root), "nft", "-f", "/etc/nftables.conf"],
        60,
    )
    started = time.monotonic()
    for service in SERVICES:
        unit = _unit(box.path(f"{UNIT_DIR}/{service}.service"))
        for pre in unit.get("ExecStartPre", []):
            _run(_as_unit(unit, pre, netns, box.root), timeout=300)
        log = (logs / f"{service}{tag}.log").open("wb")
        processes[service] = subprocess.Popen(  # noqa: S603
            _as_unit(unit, unit["ExecStart"][0], netns, box.root),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        if service == "enclave-redis":
            socket = box.path(f"{DATA_DIR}/redis/redis.sock")
            deadline = time.monotonic() + 30
            while not socket.exists() and time.monotonic() < deadline:
                time.sleep(0.2)
    health: dict[str, object] = {}
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes.values()):
            break
        health = _health(box, netns)
        if health.get("status") == "ok":
            break
        time.sleep(3)
    _timing(f"services up{tag.replace('.', ' ')} (healthz ok)", time.monotonic() - started)
    return health


def _stop_services(box: Box, processes: dict[str, subprocess.Popen[bytes]]) -> None:
    """Front first, then the workers, the queue last (as the supervisor stops them)."""
    for service in reversed(SERVICES):
        proc = processes.get(service)
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    _kill_all_in(box.root)  # gpg-agent and other children left behind


@pytest.fixture(scope="module")
def running(box: Box) -> Iterator[Running]:
    """The box's services started from their units, until /healthz says ok (or 5 minutes)."""
    if not box.converges or box.converges[0].returncode != 0:
        pytest.fail("the converge failed; nothing to start")
    netns = f"enclave-ci-{os.getpid()}"
    logs = box.base / "service-logs"
    logs.mkdir()
    processes: dict[str, subprocess.Popen[bytes]] = {}
    _run(["bash", str(CONVERGE), "mount", str(box.root)], timeout=120)
    _run(["ip", "netns", "add", netns], timeout=30)
    try:
        _run(["ip", "netns", "exec", netns, "ip", "link", "set", "lo", "up"], timeout=30)
        health = _start_services(box, netns, logs, processes)
        yield Running(netns, processes, logs, health)
    finally:
        _stop_services(box, processes)
        subprocess.run(["ip", "netns", "del", netns], timeout=30, check=False)
        subprocess.run(["bash", str(CONVERGE), "umount", str(box.root)], timeout=120, check=False)


def _logs(running: Running) -> str:
    return "\n".join(
        f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
        for p in sorted(running.logs.iterdir())
    )


def test_services_answer_healthz_ok(running: Running) -> None:
    """gunicorn answers over the box's TLS: database, redis and a worker per queue are up."""
    dead = {n: p.returncode for n, p in running.processes.items() if p.poll() is not None}
    assert not dead, (dead, _logs(running))
    assert running.health.get("status") == "ok", (running.health, _logs(running))
    checks = running.health["checks"]
    assert isinstance(checks, dict)
    assert checks["database"] == {"ok": True}
    assert checks["redis"] == {"ok": True}
    assert all(checks["workers"]["queues"][q] >= 1 for q in QUEUES), checks["workers"]


def test_media_service_answers_on_its_socket(box: Box, running: Running) -> None:
    client = (
        "import socket\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "s.connect('/run/enclave/media.sock')\n"
        "s.sendall(b'GET /health HTTP/1.0\\r\\nHost: media\\r\\n\\r\\n')\n"
        "print(s.recv(4096).decode())\n"
    )
    answer = _run(
        ["ip", "netns", "exec", running.netns, "chroot", str(box.root), "python3", "-c", client], 60
    ).stdout
    assert answer.startswith("HTTP/1.") and " 200 " in answer.splitlines()[0], answer
    assert '"status": "ok"' in answer


def test_services_run_as_the_service_user(box: Box, running: Running) -> None:
    """Every process, gunicorn on port 443 and its workers included, runs as enclave."""
    uid, _gid = _user_ids(box.root, "enclave")
    in_root = _processes_in(box.root)
    for service in SERVICES:
        main = running.processes[service].pid
        assert main in in_root, f"{service} (pid {main}) is not running inside the root"
        pids = [main, *(p for p in in_root if _parent(p) == main)]
        for pid in pids:
            status = Path(f"/proc/{pid}/status").read_text()
            uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)\s+(\d+)", status, re.M)
            assert uids, status
            assert {int(u) for u in uids.groups()} == {uid}, (service, pid, status[:400])
        if service == "enclave-web":
            assert len(pids) == 1 + 2, "gunicorn runs its two workers as children"


def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return -1
    return int(stat.rsplit(")", 1)[1].split()[1])


def _as_service_user(
    box: Box, netns: str, *argv: str, env: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    unit = _unit(box.path(f"{UNIT_DIR}/enclave-scheduler.service"))
    command = shlex.join(argv)
    full = _as_unit(unit, command, netns, box.root)
    if env:
        position = full.index("-C") + 2
        full[position:position] = list(env)
    return _run(full, timeout=300, check=False)


def test_database_opens_only_with_the_key(box: Box, running: Running) -> None:
    """The box's key file opens enclave.db; without the key it is noise, and a wrong key
    file or raw key is refused."""
    python = "/opt/enclave/venv/bin/python"
    opened = _as_service_user(
        box,
        running.netns,
        python,
        "-c",
        "from appliance.settings import load_settings\n"
        "from appliance.store import Store\n"
        "store = Store.open(load_settings(), pool_size=1)\n"
        "store.ping()\n"
        "print('opened with the key file')\n"
        "store.close()\n",
    )
    assert opened.returncode == 0 and "opened with the key file" in opened.stdout, opened.stderr

    db = box.path(f"{DATA_DIR}/enclave.db")
    assert db.read_bytes()[:16] != b"SQLite format 3\x00", "the database file is not encrypted"
    copy = box.path("/tmp/enclave-copy.db")
    shutil.copyfile(db, copy)
    try:
        no_key = box.chroot(
            "python3", "-c",
            "import sqlite3\n"
            "db = sqlite3.connect('/tmp/enclave-copy.db')\n"
            "db.execute('select count(*) from sqlite_master')\n",
            check=False,
        )  # fmt: skip
        assert no_key.returncode != 0 and "file is not a database" in no_key.stderr, no_key
        wrong_raw_key = box.chroot(
            python, "-c",
            "import sqlcipher3\n"
            "c = sqlcipher3.connect('/tmp/enclave-copy.db')\n"
            "c.execute(\"PRAGMA key = \\\"x'\" + '00' * 32 + \"'\\\"\")\n"
            "c.execute('select count(*) from sqlite_master')\n",
            check=False,
        )  # fmt: skip
        assert wrong_raw_key.returncode != 0 and "file is not a database" in wrong_raw_key.stderr
    finally:
        copy.unlink()

    wrong = box.path("/run/enclave/wrong.key")
    wrong.write_bytes(os.urandom(32))
    uid, gid = _user_ids(box.root, "enclave")
    os.chown(wrong, uid, gid)
    wrong.chmod(0o600)
    try:
        refused = _as_service_user(
            box, running.netns, "/opt/enclave/venv/bin/appliance", "db", "upgrade",
            env=("ENCLAVE_KEY_FILE=/run/enclave/wrong.key",),
        )  # fmt: skip
    finally:
        wrong.unlink()
    assert refused.returncode == 2, (refused.stdout, refused.stderr)
    assert "key" in refused.stderr.lower(), refused.stderr


def test_backup_service_writes_an_encrypted_backup(box: Box, running: Running) -> None:
    """The timer's service, run once as its unit says, writes a backup and the keyring."""
    unit = _unit(box.path(f"{UNIT_DIR}/enclave-backup.service"))
    before = set(box.path("/var/backups/enclave").glob("enclave-*.bak"))
    result = _run(
        _as_unit(unit, unit["ExecStart"][0], running.netns, box.root), timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    backups = sorted(set(box.path("/var/backups/enclave").glob("enclave-*.bak")) - before)
    assert len(backups) == 1, backups
    assert box.path("/var/backups/enclave/keyring.krg").is_file()
    assert b"SQLite format 3" not in backups[0].read_bytes()


# --- the upgrade rollback drill (issue 9, item 2) ------------------------------------
# Last in the module: it stops the services above, upgrades the box to a broken release
# (tests/ops/rollback_release.py: a migration that changes the database and raises),
# and checks that the playbook puts the previous release and its data back.

DRILL_VERSION = "0.1.1"
RELEASES = "/opt/enclave/releases"
PYTHON = "/opt/enclave/venv/bin/python"
MARKER_CODE = "rollback-drill"
MARKER_NAME = "written before the upgrade"
OPEN_STORE = (
    "import json\n"
    "from sqlalchemy import inspect\n"
    "from appliance import migrate\n"
    "from appliance.settings import load_settings\n"
    "from appliance.store import Store\n"
    "store = Store.open(load_settings(), pool_size=1)\n"
)
WRITE_MARKER = OPEN_STORE + (
    "from appliance.records.org import OrgKind, OrgUnit\n"
    "with store.transaction() as s:\n"
    f"    unit = OrgUnit(kind=OrgKind.HQ, name={MARKER_NAME!r}, code={MARKER_CODE!r})\n"
    "    s.add(unit)\n"
    "    s.flush()\n"
    "    unit.place_under(None)\n"
    "store.close()\n"
)
PROBE = OPEN_STORE + (
    "from sqlalchemy import select\n"
    "from appliance.records.org import OrgUnit\n"
    "with store.transaction() as s:\n"
    f"    names = list(s.scalars(select(OrgUnit.name).where(OrgUnit.code == {MARKER_CODE!r})))\n"
    "columns = [col['name'] for col in inspect(store.engine).get_columns('org_units')]\n"
    "print(json.dumps({'revision': migrate.current_revision(store.engine),\n"
    "                  'marker': names, 'columns': columns}))\n"
    "store.close()\n"
)


@dataclass
class Drill:
    before: dict[str, object]
    upgrade: Converge
    venv_after: str
    after: dict[str, object]
    health: dict[str, object]
    reconverge: Converge
    ca_before: bytes
    ca_after: bytes


def _probe(box: Box, netns: str) -> dict[str, object]:
    """The database as the release in appliance_venv opens it with the box's key file."""
    result = _as_service_user(box, netns, PYTHON, "-c", PROBE)
    if result.returncode != 0:
        return {"error": f"exit {result.returncode}: {result.stderr[-3000:]}"}
    answer: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


def _box_ca(box: Box) -> bytes:
    """The box's internal CA: browsers and worker hosts (mTLS) trust it; it must survive."""
    ca = box.path(f"{DATA_DIR}/certs/ca.pem")
    return ca.read_bytes() if ca.exists() else b""


@pytest.fixture(scope="module")
def drill(box: Box, running: Running) -> Drill:
    """Marker written, services stopped, converge with the broken release, then: the
    services started again from their units, the database probed, converge once more."""
    written = _as_service_user(box, running.netns, PYTHON, "-c", WRITE_MARKER)
    assert written.returncode == 0, (written.stdout, written.stderr)
    before = _probe(box, running.netns)
    assert "error" not in before, before
    ca_before = _box_ca(box)
    _stop_services(box, running.processes)
    broken_release(box.base / "wheelhouse", DRILL_VERSION)
    upgrade = _converge(
        box,
        box.base / "wheelhouse",
        "-e",
        f"appliance_version={DRILL_VERSION}",
        log="converge-broken-upgrade.log",
    )
    _timing(f"rollback drill: converge to the broken {DRILL_VERSION}", upgrade.seconds)
    venv_after = os.readlink(box.path("/opt/enclave/venv"))
    # The converge unmounted the root's /proc, /dev... on its way out.
    _run(["bash", str(CONVERGE), "mount", str(box.root)], timeout=120)
    try:
        health = _start_services(
            box, running.netns, running.logs, running.processes, tag=".after-rollback"
        )
    except pytest.fail.Exception as failed:  # an ExecStartPre failed: say so in the tests
        health = {"status": "did not start", "error": str(failed)[-3000:]}
    after = _probe(box, running.netns)
    ca_after = _box_ca(box)
    _stop_services(box, running.processes)
    reconverge = _converge(box, box.base / "wheelhouse", log="converge-after-rollback.log")
    _timing("rollback drill: converge after the rollback", reconverge.seconds)
    _run(["bash", str(CONVERGE), "mount", str(box.root)], timeout=120)
    return Drill(before, upgrade, venv_after, after, health, reconverge, ca_before, ca_after)


def test_a_failed_upgrade_fails_the_play_saying_rolled_back(box: Box, drill: Drill) -> None:
    """The broken release's migration fails: the play stops, says ROLLED BACK and that the
    data was restored from the pre-upgrade backup (the migrations had run)."""
    assert drill.upgrade.returncode != 0, drill.upgrade.output[-8000:]
    output = drill.upgrade.output
    assert "ROLLED BACK" in output, output[-8000:]
    assert "Run the schema migrations" in output
    stem = f"/var/backups/enclave-upgrade/pre-{DRILL_VERSION}-from-0.1.0"
    assert f"with the data restored from {stem}.bak" in output, output[-8000:]
    for suffix in (".bak", ".krg", ".key"):
        assert box.path(stem + suffix).is_file(), suffix
    assert drill.upgrade.recap()["failed"] == 1


def test_the_rollback_puts_the_previous_release_back(box: Box, drill: Drill) -> None:
    """appliance_venv links to the release the box ran; the broken one stays for diagnosis."""
    assert drill.venv_after == f"{RELEASES}/0.1.0"
    assert box.path(f"{RELEASES}/{DRILL_VERSION}/bin/appliance").is_file()


def test_the_rollback_restores_the_data_at_the_previous_revision(drill: Drill) -> None:
    """The database opens with the key, at the revision before the upgrade, with the data
    written before it, and nothing of what the failed migration changed."""
    assert "error" not in drill.after, (drill.after, drill.upgrade.output[-6000:])
    assert drill.before["marker"] == [MARKER_NAME]
    assert drill.after["revision"] == drill.before["revision"] != DRILL_REVISION
    assert drill.after["marker"] == [MARKER_NAME]
    assert drill.after["columns"] == drill.before["columns"]
    assert DRILL_COLUMN not in drill.after["columns"]  # type: ignore[operator]


def test_the_services_come_back_after_the_rollback(drill: Drill, running: Running) -> None:
    """The previous release's services start from their units and /healthz says ok."""
    assert drill.health.get("status") == "ok", (drill.health, _logs(running))


def test_the_rollback_keeps_the_box_ca(drill: Drill) -> None:
    """A rollback must not change the box's identity: the internal CA that browsers and
    the worker hosts' client certificates (mTLS) trust is the one from before."""
    assert drill.ca_before, "no CA before the upgrade"
    assert drill.ca_after == drill.ca_before, "the rollback replaced the box's CA"


def test_a_converge_after_the_rollback_changes_nothing(drill: Drill) -> None:
    """With appliance_version back at the running release, the box is as the play wants it."""
    assert drill.reconverge.returncode == 0, drill.reconverge.output[-8000:]
    recap = drill.reconverge.recap()
    assert recap["changed"] == 0 and recap["failed"] == 0, (
        recap,
        changed_tasks(drill.reconverge.output),
    )
