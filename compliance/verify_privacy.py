#!/usr/bin/env python3
"""Check an Enclave HR deletion certificate or audit pack on your own computer.

    python3 verify_privacy.py FOLDER [--fingerprint FPR]

Like verify.py (the audit-export verifier beside it), this file is meant to be
read: Python 3.8+ and its standard library, plus `gpg` (GnuPG) for the
signatures. It imports nothing from Enclave HR and sends nothing anywhere.

A deletion certificate folder holds:

  certificate.json      the certificate, the exact bytes the box signed: what was
                        deleted for which subject id, when, by whom, on what basis;
                        and, under "audit", the audit-log event that entered it, the
                        event's inclusion path and the signed checkpoint it is in
  certificate.json.asc  the box's detached OpenPGP signature over certificate.json
  box-public-key.asc    the box's public key

Checked, in order (the first failure is named, exit status 1):

  1. the signature over certificate.json, with gpg in a temporary keyring holding
     only box-public-key.asc, and that key is the one the certificate names (compare
     its fingerprint with the one the box shows, or pass --fingerprint);
  2. the certificate's body (without "audit") hashes to the sha256 that the audit
     event carries, and the event is the certificate's: action deletion.certificate,
     entity deletion_certificates:<id>, the same subject id and sequence number;
  3. the event is in the audit log: its leaf hash SHA-256(0x00 || event) with the
     inclusion path leads to the checkpoint's root (RFC 9162 2.1.3.2);
  4. the checkpoint's signature over {"root","size","time"} verifies with the box key.

An audit pack folder holds manifest.json (format enclave-hr-audit-pack/1), its
signature manifest.json.asc, box-public-key.asc and the files the manifest lists.
Checked: the manifest's signature, every file's sha256, and the signature of the
audit-log checkpoint the manifest names.

Exit status: 0 all checks hold; 1 a check failed; 2 the folder is neither;
3 gpg is not installed (signatures NOT checked).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any

CERTIFICATE_FORMAT = "enclave-hr-deletion-certificate/1"
PACK_FORMAT = "enclave-hr-audit-pack/1"


class Failure(Exception):
    """A check that does not hold."""


class NoGpg(Exception):
    """gpg is not installed."""


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def verify_inclusion(leaf: bytes, index: int, size: int, path: list, root: bytes) -> bool:
    """RFC 9162 2.1.3.2."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


class Gpg:
    """Stock gpg with a throw-away keyring holding only the box's public key."""

    def __init__(self, public_key_path: str) -> None:
        self.exe = shutil.which("gpg") or shutil.which("gpg2")
        if self.exe is None:
            raise NoGpg()
        self.home = tempfile.mkdtemp(prefix="encp")  # short: gpg-agent's socket path
        os.chmod(self.home, 0o700)
        self._run(["--import", public_key_path])
        out = self._run(["--with-colons", "--fingerprint"]).stdout.decode("utf-8", "replace")
        fprs = [line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:")]
        if not fprs:
            raise Failure("box-public-key.asc holds no OpenPGP public key gpg can read")
        self.fingerprint = fprs[0]

    def _run(self, args: list, data: bytes | None = None) -> Any:
        return subprocess.run(  # noqa: S603 (gpg from PATH, arguments we build)
            [self.exe, "--homedir", self.home, "--batch", "--no-tty", "--status-fd", "1", *args],
            input=data,
            capture_output=True,
            check=False,
        )

    def signer(self, data: bytes, signature: str) -> str | None:
        fd, sig_path = tempfile.mkstemp(dir=self.home, suffix=".asc")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(signature)
            result = self._run(["--verify", sig_path, "-"], data=data)
        finally:
            os.unlink(sig_path)
        for line in result.stdout.decode("utf-8", "replace").splitlines():
            parts = line.split()
            if result.returncode == 0 and parts[:2] == ["[GNUPG:]", "VALIDSIG"]:
                return parts[11] if len(parts) > 11 else parts[2]
        return None

    def check(self, data: bytes, signature: str, what: str) -> None:
        if self.signer(data, signature) != self.fingerprint:
            raise Failure(what + ": the signature does not verify with box-public-key.asc")

    def close(self) -> None:
        gpgconf = shutil.which("gpgconf")
        if gpgconf:
            subprocess.run(  # noqa: S603 (gpgconf from PATH, fixed arguments)
                [gpgconf, "--homedir", self.home, "--kill", "gpg-agent"],
                capture_output=True,
                check=False,
            )
        shutil.rmtree(self.home, ignore_errors=True)


def read(folder: str, name: str) -> bytes:
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        raise Failure(name + " is missing")
    with open(path, "rb") as fh:
        return fh.read()


def check_checkpoint(gpg: Gpg, checkpoint: dict) -> bytes:
    """The checkpoint's signature; returns its root."""
    try:
        size, root, stamp, signature = (
            checkpoint["size"],
            checkpoint["root"],
            checkpoint["time"],
            checkpoint["signature"],
        )
        root_bytes = bytes.fromhex(root)
    except (KeyError, TypeError, ValueError):
        raise Failure("the audit checkpoint is not {size, root, time, signature}") from None
    gpg.check(canonical({"root": root, "size": size, "time": stamp}), signature, "checkpoint")
    return root_bytes


def verify_certificate(folder: str, gpg: Gpg, say: Any) -> None:
    raw = read(folder, "certificate.json")
    body = json.loads(raw)
    if body.get("format") != CERTIFICATE_FORMAT:
        raise Failure("certificate.json is not an Enclave HR deletion certificate")
    gpg.check(raw, read(folder, "certificate.json.asc").decode(), "certificate.json")
    if body.get("box_key_fingerprint") != gpg.fingerprint:
        raise Failure("the certificate names another box key than box-public-key.asc")
    say("certificate.json is signed by the box key " + gpg.fingerprint)

    trail = body.get("audit") or {}
    core = {k: v for k, v in body.items() if k != "audit"}
    core_sha = hashlib.sha256(canonical(core)).hexdigest()
    if trail.get("core_sha256") != core_sha:
        raise Failure("the certificate's body does not hash to the sha256 its audit entry names")
    line = str(trail.get("event", "")).encode("utf-8")
    try:
        event = json.loads(line)
    except ValueError:
        raise Failure("the audit event is not JSON") from None
    if canonical(event) != line:
        raise Failure("the audit event is not in the canonical form the box hashes")
    expected = {
        "action": "deletion.certificate",
        "entity": "deletion_certificates:" + str(body.get("certificate_id")),
        "subject_ids": [body.get("subject_id")],
        "seq": trail.get("seq"),
    }
    for key, value in expected.items():
        if event.get(key) != value:
            raise Failure(f"the audit event's {key} is {event.get(key)!r}, expected {value!r}")
    if "certificate.sha256:" + core_sha not in event.get("fields", []):
        raise Failure("the audit event does not carry this certificate's sha256")
    say(f"audit event {event['seq']} is this certificate's entry ({event['time']})")

    checkpoint = trail.get("checkpoint") or {}
    root = check_checkpoint(gpg, checkpoint)
    leaf = hashlib.sha256(b"\x00" + line).digest()
    try:
        path = [bytes.fromhex(h) for h in trail.get("inclusion_path", [])]
    except (TypeError, ValueError):
        raise Failure("the inclusion path is not a list of hex hashes") from None
    if not verify_inclusion(leaf, event["seq"], checkpoint["size"], path, root):
        raise Failure(f"audit event {event['seq']} is not in checkpoint size {checkpoint['size']}")
    say(
        f"the event is in the audit log's signed checkpoint of size {checkpoint['size']} "
        f"({checkpoint['time']})"
    )
    deleted = body.get("deleted", {})
    say(
        f"subject {body.get('subject_id')}: {sum(deleted.get('records', {}).values())} records, "
        f"{len(deleted.get('blobs', []))} files, key destroyed: "
        f"{deleted.get('subject_key_destroyed')}; issued by {body.get('issued_by')} at "
        f"{body.get('deleted_at')}"
    )


def verify_pack(folder: str, gpg: Gpg, say: Any) -> None:
    raw = read(folder, "manifest.json")
    manifest = json.loads(raw)
    if manifest.get("format") != PACK_FORMAT:
        raise Failure("manifest.json is not an Enclave HR audit pack's")
    gpg.check(raw, read(folder, "manifest.json.asc").decode(), "manifest.json")
    if manifest.get("box_key_fingerprint") != gpg.fingerprint:
        raise Failure("the manifest names another box key than box-public-key.asc")
    say("manifest.json is signed by the box key " + gpg.fingerprint)
    for name, digest in sorted(manifest.get("files", {}).items()):
        if os.path.basename(name) != name:
            raise Failure("manifest.json lists " + name + ", which is not a file of the pack")
        if hashlib.sha256(read(folder, name)).hexdigest() != digest:
            raise Failure(name + ": sha256 does not match manifest.json (changed after export)")
    present = set(os.listdir(folder)) - {"manifest.json", "manifest.json.asc"}
    extra = sorted(present - set(manifest.get("files", {})))
    if extra:
        raise Failure("files not in manifest.json: " + ", ".join(extra))
    say(f"{len(manifest['files'])} files match their sha256")
    if manifest.get("audit_checkpoint"):
        check_checkpoint(gpg, manifest["audit_checkpoint"])
        say(f"audit checkpoint of size {manifest['audit_checkpoint']['size']} is signed")


def verify(folder: str, fingerprint: str | None = None) -> int:
    if os.path.isfile(os.path.join(folder, "certificate.json")):
        check = verify_certificate
    elif os.path.isfile(os.path.join(folder, "manifest.json")):
        check = verify_pack
    else:
        print("FAILED: " + folder + " holds neither certificate.json nor manifest.json")
        return 2
    try:
        gpg = Gpg(os.path.join(folder, "box-public-key.asc"))
    except NoGpg:
        print("SIGNATURES NOT CHECKED: gpg is not installed (install GnuPG and run again)")
        return 3
    except Failure as exc:
        print("FAILED: " + str(exc))
        return 1
    try:
        print("      box key fingerprint " + gpg.fingerprint)
        if fingerprint and fingerprint.replace(" ", "").upper() != gpg.fingerprint:
            raise Failure(f"box-public-key.asc is key {gpg.fingerprint}, not {fingerprint}")
        check(folder, gpg, lambda text: print("ok    " + text))
    except Failure as exc:
        print("\nFAILED: " + str(exc))
        return 1
    except (ValueError, KeyError, TypeError) as exc:
        print(f"\nFAILED: the folder is malformed ({type(exc).__name__}: {exc})")
        return 1
    finally:
        gpg.close()
    print("\nALL CHECKS PASSED")
    return 0


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Verify an Enclave HR deletion certificate or audit pack offline."
    )
    parser.add_argument("folder")
    parser.add_argument("--fingerprint", help="the box key fingerprint you expect")
    args = parser.parse_args(argv)
    return verify(args.folder, args.fingerprint)


if __name__ == "__main__":
    sys.exit(main())
