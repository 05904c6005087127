"""`appliance internal-api` is egress-guarded like every long-running process of the box
(issue 9, item 6): the real command, in its own process, on a real data dir, refuses an
outbound connection and a name lookup once it serves, and logs the refusal as its own.

The probe runs inside that process at the moment it starts serving (the server's
`serve_forever` is wrapped), so what it shows is the guard the command itself installed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from appliance.settings import Settings
from appliance.store import Store
from certs.authority import ensure_server_certificate, issue_worker_certificate
from tests.ops.test_egress_guard import REPO, box_env, json_lines

PROBE = r"""
import json, socket, socketserver, sys

def probe(self, *args, **kwargs):
    from appliance import egress
    results = {"policy": getattr(egress.active_policy(), "process", None)}
    def attempt(name, fn):
        try:
            fn()
            results[name] = "allowed"
        except egress.EgressRefused as exc:
            results[name] = "refused: " + str(exc)
        except OSError as exc:
            results[name] = "other: " + type(exc).__name__
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    attempt("loopback", lambda: socket.create_connection(("127.0.0.1", port), timeout=5).close())
    attempt("ip", lambda: socket.create_connection(("192.0.2.1", 443), timeout=5))
    attempt("dns", lambda: socket.getaddrinfo("updates.example.com", 443))
    print("PROBE " + json.dumps(results), flush=True)

socketserver.BaseServer.serve_forever = probe
from appliance.cli import main
sys.argv = ["appliance", "internal-api", "--host", "127.0.0.1", "--port", "0"]
main()
"""


def test_internal_api_process_refuses_outbound_connections(
    store: Store, settings: Settings
) -> None:
    """Loopback passes; a TCP connection to TEST-NET-1 and a DNS lookup are refused with
    EgressRefused, each logged as a JSON line naming the internal-api process."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=REPO,
        env=box_env(settings.data_dir),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("PROBE "))
    results = json.loads(line.removeprefix("PROBE "))
    assert results["policy"] == "internal-api"
    assert results["loopback"] == "allowed"
    assert results["ip"].startswith("refused: egress refused"), results["ip"]
    assert results["dns"].startswith("refused: egress refused"), results["dns"]

    logs = json_lines(proc.stderr)
    assert any(entry["message"].startswith("egress guard on in internal-api") for entry in logs)
    refusals = [entry for entry in logs if entry["message"].startswith("egress refused")]
    assert {"192.0.2.1:443", "updates.example.com:443"} <= {e["target"] for e in refusals}
    assert all(entry["process"] == "internal-api" for entry in refusals)


# --- the scale-out worker host (workers.remote) ----------------------------------------

BOX_ADDRESS = "192.0.2.10"
REDIS_ADDRESS = "192.0.2.11"

REMOTE_PROBE = r"""
import json, socket, sys
from workers import remote

def probe(redis, name, burst):
    from appliance import egress
    policy = egress.active_policy()
    results = {"policy": getattr(policy, "process", None)}
    def attempt(name, fn):
        try:
            fn()
            results[name] = "allowed"
        except egress.EgressRefused as exc:
            results[name] = "refused: " + str(exc)
        except OSError as exc:  # let through by the guard; nothing answers there
            results[name] = "other: " + type(exc).__name__
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    attempt("loopback", lambda: socket.create_connection(("127.0.0.1", port), timeout=5).close())
    attempt("box", lambda: socket.create_connection((sys.argv[1], 8444), timeout=0.2).close())
    attempt("redis", lambda: socket.create_connection((sys.argv[2], 6380), timeout=0.2).close())
    attempt("outside", lambda: socket.create_connection(("198.51.100.7", 443), timeout=5))
    attempt("dns", lambda: socket.getaddrinfo("updates.example.com", 443))
    print("PROBE " + json.dumps(results), flush=True)

remote.work = probe  # what `_work_queue` calls once the guard is on and Redis is set up
sys.exit(remote.main(sys.argv[3:]))
"""


def test_remote_worker_process_refuses_outbound_connections(tmp_path: Path) -> None:
    """`python -m workers.remote` on a worker host (no data dir, no appliance.toml) installs
    the guard itself: loopback, the box's internal API host and its Redis TLS host pass the
    guard; any other address and a DNS lookup are refused and logged as the remote worker's."""
    ensure_server_certificate(tmp_path / "box-certs", ["localhost"])
    creds = issue_worker_certificate(tmp_path / "box-certs", "gpu-1", tmp_path / "worker")
    password = tmp_path / "worker" / "redis-password"
    password.write_text("not-used-by-the-probe")
    args = [
        "--box", f"https://{BOX_ADDRESS}:8444", "--ca", str(creds.ca_path),
        "--cert", str(creds.cert_path), "--key", str(creds.key_path),
        "--redis", f"{REDIS_ADDRESS}:6380", "--redis-password-file", str(password),
        "--device", "cpu",
    ]  # fmt: skip
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-c", REMOTE_PROBE, BOX_ADDRESS, REDIS_ADDRESS, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("PROBE "))
    results = json.loads(line.removeprefix("PROBE "))
    assert results["policy"] == "remote-worker"
    assert results["loopback"] == "allowed"
    for allowed in ("box", "redis"):
        assert not results[allowed].startswith("refused"), results[allowed]
    assert results["outside"].startswith("refused: egress refused"), results["outside"]
    assert results["dns"].startswith("refused: egress refused"), results["dns"]

    logs = json_lines(proc.stderr)
    assert any(e["message"].startswith("egress guard on in remote-worker") for e in logs)
    refusals = [entry for entry in logs if entry["message"].startswith("egress refused")]
    assert {"198.51.100.7:443", "updates.example.com:443"} <= {e["target"] for e in refusals}
    assert all(entry["process"] == "remote-worker" for entry in refusals)
