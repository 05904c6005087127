"""Backups carry data but not the subject keyring; a restore uses the keyring as it is now."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from sqlalchemy import select

from appliance.backup import Credential, _safe_members, backup, export_keyring, restore
from appliance.errors import IntegrityError, SubjectKeyDestroyed, WrongKeyError
from appliance.personal import UNAVAILABLE
from appliance.records import Candidate, Comment, Job, OrgUnit
from appliance.settings import Settings
from appliance.store import Store
from tests.appliance.helpers import add_candidate, org_and_job
from tests.conftest import PASSPHRASE, settings_for


def _fill(store: Store) -> dict[str, tuple[str, str]]:
    """Three candidates with a comment and a multi-chunk blob each: subject -> (name, blob)."""
    out = {}
    with store.transaction() as session:
        unit, job, user = org_and_job(session)
        for i, name in enumerate(["上官雨桐", "Nadia Okafor", "诸葛明轩"]):
            cand = add_candidate(
                store,
                session,
                unit,
                job,
                user,
                name,
                f"1380000{i:04d}",
                f"p{i}@example.cn",
                f"面试备注 {name}",
            )
            blob = store.blobs.put(cand.subject_id, [os.urandom(700_000), name.encode() * 1000])
            out[cand.subject_id] = (name, blob)
    return out


def _snapshot(store: Store) -> dict[str, object]:
    with store.session() as session:
        return {
            "candidates": sorted(
                (c.subject_id, str(c.name), str(c.phone), str(c.email))
                for c in session.scalars(select(Candidate))
            ),
            "comments": sorted(
                (c.subject_id, str(c.body)) for c in session.scalars(select(Comment))
            ),
            "jobs": sorted(j.title for j in session.scalars(select(Job))),
            "units": sorted(u.path for u in session.scalars(select(OrgUnit))),
        }


def _restore(
    store: Store, root: Path, name: str, bak: Path, krg: Path, credential: Credential | None = None
) -> Store:
    target = settings_for(root / name)
    restore(
        target.data_dir,
        bak,
        krg,
        credential or Credential(passphrase=PASSPHRASE),
        target.unseal_key_file,
    )
    return Store.open(target)


def test_backup_then_restore_gives_the_same_records_and_blobs(
    store: Store, short_tmp: Path
) -> None:
    """Restoring into a new dir reproduces every record and every blob byte for byte."""
    people = _fill(store)
    before = _snapshot(store)
    blobs = {bid: store.blobs.read_bytes(bid) for _n, bid in people.values()}
    backup(store, short_tmp / "b.bak")
    export_keyring(store, short_tmp / "k.krg")
    restored = _restore(store, short_tmp, "r1", short_tmp / "b.bak", short_tmp / "k.krg")
    assert _snapshot(restored) == before
    assert {bid: restored.blobs.read_bytes(bid) for bid in blobs} == blobs
    restored.close()


def test_subject_deleted_between_backup_and_restore_stays_unreadable(
    store: Store, short_tmp: Path
) -> None:
    """Shred after the backup: with the current keyring their rows and blobs are gone in the
    restored copy too, while everyone else restores intact (PIPL Art. 47)."""
    people = _fill(store)
    backup(store, short_tmp / "b.bak")
    gone = next(iter(people))
    with store.transaction() as session:
        store.shred_subject(session, gone)
    export_keyring(store, short_tmp / "k.krg")
    restored = _restore(store, short_tmp, "r2", short_tmp / "b.bak", short_tmp / "k.krg")
    with restored.session() as session:
        rows = {c.subject_id: c for c in session.scalars(select(Candidate))}
        assert rows[gone].name is UNAVAILABLE and rows[gone].phone is UNAVAILABLE
        for subject_id, (name, _blob) in people.items():
            if subject_id != gone:
                assert rows[subject_id].name == name
    with pytest.raises(SubjectKeyDestroyed):
        restored.blobs.read_bytes(people[gone][1])
    for subject_id, (name, blob) in people.items():
        if subject_id != gone:
            assert restored.blobs.read_bytes(blob).endswith(name.encode())
    restored.close()


def test_backup_file_holds_no_keyring_and_no_plaintext(store: Store, short_tmp: Path) -> None:
    """The backup is encrypted end to end: no names, no subject key files, no keystore JSON."""
    people = _fill(store)
    backup(store, short_tmp / "b.bak")
    content = (short_tmp / "b.bak").read_bytes()
    for name, _blob in people.values():
        assert name.encode() not in content
    assert b"subjects/" not in content and b"unseal.key" not in content
    for subject_id in people:
        assert store.keyring.data_key(subject_id) not in content


def test_tampered_backup_and_wrong_passphrase_are_refused(store: Store, short_tmp: Path) -> None:
    """A changed byte fails the restore with the record named; a wrong passphrase is refused."""
    _fill(store)
    backup(store, short_tmp / "b.bak")
    export_keyring(store, short_tmp / "k.krg")
    raw = bytearray((short_tmp / "b.bak").read_bytes())
    raw[len(raw) // 2] ^= 0x01
    (short_tmp / "bad.bak").write_bytes(bytes(raw))
    with pytest.raises(IntegrityError, match="record .* failed authentication"):
        _restore(store, short_tmp, "r3", short_tmp / "bad.bak", short_tmp / "k.krg")
    assert not (short_tmp / "r3").exists() or not any((short_tmp / "r3").iterdir())
    with pytest.raises(WrongKeyError):
        _restore(
            store,
            short_tmp,
            "r4",
            short_tmp / "b.bak",
            short_tmp / "k.krg",
            Credential(passphrase="WRONG"),
        )
    assert not (short_tmp / "r4").exists(), "a refused restore must not leave a half-made dir"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "ENCLAVE_CONFIG": ""},
    )


def test_cli_round_trip_and_refusal_to_overwrite(
    store: Store, settings: Settings, short_tmp: Path
) -> None:
    """`appliance backup`, `keyring export` and `restore` work from the command line; restore
    into a non-empty dir exits 2 without --force and succeeds with it."""
    _fill(store)
    before = _snapshot(store)
    data = str(settings.data_dir)
    assert _cli("backup", "--data-dir", data, "--out", str(short_tmp / "c.bak")).returncode == 0
    exported = _cli("keyring", "export", "--data-dir", data, "--out", str(short_tmp / "c.krg"))
    assert exported.returncode == 0 and "Exported 3 subject keys" in exported.stdout
    target = short_tmp / "r5"
    args = [
        "restore",
        "--data-dir",
        str(target),
        "--from",
        str(short_tmp / "c.bak"),
        "--keyring",
        str(short_tmp / "c.krg"),
        "--key-file",
        str(settings.unseal_key_file),
    ]
    first = _cli(*args)
    assert first.returncode == 0, first.stderr
    again = _cli(*args)
    assert again.returncode == 2 and "not empty" in again.stderr
    forced = _cli(*args, "--force")
    assert forced.returncode == 0, forced.stderr
    restored = Store.open(settings_for(target))
    assert _snapshot(restored) == before
    restored.close()


def test_restored_box_still_verifies_its_signed_audit_log(store: Store, short_tmp: Path) -> None:
    """The box's GPG key travels in the backup: checkpoints signed before it verify after."""
    from compliance import audit
    from compliance.actors import Actor
    from compliance.signing import stop_agent

    _fill(store)
    for _ in range(3):
        audit.record(store, Actor.system("backup-test"), "read", "candidates:1", "processing")
    audit.checkpoint_now(store)
    backup(store, short_tmp / "a.bak")
    export_keyring(store, short_tmp / "a.krg")
    restored = _restore(store, short_tmp, "r6", short_tmp / "a.bak", short_tmp / "a.krg")
    try:
        result = audit.verify_live(restored)
        assert result.ok, result.problem
        assert result.checkpoints >= 1 and result.events == 3
    finally:
        stop_agent(restored.data_dir / "gnupg")
        stop_agent(store.data_dir / "gnupg")
        restored.close()


def test_a_forced_restore_with_a_wrong_passphrase_keeps_the_data_that_is_there(
    store: Store, settings: Settings, short_tmp: Path
) -> None:
    """--force clears the dir only once the backup and keyring unlock (issue 9's drill)."""
    _fill(store)
    before = _snapshot(store)
    backup(store, short_tmp / "b.bak")
    export_keyring(store, short_tmp / "k.krg")
    store.close()
    with pytest.raises(WrongKeyError):
        restore(
            settings.data_dir,
            short_tmp / "b.bak",
            short_tmp / "k.krg",
            Credential(passphrase="WRONG"),
            settings.unseal_key_file,
            force=True,
        )
    again = Store.open(settings)
    assert _snapshot(again) == before
    again.close()


def test_restore_works_where_tarfile_has_no_extraction_filter(
    store: Store, short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Debian 12's Python is 3.11.2: `extractall(filter=...)` came in 3.11.4."""
    monkeypatch.setattr("appliance.backup._DATA_FILTER", {})
    _fill(store)
    before = _snapshot(store)
    backup(store, short_tmp / "b.bak")
    export_keyring(store, short_tmp / "k.krg")
    restored = _restore(store, short_tmp, "r7", short_tmp / "b.bak", short_tmp / "k.krg")
    assert _snapshot(restored) == before
    restored.close()


@pytest.mark.parametrize("name", ["../outside", "/etc/passwd", "blobs/../../outside"])
def test_an_archive_entry_outside_the_data_dir_is_refused(name: str) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = b"x"
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    raw.seek(0)
    with tarfile.open(fileobj=raw, mode="r|") as tar, pytest.raises(IntegrityError):
        list(_safe_members(tar))


def test_a_link_in_the_archive_is_refused() -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("db/enclave.db")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/shadow"
        tar.addfile(info)
    raw.seek(0)
    with tarfile.open(fileobj=raw, mode="r|") as tar, pytest.raises(IntegrityError):
        list(_safe_members(tar))
