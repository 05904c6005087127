"""`appliance doctor` (issue 9, item 5): every check on a real box, the exit codes
(0 ok, 1 warn, 2 fail) and the JSON form."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from rq import Worker

from appliance import doctor
from appliance.settings import Settings
from appliance.store import Store
from tests.conftest import Box

REPO = Path(__file__).resolve().parents[2]
CHECK_NAMES = ["keys", "disk", "certificates", "redis", "workers", "models", "clock", "backups"]


def run_doctor(settings: Settings, backup_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    env.update(ENCLAVE_CONFIG="", ENCLAVE_SECRETS="/nonexistent/secrets.toml", PYTHONPATH=str(REPO))
    argv = ["-m", "appliance", "doctor", "--json", "--data-dir", str(settings.data_dir)]
    return subprocess.run(
        [sys.executable, *argv, "--backup-dir", str(backup_dir)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def write_backup(folder: Path, age: timedelta) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"enclave-{int(time.time())}.bak"
    path.write_bytes(b"sealed backup bytes")
    moment = time.time() - age.total_seconds()
    os.utime(path, (moment, moment))
    return path


def write_certificate(folder: Path, not_after: datetime) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "doctor test")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_after - timedelta(days=400))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def by_name(checks: list[doctor.Check]) -> dict[str, doctor.Check]:
    return {c.name: c for c in checks}


def test_doctor_on_a_box_without_workers_fails_and_says_why(
    redis_box: Box, short_tmp: Path
) -> None:
    """The CLI on the real box: keys, redis and a fresh backup are ok; no worker runs, so
    `workers` fails and the exit code is 2; the JSON names every check."""
    redis_box.redis.flushdb()
    write_backup(short_tmp / "backups", timedelta(hours=3))
    proc = run_doctor(redis_box.settings, short_tmp / "backups")
    assert proc.returncode == 2, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert [c["name"] for c in report["checks"]] == CHECK_NAMES
    assert report["status"] == "fail"
    assert checks["keys"]["state"] == checks["redis"]["state"] == "ok"
    assert checks["backups"]["state"] == "ok"
    assert checks["models"]["state"] == "ok", checks["models"]["detail"]
    assert checks["workers"]["state"] == "fail"
    assert "realtime" in checks["workers"]["detail"]


def test_workers_with_a_fresh_heartbeat_pass(redis_box: Box, short_tmp: Path) -> None:
    """A registered rq worker that heartbeats for every queue: `workers` is ok."""
    redis_box.redis.flushdb()
    worker = Worker(list(redis_box.settings.workers.queues), connection=redis_box.redis)
    worker.register_birth()
    worker.heartbeat()
    try:
        checks = by_name(doctor.run_checks(redis_box.settings, short_tmp))
    finally:
        worker.register_death()
    assert checks["workers"].state == "ok", checks["workers"].detail


def test_certificate_expiry_warns_then_fails(
    store: Store, settings: Settings, short_tmp: Path
) -> None:
    certs = settings.data_dir / "certs"
    write_certificate(certs, datetime.now(UTC) + timedelta(days=400))
    assert by_name(doctor.run_checks(settings, short_tmp))["certificates"].state == "ok"
    write_certificate(certs, datetime.now(UTC) + timedelta(days=10))
    soon = by_name(doctor.run_checks(settings, short_tmp))["certificates"]
    assert soon.state == "warn" and "expires in" in soon.detail
    write_certificate(certs, datetime.now(UTC) - timedelta(days=1))
    gone = by_name(doctor.run_checks(settings, short_tmp))["certificates"]
    assert gone.state == "fail" and "expired" in gone.detail


def test_backup_age(store: Store, settings: Settings, short_tmp: Path) -> None:
    """No backup warns; a day old is ok; three days warns; eight days fails."""
    folder = short_tmp / "backups"
    assert by_name(doctor.run_checks(settings, folder))["backups"].state == "warn"
    for age, state in ((1, "ok"), (3, "warn"), (8, "fail")):
        for old in folder.glob("*.bak"):
            old.unlink()
        write_backup(folder, timedelta(days=age))
        assert by_name(doctor.run_checks(settings, folder))["backups"].state == state, age


def test_a_key_file_that_does_not_unseal_fails(
    store: Store, settings: Settings, short_tmp: Path
) -> None:
    """A wrong unseal key: `keys` fails with the key error, and redis is not even tried."""
    store.close()
    settings.unseal_key_file.write_bytes(os.urandom(32))
    checks = by_name(doctor.run_checks(settings, short_tmp))
    assert checks["keys"].state == "fail" and checks["keys"].detail
    assert checks["redis"].state == "fail" and "keys" in checks["redis"].detail
    assert doctor.overall(list(checks.values())) == "fail"


def test_clock_reads_timedatectl_and_chronyc() -> None:
    """The two tools' real output forms; neither answering is a warning, not a pass."""
    outputs = {
        ("timedatectl", "yes"): True,
        ("timedatectl", "no"): False,
    }
    for (tool, text), expected in outputs.items():
        assert (
            doctor.ntp_synchronised(lambda argv, t=tool, x=text: x if argv[0] == t else None)
            is expected
        )
    chrony = "Reference ID    : C0A80001 (ntp.hospital)\nLeap status     : Normal\n"
    assert doctor.ntp_synchronised(lambda argv: chrony if argv[0] == "chronyc" else None) is True
    unsynced = "Leap status     : Not synchronised\n"
    assert doctor.ntp_synchronised(lambda argv: unsynced if argv[0] == "chronyc" else None) is False
    assert doctor.ntp_synchronised(lambda argv: None) is None


def test_exit_codes_follow_the_worst_check() -> None:
    ok, warn, fail = (doctor.Check("x", s, "") for s in ("ok", "warn", "fail"))
    assert doctor.EXIT_CODES[doctor.overall([ok, ok])] == 0
    assert doctor.EXIT_CODES[doctor.overall([ok, warn])] == 1
    assert doctor.EXIT_CODES[doctor.overall([warn, fail, ok])] == 2
