"""Signed exports: `appliance audit export` writes what the issue lists, the standalone
`compliance/verify.py` (plain python3, standard library only) accepts it and names the
first thing that was changed, and stock `gpg --verify` checks the manifest."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy import select, text

from appliance.datadir import init_data_dir
from appliance.records import AuditEvent
from appliance.settings import AuditSettings, Settings
from appliance.store import Store
from compliance import audit, merkle, signing
from compliance.actors import Actor
from compliance.export import ExportError, export_log, inclusion_lines, parse_time
from tests.conftest import settings_for

ROOT = Path(__file__).parents[2]
VERIFY = ROOT / "compliance" / "verify.py"
APPLIANCE = str(Path(sys.executable).with_name("appliance"))
EVENTS = 23


def system_python() -> str:
    """A python3 that is not this virtualenv's: verify.py must run on a bare interpreter."""
    venv = Path(sys.prefix).resolve()
    for candidate in ("/usr/bin/python3", shutil.which("python3")):
        if candidate and Path(candidate).exists():
            if venv not in Path(candidate).resolve().parents:
                return candidate
    raise AssertionError("no python3 outside the virtualenv (Debian's python3 is expected)")


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    env.update(ENCLAVE_CONFIG="", ENCLAVE_SECRETS="/nonexistent/secrets.toml")
    return env


def run_verify(
    folder: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """verify.py copied alone into an empty folder, run isolated (-I: no site-packages, no
    PYTHONPATH, not even its own folder on sys.path): it can only use the standard library."""
    with tempfile.TemporaryDirectory(prefix="encverify") as tmp:
        script = Path(tmp) / "verify.py"
        shutil.copy(VERIFY, script)
        return subprocess.run(
            [system_python(), "-I", str(script), str(folder), *args],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp,
            env=env,
        )


@dataclass(frozen=True)
class Box:
    settings: Settings
    store: Store
    export: Path
    """A whole-log export made by the CLI; tests work on copies."""


@pytest.fixture(scope="module")
def box() -> Iterator[Box]:
    root = Path(tempfile.mkdtemp(prefix="enc"))
    settings = settings_for(root / "data")
    store = init_data_dir(settings, "TEST-PASS").store
    audit.configure(store, AuditSettings(checkpoint_every=5))
    actor = Actor.system("seed")
    for i in range(EVENTS):
        audit.record(
            store,
            actor,
            "candidate.read",
            f"candidates:{i}",
            "screening",
            subject_ids=[f"subj{i:04d}"],
            fields=["name", "phone"],
        )
    out = root / "export"
    done = subprocess.run(
        [APPLIANCE, "audit", "export", "--data-dir", str(settings.data_dir), "--out", str(out)],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    try:
        yield Box(settings, store, out)
    finally:
        signing.stop_agent(signing.gnupg_home(settings.data_dir))
        store.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def export(box: Box, short_tmp: Path) -> Path:
    copy = short_tmp / "export"
    shutil.copytree(box.export, copy)
    return copy


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def test_the_export_holds_the_issues_files(export: Path) -> None:
    names = sorted(p.name for p in export.iterdir())
    assert names == [
        "box-public-key.asc",
        "checkpoints.jsonl",
        "events.jsonl",
        "manifest.json",
        "manifest.json.asc",
        "proofs.jsonl",
    ]
    manifest = json.loads((export / "manifest.json").read_text())
    assert sorted(manifest["files"]) == [
        "box-public-key.asc",
        "checkpoints.jsonl",
        "events.jsonl",
        "proofs.jsonl",
    ]
    assert (export / "manifest.json.asc").read_text().startswith("-----BEGIN PGP SIGNATURE-----")
    assert "BEGIN PGP PUBLIC KEY BLOCK" in (export / "box-public-key.asc").read_text()


def test_events_are_the_leaf_bytes_and_the_export_itself_is_audited(box: Box, export: Path) -> None:
    exported = lines(export / "events.jsonl")
    assert len(exported) == EVENTS + 1  # and the export's own event
    with box.store.session() as session:
        stored = session.scalars(
            select(AuditEvent).where(AuditEvent.seq <= EVENTS).order_by(AuditEvent.seq)
        ).all()
    assert exported == [audit.event_bytes(e) for e in stored]
    assert [audit.leaf_hash(line) for line in exported] == [e.leaf_hash for e in stored]
    last = json.loads(exported[-1])
    assert last["action"] == "audit.export" and last["actor"].startswith("cli:")
    assert last["role"] == "system" and last["purpose"] == "audit export"


def test_checkpoints_and_proofs_are_rfc_9162(export: Path) -> None:
    checkpoints = [json.loads(line) for line in lines(export / "checkpoints.jsonl")]
    assert [c["size"] for c in checkpoints] == [5, 10, 15, 20, EVENTS + 1]
    assert all(sorted(c) == ["root", "signature", "size", "time"] for c in checkpoints)
    leaves = [audit.leaf_hash(line) for line in lines(export / "events.jsonl")]
    tree = merkle.MerkleTree(leaves)
    for c in checkpoints:
        assert tree.root(c["size"]).hex() == c["root"]
    proofs = [json.loads(line) for line in lines(export / "proofs.jsonl")]
    consistency = [p for p in proofs if p["kind"] == "consistency"]
    inclusion = [p for p in proofs if p["kind"] == "inclusion"]
    assert proofs[: len(consistency)] == consistency  # consistency proofs come first
    assert [(p["first"], p["second"]) for p in consistency] == [
        (5, 10),
        (10, 15),
        (15, 20),
        (20, EVENTS + 1),
    ]
    for p in consistency:
        old, new = tree.root(p["first"]), tree.root(p["second"])
        path = [bytes.fromhex(h) for h in p["path"]]
        assert merkle.verify_consistency(p["first"], p["second"], old, new, path)
    assert [p["index"] for p in inclusion] == list(range(EVENTS + 1))
    for p in inclusion:
        path = [bytes.fromhex(h) for h in p["path"]]
        leaf = bytes.fromhex(p["leaf_hash"])
        assert leaf == leaves[p["index"]]
        assert merkle.verify_inclusion(leaf, p["index"], p["tree_size"], path, tree.root())


def test_proof_lines_are_canonical_json() -> None:
    """The fast line builder writes exactly `canonical(InclusionProof.as_dict())`."""
    leaves = [merkle.leaf_hash(bytes([i])) for i in range(37)]
    tree = merkle.MerkleTree(leaves)
    built = list(inclusion_lines(tree, range(3, 37)))
    for i, line in zip(range(3, 37), built, strict=True):
        proof = audit.InclusionProof(i, 37, leaves[i], tree.inclusion_proof(i), tree.root())
        assert line == audit.canonical(proof.as_dict()) + b"\n"


def test_verify_py_accepts_the_export_with_plain_python3(export: Path) -> None:
    done = run_verify(export)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ALL CHECKS PASSED" in done.stdout
    assert "signatures: manifest.json and 5 checkpoints signed by box key" in done.stdout
    thorough = run_verify(export, "--thorough")
    assert thorough.returncode == 0, thorough.stdout + thorough.stderr
    assert "verify one by one (RFC 9162)" in thorough.stdout


def test_verify_py_imports_only_the_standard_library() -> None:
    tree = ast.parse(VERIFY.read_text())
    modules = {
        (node.module or "").split(".")[0] if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert modules <= set(sys.stdlib_module_names) | {"__future__"}, modules


def _change_byte(path: Path, line_no: int, old: bytes, new: bytes) -> None:
    content = lines(path)
    assert old in content[line_no]
    content[line_no] = content[line_no].replace(old, new, 1)
    path.write_bytes(b"\n".join(content) + b"\n")


def test_a_changed_byte_in_events_jsonl_fails_verify_py(export: Path) -> None:
    _change_byte(export / "events.jsonl", 17, b"candidates:17", b"candidates:71")
    done = run_verify(export)
    assert done.returncode == 1, done.stdout
    assert "FAILED: events.jsonl: sha256 does not match manifest.json" in done.stdout
    # ...and it says which event: line 18 holds event 17.
    assert "events.jsonl line 18: event 17 is not the event the box signed" in done.stdout


def test_a_changed_event_with_a_rewritten_manifest_still_fails(export: Path) -> None:
    """Fixing up the manifest's hash does not help: the manifest signature then fails."""
    import hashlib

    _change_byte(export / "events.jsonl", 3, b'"result":"allowed"', b'"result":"denied"')
    manifest = json.loads((export / "manifest.json").read_text())
    manifest["files"]["events.jsonl"] = hashlib.sha256(
        (export / "events.jsonl").read_bytes()
    ).hexdigest()
    (export / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    done = run_verify(export)
    assert done.returncode == 1
    assert "FAILED: manifest.json.asc: not a good signature by the box key" in done.stdout
    assert "events.jsonl line 4: event 3 is not the event the box signed" in done.stdout


def test_a_removed_or_reordered_line_fails_verify_py(export: Path) -> None:
    content = lines(export / "events.jsonl")
    content[5], content[6] = content[6], content[5]
    (export / "events.jsonl").write_bytes(b"\n".join(content) + b"\n")
    done = run_verify(export)
    assert done.returncode == 1
    assert "events.jsonl line 6: expected event 5, found event 6" in done.stdout


def test_a_changed_proof_fails_verify_py(export: Path) -> None:
    proofs = lines(export / "proofs.jsonl")
    target = next(i for i, line in enumerate(proofs) if line.startswith(b'{"index":9,'))
    data = json.loads(proofs[target])
    data["path"][1] = "00" * 32
    proofs[target] = audit.canonical(data)
    (export / "proofs.jsonl").write_bytes(b"\n".join(proofs) + b"\n")
    done = run_verify(export, "--skip-signatures")
    assert done.returncode == 1
    assert f"proofs.jsonl line {target + 1} (inclusion proof of event 9): does not lead" in (
        done.stdout
    )


def test_a_changed_checkpoint_fails_verify_py(export: Path) -> None:
    checkpoints = lines(export / "checkpoints.jsonl")
    data = json.loads(checkpoints[1])
    data["time"] = data["time"].replace("Z", "1Z")
    checkpoints[1] = audit.canonical(data)
    (export / "checkpoints.jsonl").write_bytes(b"\n".join(checkpoints) + b"\n")
    done = run_verify(export)
    assert done.returncode == 1
    assert "checkpoints.jsonl line 2: not a good signature by the box key" in done.stdout


def _gpg_verify_manifest(folder: Path) -> subprocess.CompletedProcess[str]:
    """What an auditor types, with stock gpg and a keyring holding only the box key."""
    home = Path(tempfile.mkdtemp(prefix="encg"))
    home.chmod(0o700)
    try:
        gpg = ["gpg", "--homedir", str(home), "--batch"]
        subprocess.run([*gpg, "--import", str(folder / "box-public-key.asc")], check=True)
        return subprocess.run(
            [*gpg, "--verify", str(folder / "manifest.json.asc"), str(folder / "manifest.json")],
            capture_output=True,
            text=True,
        )
    finally:
        signing.stop_agent(home)
        shutil.rmtree(home, ignore_errors=True)


def test_gpg_verify_accepts_the_manifest_and_rejects_a_changed_one(export: Path) -> None:
    good = _gpg_verify_manifest(export)
    assert good.returncode == 0, good.stderr
    assert "Good signature" in good.stderr
    manifest = export / "manifest.json"
    manifest.write_bytes(manifest.read_bytes().replace(b'"tree_size": 24', b'"tree_size": 25'))
    bad = _gpg_verify_manifest(export)
    assert bad.returncode != 0
    assert "BAD signature" in bad.stderr


def test_without_gpg_signatures_are_said_not_checked(export: Path) -> None:
    env = {"PATH": str(export), "LANG": "C.UTF-8"}  # a PATH with no gpg on it
    done = run_verify(export, env=env)
    assert done.returncode == 3, done.stdout
    assert "SIGNATURES NOT CHECKED: gpg is not installed" in done.stdout
    accepted = run_verify(export, "--skip-signatures", env=env)
    assert accepted.returncode == 0
    assert "SIGNATURES NOT CHECKED: --skip-signatures was given" in accepted.stdout


def test_a_partial_range_verifies_on_its_own(box: Box, short_tmp: Path) -> None:
    with box.store.session() as session:
        at = {seq: moment for seq, moment in session.execute(select(AuditEvent.seq, AuditEvent.at))}
    out = short_tmp / "range"
    summary = export_log(
        box.store, Actor.system("test"), out, start=at[7], end=at[13], settings=box.settings
    )
    assert (summary.first_seq, summary.last_seq) == (7, 12)
    exported = [json.loads(line)["seq"] for line in lines(out / "events.jsonl")]
    assert exported == list(range(7, 13))
    sizes = [json.loads(line)["size"] for line in lines(out / "checkpoints.jsonl")]
    assert sizes[0] == 5 and sizes[-1] == summary.tree_size  # links back, ends sealed
    for args in ((), ("--thorough",)):
        done = run_verify(out, *args)
        assert done.returncode == 0, done.stdout + done.stderr
    _change_byte(out / "events.jsonl", 2, b"candidates:9", b"candidates:8")
    done = run_verify(out, "--skip-signatures")
    assert done.returncode == 1
    assert "events.jsonl line 3: event 9 is not the event the box signed" in done.stdout


def test_an_empty_range_still_exports_a_signed_checkpoint(box: Box, short_tmp: Path) -> None:
    future = parse_time("2999-01-01", box.settings.zone)
    summary = export_log(box.store, Actor.system("test"), short_tmp / "none", start=future)
    assert summary.events == 0
    assert (short_tmp / "none" / "events.jsonl").read_bytes() == b""
    done = run_verify(short_tmp / "none")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "holds no events" in done.stdout


def test_export_refuses_a_folder_that_is_not_empty(box: Box, short_tmp: Path) -> None:
    (short_tmp / "busy").mkdir()
    (short_tmp / "busy" / "x").write_text("x")
    with pytest.raises(ExportError, match="not empty"):
        export_log(box.store, Actor.system("test"), short_tmp / "busy")


def test_times_without_an_offset_are_the_hospitals(box: Box) -> None:
    zone = box.settings.zone  # Asia/Shanghai, UTC+8
    assert parse_time("2026-01-31", zone) == parse_time("2026-01-30T16:00:00Z", zone)
    assert parse_time("2026-01-31T08:30", zone) == parse_time("2026-01-31T00:30+00:00", zone)
    assert parse_time(None, zone) is None
    with pytest.raises(ExportError, match="ISO 8601"):
        parse_time("last tuesday", zone)
    assert parse_time("2026-01-31T08:30:00+08:00", zone) == parse_time(
        "2026-01-31 00:30:00+00:00", zone
    )


def test_export_refuses_a_tampered_log(short_tmp: Path) -> None:
    settings = settings_for(short_tmp / "data")
    store = init_data_dir(settings, "TEST-PASS").store
    try:
        for i in range(3):
            audit.record(store, Actor.system("seed"), "candidate.read", f"c:{i}", "screening")
        with store.engine.begin() as conn:
            conn.execute(text("UPDATE audit_events SET entity = 'c:9' WHERE seq = 1"))
        with pytest.raises(audit.AuditIntegrityError, match="event 1: content does not match"):
            export_log(store, Actor.system("test"), short_tmp / "out")
    finally:
        signing.stop_agent(signing.gnupg_home(settings.data_dir))
        store.close()


def _standalone() -> ModuleType:
    spec = importlib.util.spec_from_file_location("standalone_verify", VERIFY)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_verifiers_fast_path_holds_for_every_range(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """verify.py's fast path (rebuild from the leaves, compare every proof line with the
    tree) accepts the exporter's proofs for every contiguous range of every tree up to 20
    leaves and a few larger ones, with chunk edges anywhere, and names a changed line."""
    v = _standalone()
    monkeypatch.setattr(v, "PROOF_CHUNK", 3)
    cases = [(n, a, b) for n in range(1, 21) for a in range(n) for b in range(a + 1, n + 1)]
    cases += [(n, a, b) for n in (37, 64, 65, 100) for a, b in ((0, n), (1, n - 1), (n // 3, n))]
    for n, a, b in cases:
        leaves = [merkle.leaf_hash(b"e%d" % i) for i in range(n)]
        tree = merkle.MerkleTree(leaves)
        folder = short_tmp / f"{n}-{a}-{b}"
        folder.mkdir()
        head = b'{"first":1,"kind":"consistency","path":[],"second":1}\n'
        body = b"".join(inclusion_lines(tree, range(a, b)))
        (folder / "proofs.jsonl").write_bytes(head + body)
        proofs = v.ProofsFile(str(folder))
        assert v.check_inclusion_fast(proofs, a, leaves[a:b], n, tree.root()), (n, a, b)
        assert not v.check_inclusion_fast(proofs, a, leaves[a:b], n, leaves[0] * (n > 1))
        if b - a < 3:
            continue
        k = (a + b) // 2  # change one path node of one line in the middle
        proof = tree.inclusion_proof(k)
        bad = audit.InclusionProof(k, n, leaves[k], [proof[0][::-1], *proof[1:]], tree.root())
        lines_ = body.splitlines(keepends=True)
        lines_[k - a] = audit.canonical(bad.as_dict()) + b"\n"
        (folder / "proofs.jsonl").write_bytes(head + b"".join(lines_))
        proofs = v.ProofsFile(str(folder))
        with pytest.raises(v.Failure, match=f"line {k - a + 2} .*event {k}.*does not lead"):
            v.check_inclusion_fast(proofs, a, leaves[a:b], n, tree.root())


def test_the_verifiers_line_lengths_match_the_lines(short_tmp: Path) -> None:
    """The second half of the proof lines is checked from the byte where the first half's
    shape says it starts: that arithmetic agrees with the real lines everywhere."""
    v = _standalone()
    for n in [*range(2, 70), 127, 128, 129, 1000, 1025]:
        tree = merkle.MerkleTree([merkle.leaf_hash(b"%d" % i) for i in range(n)])
        widths = [len(level) for level in tree.levels]
        lengths = [len(line) for line in inclusion_lines(tree, range(n))]
        for a in {0, 1, n // 3, n // 2, n - 1}:
            for b in {a, a + 1, (a + n) // 2, n}:
                assert v._lines_length(a, b, n, widths) == sum(lengths[a:b]), (n, a, b)


def test_the_verifier_splits_its_work_and_still_names_the_first_failure(
    export: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With the work split in two processes (as for a big export), a change in either half
    is found and named."""
    v = _standalone()
    monkeypatch.setattr(v, "PARALLEL_FROM", 2)
    assert v.verify(str(export), skip_signatures=True) == 0
    _change_byte(export / "events.jsonl", 20, b"candidates:20", b"candidates:02")
    assert v.verify(str(export), skip_signatures=True) == 1
    assert (
        "events.jsonl line 21: event 20 is not the event the box signed" in capsys.readouterr().out
    )
    _change_byte(export / "events.jsonl", 20, b"candidates:02", b"candidates:20")
    proofs = lines(export / "proofs.jsonl")
    target = next(i for i, line in enumerate(proofs) if line.startswith(b'{"index":19,'))
    data = json.loads(proofs[target])
    data["path"][0] = "ab" * 32
    proofs[target] = audit.canonical(data)
    (export / "proofs.jsonl").write_bytes(b"\n".join(proofs) + b"\n")
    assert v.verify(str(export), skip_signatures=True) == 1
    out = capsys.readouterr().out
    assert f"proofs.jsonl line {target + 1} (inclusion proof of event 19): does not lead" in out
