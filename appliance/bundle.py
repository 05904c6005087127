"""The air-gapped install bundle (issue #9, item 2): everything a host without internet needs.

Made on a connected machine that has the box's data dir (its GPG key signs the bundle)
with `appliance bundle --out DIR`; hospital IT carries DIR to the hosts (USB disk,
share) and runs the playbook with `appliance_bundle_dir` pointing at it. Layout:

    wheels/              enclave-hr and every Python dependency (scripts/build-wheelhouse.sh)
    models/              the weight packages (`appliance models fetch --from DIR/models`)
    debs/                the Debian packages and what they depend on, with a `Packages`
                         index so apt can use the folder as a local repository
    ansible/             the playbook, roles, inventories and vendored collections
    bundle.json          what this is: version, date, counts, the signing key's fingerprint
    MANIFEST.sha256      sha256 of every file above, in `sha256sum -c` format
    MANIFEST.sha256.asc  the box key's detached OpenPGP signature over MANIFEST.sha256
    signing-key.asc      the box's public key (armoured), and signing-key.gpg (binary,
                         for gpgv)

The manifest is in coreutils' format so a bare Debian host checks it with gpgv and
sha256sum alone, before anything from the bundle is installed. The key travels in the
bundle, so the signature proves nothing by itself: the verifier (`appliance bundle
verify --fingerprint`, the playbook's `appliance_bundle_fingerprint`) pins the
fingerprint printed when the bundle was made.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import shutil
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from appliance.errors import ApplianceError

log = logging.getLogger("enclave.bundle")
Echo = Callable[[str], None]

MANIFEST = "MANIFEST.sha256"
SIGNATURE = "MANIFEST.sha256.asc"
PUBLIC_KEY = "signing-key.asc"
PUBLIC_KEYRING = "signing-key.gpg"
METADATA = "bundle.json"
UNLISTED = frozenset({MANIFEST, SIGNATURE, PUBLIC_KEY, PUBLIC_KEYRING})
REPO = Path(__file__).resolve().parents[1]

DEFAULT_DEBS = (
    # base role
    "acl",
    "ca-certificates",
    "chrony",
    "gnupg",
    "logrotate",
    "python3",
    "python3-venv",
    "nftables",
    # appliance role: the interpreter the wheels are built for, and what the wheels link
    "python3.11",
    "python3.11-venv",
    "libsqlcipher1",
    # redis role
    "redis-server",
)
_APT_DEPENDS = (
    "--recurse",
    "--no-recommends",
    "--no-suggests",
    "--no-conflicts",
    "--no-breaks",
    "--no-replaces",
    "--no-enhances",
)


class BundleError(ApplianceError):
    """The bundle cannot be made, or does not verify; the message says which file and why."""

    exit_code = 2


@dataclass(frozen=True)
class BundleSpec:
    """What goes in. Defaults: the whole release; narrower for tests and partial refreshes."""

    out: Path
    wheelhouse: Path | None = None
    """Wheels to take (e.g. a CI cache); None: build them with scripts/build-wheelhouse.sh."""
    wheels: tuple[str, ...] = ()
    """Only wheels whose file name matches one of these globs; empty: all."""
    debs: tuple[str, ...] = DEFAULT_DEBS
    deb_dependencies: bool = True
    playbook: Path = field(default=REPO / "ansible")


# --- making it -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signer:
    """The box key, as `compliance.signing.BoxSigner` offers it (passed in: `appliance`
    does not import `compliance`)."""

    sign: Callable[[bytes], str]
    public_key: str
    fingerprint: str


def make_bundle(
    spec: BundleSpec, signer: Signer, collect_models: Callable[[Path], int], echo: Echo = print
) -> Path:
    """Fill `spec.out` (which must be empty or absent), write the manifest and sign it.

    `collect_models(folder)` puts the weight packages into `folder` and returns their
    number (`models.bundle.collect_archives`, given by the CLI: `appliance` does not
    import `models`)."""
    out = spec.out
    if out.exists() and any(out.iterdir()):
        raise BundleError(f"{out} is not empty; give a new folder for the bundle")
    out.mkdir(parents=True, exist_ok=True)
    counts = {
        "wheels": collect_wheels(spec, out / "wheels", echo),
        "models": _models(collect_models, out / "models", echo),
        "debs": collect_debs(spec.debs, spec.deb_dependencies, out / "debs", echo),
    }
    shutil.copytree(spec.playbook, out / "ansible", ignore=shutil.ignore_patterns("__pycache__"))
    _write_metadata(out, counts, signer.fingerprint)
    manifest = manifest_text(out)
    (out / MANIFEST).write_text(manifest)
    (out / SIGNATURE).write_text(signer.sign(manifest.encode()))
    (out / PUBLIC_KEY).write_text(signer.public_key)
    (out / PUBLIC_KEYRING).write_bytes(_dearmor(signer.public_key))
    echo(f"bundle {out}: {counts}, signed by {signer.fingerprint}")
    return out


def _models(collect: Callable[[Path], int], folder: Path, echo: Echo) -> int:
    folder.mkdir()
    count = collect(folder)
    echo(f"models: {count} package(s)")
    return count


def collect_wheels(spec: BundleSpec, folder: Path, echo: Echo) -> int:
    folder.mkdir()
    if spec.wheelhouse is None:
        script = REPO / "scripts" / "build-wheelhouse.sh"
        _run([str(script), str(folder)], "building the wheelhouse")
    else:
        for wheel in sorted(spec.wheelhouse.glob("*.whl")):
            if not spec.wheels or any(fnmatch.fnmatch(wheel.name, g) for g in spec.wheels):
                shutil.copy2(wheel, folder / wheel.name)
    count = len(list(folder.glob("*.whl")))
    if count == 0:
        raise BundleError(f"no wheels for the bundle (wheelhouse {spec.wheelhouse})")
    echo(f"wheels: {count}")
    return count


def collect_debs(names: Sequence[str], dependencies: bool, folder: Path, echo: Echo) -> int:
    """`apt-get download` of `names` (and, with `dependencies`, everything they depend on,
    since the target may be a minimal Debian), then a `Packages` index for apt."""
    folder.mkdir()
    if not names:
        return 0
    wanted = deb_closure(names) if dependencies else sorted(set(names))
    _run(["apt-get", "download", "-q", *wanted], "apt-get download", cwd=folder)
    index = _run(["dpkg-scanpackages", "--multiversion", "."], "dpkg-scanpackages", cwd=folder)
    (folder / "Packages").write_text(index)
    count = len(list(folder.glob("*.deb")))
    echo(f"debs: {count}")
    return count


def deb_closure(names: Iterable[str]) -> list[str]:
    """Real packages `names` depend on, recursively; virtual ones (in <...>) are dropped."""
    listing = _run(["apt-cache", "depends", *_APT_DEPENDS, *names], "apt-cache depends")
    found = {line.strip() for line in listing.splitlines() if line and not line[0].isspace()}
    return sorted(n for n in found if not n.startswith("<"))


def manifest_text(folder: Path) -> str:
    """`sha256  path` lines for every file under `folder` but the manifest's own files."""
    lines = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if relative not in UNLISTED:
            lines.append(f"{sha256_of(path)}  {relative}")
    return "\n".join(lines) + "\n"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_metadata(out: Path, counts: dict[str, int], fingerprint: str) -> None:
    from importlib.metadata import version

    metadata = {
        "format": 1,
        "enclave_hr": version("enclave-hr"),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "counts": counts,
        "signing_fingerprint": fingerprint,
    }
    (out / METADATA).write_text(json.dumps(metadata, indent=2) + "\n")


def _dearmor(armoured: str) -> bytes:
    result = subprocess.run(  # noqa: S603
        [shutil.which("gpg") or "/usr/bin/gpg", "--dearmor"],
        input=armoured.encode(),
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        raise BundleError(f"gpg --dearmor failed: {result.stderr.decode()[-300:]}")
    return result.stdout


def _run(command: list[str], what: str, cwd: Path | None = None) -> str:
    result = subprocess.run(  # noqa: S603 (fixed programs, names from our own lists)
        command, cwd=cwd, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise BundleError(f"{what} failed ({result.returncode}): {result.stderr.strip()[-1500:]}")
    return result.stdout


# --- checking it -----------------------------------------------------------------------------


SignatureCheck = Callable[[str, bytes, str], str | None]
"""(public key, data, signature) -> the signer's fingerprint, or None: as
`compliance.signing.verify_with_public_key` does it (a fresh keyring, stock gpg)."""


def verify_bundle(
    folder: Path, check_signature: SignatureCheck, fingerprint: str | None = None
) -> str:
    """Check the signature and every file; return the signing key's fingerprint.

    Refuses a bad signature, a key other than `fingerprint` (when given), a file whose
    sha256 differs, a listed file that is missing, and a file the manifest does not list
    (something slipped in after signing).
    """
    manifest = _read(folder / MANIFEST)
    signer = check_signature(
        _read(folder / PUBLIC_KEY).decode(), manifest, _read(folder / SIGNATURE).decode()
    )
    if signer is None:
        raise BundleError(f"{folder / SIGNATURE} is not a good signature over {MANIFEST}")
    if fingerprint is not None and signer.upper() != fingerprint.replace(" ", "").upper():
        raise BundleError(f"the bundle is signed by {signer}, not by the expected {fingerprint}")
    listed = _parse_manifest(manifest.decode())
    problems = [f"{name}: {why}" for name, why in _file_problems(folder, listed)]
    if problems:
        raise BundleError("the bundle does not match its manifest: " + "; ".join(problems))
    return signer


def _parse_manifest(text: str) -> dict[str, str]:
    listed = {}
    for line in text.splitlines():
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name or name.startswith("/") or ".." in name.split("/"):
            raise BundleError(f"{MANIFEST} has a malformed line: {line[:120]!r}")
        listed[name] = digest
    return listed


def _file_problems(folder: Path, listed: dict[str, str]) -> list[tuple[str, str]]:
    problems = []
    for name, digest in sorted(listed.items()):
        path = folder / name
        if not path.is_file():
            problems.append((name, "missing"))
        elif sha256_of(path) != digest:
            problems.append((name, "sha256 differs"))
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        if name not in listed and name not in UNLISTED:
            problems.append((name, "not in the manifest"))
    return problems


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc.strerror}") from None
