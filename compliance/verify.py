#!/usr/bin/env python3
"""Check an Enclave HR audit export on your own computer.

    python3 verify.py EXPORT_DIR [--fingerprint FPR] [--thorough] [--skip-signatures]

This file is meant to be read. It needs only Python 3.8+ and its standard
library, plus `gpg` (GnuPG) for the signatures; it imports nothing from
Enclave HR and sends nothing anywhere.

What an export holds (all written by the box):

  events.jsonl        one audit event per line, in sequence order; each line
                      is exactly the bytes the box hashed: leaf = SHA-256(0x00 || line)
  checkpoints.jsonl   signed tree heads {"root","size","time","signature"}; the
                      signature is an OpenPGP detached signature over the
                      canonical JSON {"root":..,"size":..,"time":..}
  proofs.jsonl        RFC 9162 proofs, hashes in hex, one JSON object a line:
                      first a consistency proof between each two consecutive
                      checkpoints {"first","kind":"consistency","path","second"},
                      then an inclusion proof of every exported event, in event
                      order, in the tree of the last checkpoint
                      {"index","kind":"inclusion","leaf_hash","path","tree_size"}
  box-public-key.asc  the box's OpenPGP public key
  manifest.json       the SHA-256 of each file above; manifest.json.asc is
                      the box's detached signature over it

What is checked, in order (the first failure is named, exit status 1):

  1. every file's SHA-256 against manifest.json;
  2. manifest.json.asc, and every checkpoint's signature, with `gpg` in a
     temporary keyring that holds only box-public-key.asc (compare the key's
     fingerprint with the one the box shows, or pass --fingerprint);
  3. every consistency proof: each checkpoint is an append-only extension
     of the one before;
  4. every event line: its leaf hash, and that sequence numbers run on with
     no gap;
  5. every inclusion proof: each exported event is in the last checkpoint's
     tree.

Step 5, fast path (the default): the exported events are one contiguous
range, so the verifier rebuilds the last checkpoint's root from all their
leaf hashes plus the few tree nodes outside the range (taken from the first
and last event's proofs). That root matching the signed one proves every
exported event is in the tree, in O(n) hashing instead of O(n log n); each
proof line is then compared with the nodes of the rebuilt tree (a proof
holds exactly when it lists those nodes). --thorough instead runs the
RFC 9162 2.1.3.2 algorithm on every proof line one by one, and also parses
every event line as JSON and checks it is in canonical form. When the root
does not match, the verifier does that anyway, to name the first event or
proof that does not hold.

Speed: a million events verify in about 7 s on two cores. Python runs one
thread's code at a time, so on systems that fork cleanly (Linux, BSD) the
manifest hashes and half of the event and proof checks run in forked
processes (`Background`); elsewhere in one process, about 9 s.

Exit status: 0 all checks hold; 1 a check failed; 2 the directory is not
an export; 3 gpg is not installed, so signatures were NOT checked (with
--skip-signatures: exit 0, still saying so).
"""

from __future__ import annotations

import argparse
import binascii
import hashlib
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import chain, repeat
from typing import Any

FILES = ("events.jsonl", "checkpoints.jsonl", "proofs.jsonl", "box-public-key.asc")

# --- RFC 6962 / 9162 hashing and proof verification ------------------------------------


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def next_level(level: list[bytes]) -> list[bytes]:
    """Pair neighbours; an unpaired last node moves up unchanged (the RFC's tree)."""
    sha = hashlib.sha256
    it = iter(level)
    parents = [sha(b"\x01" + a + b).digest() for a, b in zip(it, it)]  # noqa: B905 (Python 3.8+)
    if len(level) % 2:
        parents.append(level[-1])
    return parents


def merkle_root(leaves: list[bytes]) -> bytes:
    """RFC 9162 2.1.1 MTH over a list of leaf hashes."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    level = leaves
    while len(level) > 1:
        level = next_level(level)
    return level[0]


def verify_inclusion(leaf: bytes, index: int, size: int, path: list[bytes], root: bytes) -> bool:
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


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, path: list[bytes]
) -> bool:
    """RFC 9162 2.1.4.2."""
    if not 0 < first <= second:
        return False
    if first == second:
        return not path and first_root == second_root
    if not path:
        return False
    nodes = list(path)
    if first & (first - 1) == 0:
        nodes.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = nodes[0]
    for c in nodes[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0


def path_positions(index: int, size: int) -> list[tuple[int, int]]:
    """Where each node of an inclusion path sits: (level, index in that level), bottom-up.

    Level k of a tree of `size` leaves has ceil(size / 2**k) nodes; node j covers leaves
    j*2**k .. (j+1)*2**k - 1 (cut at size). The path lists, at each level, the sibling
    of the leaf's ancestor when it has one (an unpaired last node has none).
    """
    positions = []
    level, width = 0, size
    while width > 1:
        sibling = (index >> level) ^ 1
        if sibling < width:
            positions.append((level, sibling))
        level += 1
        width = (width + 1) // 2
    return positions


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


# --- reporting ------------------------------------------------------------------------


class Failure(Exception):
    """A check that does not hold; the message names the file, line and entry."""


class Report:
    def __init__(self) -> None:
        self.failures: list[str] = []

    def ok(self, text: str) -> None:
        print("ok    " + text)

    def fail(self, text: str) -> None:
        self.failures.append(text)
        print("FAIL  " + text)

    def note(self, text: str) -> None:
        print("note  " + text)


# --- running two things at once -----------------------------------------------------

PARALLEL_FROM = 20_000
"""Below this many events the verifier does everything in one process."""

# Python runs one thread's Python code at a time: CPU-bound work goes to a forked
# process where the system forks cleanly (Linux, BSD); elsewhere to a thread (correct,
# just not faster).
_FORK = (
    multiprocessing.get_context("fork")
    if sys.platform != "darwin" and "fork" in multiprocessing.get_all_start_methods()
    else None
)


class Background:
    """fn(*args) running beside the caller; `result()` waits for it. A Failure raised in
    it is raised again by `result()`."""

    def __init__(self, fn: Any, *args: Any) -> None:
        self._outcome: tuple[str, Any] = ("fail", "the background check did not finish")
        self._process: Any = None
        if _FORK is not None:
            self._receive, send = _FORK.Pipe(duplex=False)
            self._process = _FORK.Process(target=_send_outcome, args=(send, fn, args))
            self._process.daemon = True
            self._process.start()
            send.close()
        else:
            self._thread = threading.Thread(target=self._run, args=(fn, args), daemon=True)
            self._thread.start()

    def _run(self, fn: Any, args: tuple[Any, ...]) -> None:
        self._outcome = _outcome_of(fn, args)

    def result(self) -> Any:
        if self._process is not None:
            try:
                self._outcome = self._receive.recv()
            except EOFError:
                self._outcome = ("fail", "a verifier process stopped without an answer")
            self._process.join()
        else:
            self._thread.join()
        kind, value = self._outcome
        if kind == "fail":
            raise Failure(value)
        return value


def _outcome_of(fn: Any, args: tuple[Any, ...]) -> tuple[str, Any]:
    try:
        return ("ok", fn(*args))
    except Failure as exc:
        return ("fail", str(exc))
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        return ("fail", f"{type(exc).__name__}: {exc}")


def _send_outcome(send: Any, fn: Any, args: tuple[Any, ...]) -> None:
    send.send(_outcome_of(fn, args))
    send.close()


# --- manifest -------------------------------------------------------------------------


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(1 << 20)
            if not chunk:
                break
            digest.update(chunk)  # releases the GIL: runs beside the other checks
    return digest.hexdigest()


def load_manifest(folder: str) -> tuple[bytes, dict[str, Any]]:
    path = os.path.join(folder, "manifest.json")
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        manifest = json.loads(raw)
    except FileNotFoundError:
        raise Failure("manifest.json is missing: this is not an Enclave HR audit export") from None
    except ValueError:
        raise Failure("manifest.json is not valid JSON") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        raise Failure("manifest.json has no 'files' table")
    for name in FILES:
        if name not in files:
            raise Failure("manifest.json lists no sha256 for " + name)
        if not os.path.exists(os.path.join(folder, name)):
            raise Failure(name + " is missing from the export")
    return raw, manifest


def check_hashes(folder: str, manifest: dict[str, Any]) -> list[str]:
    """Failures, in file order (run in a thread while the rest is checked)."""
    problems = []
    for name in sorted(manifest["files"]):
        path = os.path.join(folder, name)
        if os.path.basename(name) != name or not os.path.isfile(path):
            problems.append("manifest.json lists " + name + ", which is not in the export")
            continue
        if sha256_file(path) != manifest["files"][name]:
            problems.append(
                name + ": sha256 does not match manifest.json (the file was changed after export)"
            )
    return problems


# --- gpg ------------------------------------------------------------------------------


class Gpg:
    """Stock gpg with a throw-away keyring holding only the box's public key."""

    def __init__(self, public_key_path: str) -> None:
        self.exe = shutil.which("gpg") or shutil.which("gpg2")
        self.home: str | None = None
        self.fingerprint: str | None = None
        if self.exe is None:
            return
        # Short path: gpg-agent's socket must fit in 107 bytes.
        self.home = tempfile.mkdtemp(prefix="encv")
        os.chmod(self.home, 0o700)
        self._run(["--import", public_key_path])
        out = self._run(["--with-colons", "--fingerprint"]).stdout.decode("utf-8", "replace")
        fprs = [line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:")]
        if not fprs:
            raise Failure("box-public-key.asc holds no OpenPGP public key gpg can read")
        self.fingerprint = fprs[0]

    def _run(self, args: list[str], data: bytes | None = None) -> Any:
        assert self.exe is not None and self.home is not None  # noqa: S101 (set in __init__)
        return subprocess.run(  # noqa: S603 (gpg from PATH, arguments we build)
            [self.exe, "--homedir", self.home, "--batch", "--no-tty", "--status-fd", "1", *args],
            input=data,
            capture_output=True,
            check=False,
        )

    def signer(self, data: bytes, signature: str) -> str | None:
        """The fingerprint of the key that made a good `signature` over `data`, else None."""
        fd, sig_path = tempfile.mkstemp(dir=self.home, suffix=".asc")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(signature)
            result = self._run(["--verify", sig_path, "-"], data=data)
        finally:
            os.unlink(sig_path)
        status = result.stdout.decode("utf-8", "replace")
        for line in status.splitlines():
            parts = line.split()
            if result.returncode == 0 and parts[:2] == ["[GNUPG:]", "VALIDSIG"]:
                return parts[11] if len(parts) > 11 else parts[2]
        return None

    def close(self) -> None:
        if self.home is None:
            return
        gpgconf = shutil.which("gpgconf")
        if gpgconf:
            subprocess.run(  # noqa: S603 (gpgconf from PATH, fixed arguments)
                [gpgconf, "--homedir", self.home, "--kill", "gpg-agent"],
                capture_output=True,
                check=False,
            )
        shutil.rmtree(self.home, ignore_errors=True)


# --- checkpoints ------------------------------------------------------------------------


def load_checkpoints(folder: str) -> list[dict[str, Any]]:
    checkpoints: list[dict[str, Any]] = []
    with open(os.path.join(folder, "checkpoints.jsonl"), "rb") as fh:
        for number, line in enumerate(fh, start=1):
            where = f"checkpoints.jsonl line {number}"
            try:
                cp = json.loads(line)
                size, root, stamp = cp["size"], cp["root"], cp["time"]
                if not isinstance(cp["signature"], str):
                    raise TypeError
                root_bytes = bytes.fromhex(root)
            except (ValueError, KeyError, TypeError):
                raise Failure(where + ": not a checkpoint {size, root, time, signature}") from None
            if not isinstance(size, int) or size < 1 or len(root_bytes) != 32:
                raise Failure(where + ": size or root malformed")
            if checkpoints and size <= checkpoints[-1]["size"]:
                raise Failure(where + ": sizes must increase line by line")
            cp["where"] = where
            cp["root_bytes"] = root_bytes
            cp["signed"] = canonical({"root": root, "size": size, "time": stamp})
            checkpoints.append(cp)
    if not checkpoints:
        raise Failure("checkpoints.jsonl holds no checkpoint")
    return checkpoints


def check_signatures(
    gpg: Gpg,
    manifest_raw: bytes,
    folder: str,
    checkpoints: list[dict[str, Any]],
    report: Report,
) -> None:
    with open(os.path.join(folder, "manifest.json.asc")) as fh:
        manifest_sig = fh.read()
    jobs = [("manifest.json.asc", manifest_raw, manifest_sig)]
    jobs += [(cp["where"], cp["signed"], cp["signature"]) for cp in checkpoints]
    with ThreadPoolExecutor(max_workers=4) as pool:
        signers = list(pool.map(lambda job: gpg.signer(job[1], job[2]), jobs))
    bad = [job[0] for job, who in zip(jobs, signers) if who != gpg.fingerprint]  # noqa: B905
    for where in bad:
        what = "the manifest" if where == "manifest.json.asc" else "the checkpoint"
        report.fail(where + ": not a good signature by the box key over " + what)
    if not bad:
        report.ok(
            f"signatures: manifest.json and {len(checkpoints)} checkpoints signed by "
            f"box key {gpg.fingerprint}"
        )


# --- events ----------------------------------------------------------------------------


def read_events(folder: str, thorough: bool) -> tuple[int | None, list[bytes]]:
    """Leaf hashes of every event line, and the seq of the first; checks the sequence.

    Whole-file operations where they can be (split, one comprehension per pass): a
    million lines in Python's per-line loop would cost more than the hashing. The
    second half of the lines is hashed beside the first (see `Background`)."""
    with open(os.path.join(folder, "events.jsonl"), "rb") as fh:
        data = fh.read()
    if data and not data.endswith(b"\n"):
        cut = data.count(b"\n") + 1
        raise Failure(f"events.jsonl line {cut}: the last line is cut short")
    lines = data.split(b"\n")[:-1]
    del data
    if not lines:
        return None, []
    first_seq = _seq_of(lines[0])
    if first_seq is None:
        raise Failure("events.jsonl line 1: not an audit event (no seq)")
    if thorough:
        for number, line in enumerate(lines, start=1):
            _check_canonical(line, number)
    if len(lines) < PARALLEL_FROM:
        return first_seq, _hash_lines(lines, first_seq, 0, len(lines))
    half = len(lines) // 2
    second = Background(_hash_lines, lines, first_seq, half, len(lines))
    leaves: list[bytes] = _hash_lines(lines, first_seq, 0, half)
    blob = second.result()
    leaves += [blob[k : k + 32] for k in range(0, len(blob), 32)]
    return first_seq, leaves


def _hash_lines(lines: list[bytes], first_seq: int, start: int, stop: int) -> Any:
    """Leaf hashes of lines start..stop-1 (joined when in the second half: one message back);
    checks each line holds the event its position says."""
    part = lines[start:stop]
    # Canonical JSON has no spaces: `"seq":17,` appears in event 17's line and no other.
    needles = [b'"seq":%d,' % seq for seq in range(first_seq + start, first_seq + stop)]
    if not all(map(bytes.__contains__, part, needles)):
        for k, (line, needle) in enumerate(zip(part, needles)):  # noqa: B905
            if needle not in line:
                raise Failure(
                    f"events.jsonl line {start + k + 1}: expected event {first_seq + start + k}, "
                    f"found event {_seq_of(line)} (events missing or out of order)"
                )
    sha = hashlib.sha256
    hashes = [sha(b"\x00" + line).digest() for line in part]
    return hashes if start == 0 else b"".join(hashes)


def _seq_of(data: bytes) -> int | None:
    at = data.find(b'"seq":')
    if at < 0:
        return None
    end = data.find(b",", at)
    try:
        return int(data[at + 6 : end if end >= 0 else len(data) - 1])
    except ValueError:
        return None


def _check_canonical(data: bytes, number: int) -> None:
    try:
        parsed = json.loads(data)
    except ValueError:
        raise Failure(f"events.jsonl line {number}: not valid JSON") from None
    if canonical(parsed) != data:
        raise Failure(f"events.jsonl line {number}: not in canonical JSON form")


# --- proofs ----------------------------------------------------------------------------


class ProofsFile:
    """proofs.jsonl: consistency proofs first, then one inclusion proof per event in event
    order. Read in a streaming way: for a million events the inclusion lines run to
    about 1.4 GB."""

    def __init__(self, folder: str) -> None:
        self.path = os.path.join(folder, "proofs.jsonl")
        self.consistency: dict[tuple[int, int], dict[str, Any]] = {}
        self.inclusion_offset = 0
        self.first_line = b""
        self.last_line = b""
        self.head_lines = 0
        with open(self.path, "rb") as fh:
            while True:
                line = fh.readline()
                if not line or line.startswith(b'{"index":'):
                    self.first_line = line
                    break
                self.head_lines += 1
                self.inclusion_offset = fh.tell()
                proof = _json_line(line, f"proofs.jsonl line {self.head_lines}")
                if proof.get("kind") != "consistency":
                    raise Failure(f"proofs.jsonl line {self.head_lines}: unknown proof kind")
                try:
                    pair = (int(proof["first"]), int(proof["second"]))
                except (KeyError, TypeError, ValueError):
                    raise Failure(f"proofs.jsonl line {self.head_lines}: sizes malformed") from None
                self.consistency[pair] = proof
            if self.first_line:
                fh.seek(0, os.SEEK_END)
                end = fh.tell()
                fh.seek(max(self.inclusion_offset, end - 65536))
                tail = fh.read()
                self.last_line = tail[tail.rstrip(b"\n").rfind(b"\n") + 1 :]

    def inclusion_lines(self) -> Iterator[tuple[int, bytes]]:
        """(line number, line) for every line after the consistency proofs."""
        with open(self.path, "rb") as fh:
            fh.seek(self.inclusion_offset)
            yield from enumerate(fh, start=self.head_lines + 1)


def _json_line(line: bytes, where: str) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except ValueError:
        raise Failure(where + ": not valid JSON") from None
    if not isinstance(value, dict):
        raise Failure(where + ": not a JSON object")
    return value


def check_consistency(
    checkpoints: list[dict[str, Any]], proofs: ProofsFile, report: Report
) -> None:
    for old, new in zip(checkpoints, checkpoints[1:]):  # noqa: B905
        proof = proofs.consistency.get((old["size"], new["size"]))
        name = f"consistency {old['size']} -> {new['size']}"
        if proof is None:
            raise Failure("proofs.jsonl holds no " + name + " proof")
        path = _hashes(proof.get("path"), "proofs.jsonl " + name)
        if not verify_consistency(
            old["size"], new["size"], old["root_bytes"], new["root_bytes"], path
        ):
            raise Failure(
                f"proofs.jsonl: {name} does not verify: checkpoint size {new['size']} is not "
                f"an append-only extension of checkpoint size {old['size']}"
            )
    if len(checkpoints) > 1:
        report.ok(f"consistency: each of {len(checkpoints)} checkpoints extends the one before")


def _hashes(values: Any, where: str) -> list[bytes]:
    try:
        out = [bytes.fromhex(v) for v in values]
    except (TypeError, ValueError):
        raise Failure(where + ": hashes malformed") from None
    if any(len(h) != 32 for h in out):
        raise Failure(where + ": hashes must be 32 bytes")
    return out


def _parse_inclusion(line: bytes, where: str) -> tuple[int, int, bytes, list[bytes]]:
    proof = _json_line(line, where)
    try:
        index, size = int(proof["index"]), int(proof["tree_size"])
        leaf = bytes.fromhex(proof["leaf_hash"])
    except (ValueError, KeyError, TypeError):
        raise Failure(where + ": not an inclusion proof") from None
    return index, size, leaf, _hashes(proof.get("path"), where)


def _where(number: int, seq: int) -> str:
    return f"proofs.jsonl line {number} (inclusion proof of event {seq})"


def check_each_inclusion(
    proofs: ProofsFile, first_seq: int, leaves: list[bytes], size: int, root: bytes
) -> None:
    """RFC 9162 on every line, one by one: names the first event that does not hold."""
    count = 0
    for k, (number, line) in enumerate(proofs.inclusion_lines()):
        if k >= len(leaves):
            raise Failure(f"proofs.jsonl line {number}: more inclusion proofs than events")
        seq = first_seq + k
        where = _where(number, seq)
        index, tree_size, leaf, path = _parse_inclusion(line, where)
        if index != seq or tree_size != size:
            raise Failure(f"{where}: proves event {index} in size {tree_size}")
        if leaf != leaves[k]:
            raise Failure(
                f"events.jsonl line {k + 1}: event {seq} is not the event the box signed "
                "(its leaf hash differs from the one its inclusion proof proves)"
            )
        if not verify_inclusion(leaf, index, size, path, root):
            raise Failure(f"{where}: does not lead to the root of checkpoint size {size}")
        count += 1
    if count != len(leaves):
        raise Failure(f"proofs.jsonl holds {count} inclusion proofs for {len(leaves)} events")


class RangeTree:
    """The levels of the tree of `size` leaves, restricted to the nodes over leaves
    [first, first + len(leaves)), plus the neighbours outside that range which the
    inclusion paths name. Those outside nodes come from the first and last event's
    proofs: every outside node that any path in the range names is on one of the two."""

    def __init__(
        self, leaves: list[bytes], first: int, size: int, outside: dict[tuple[int, int], bytes]
    ) -> None:
        self.levels: list[tuple[int, list[bytes]]] = []  # (index of the first node, nodes)
        lo, nodes, width, level = first, leaves, size, 0
        while True:
            if lo % 2 and (level, lo - 1) in outside:
                lo, nodes = lo - 1, [outside[(level, lo - 1)], *nodes]
            hi = lo + len(nodes)
            if hi < width and hi % 2 and (level, hi) in outside:
                nodes = [*nodes, outside[(level, hi)]]
                hi += 1
            self.levels.append((lo, nodes))
            if width == 1:
                break
            if lo % 2 or (hi < width and hi % 2):
                raise Failure("proofs.jsonl: the first or last inclusion path is incomplete")
            nodes = next_level(nodes)
            lo, width, level = lo // 2, (width + 1) // 2, level + 1
        self.root = self.levels[-1][1][0]


def check_inclusion_fast(
    proofs: ProofsFile, first_seq: int, leaves: list[bytes], size: int, root: bytes
) -> bool:
    """Rebuild the root from the leaves; then each line must list exactly the tree's nodes.
    False when the root differs (the caller then names the first event that does not hold)."""
    n = len(leaves)
    outside: dict[tuple[int, int], bytes] = {}
    ends = [(0, proofs.first_line, proofs.head_lines + 1), (n - 1, proofs.last_line, 0)]
    for k, line, number in ends:
        where = _where(number, first_seq + k) if number else "proofs.jsonl last line"
        index, tree_size, _, path = _parse_inclusion(line, where)
        if index != first_seq + k or tree_size != size:
            raise Failure(f"{where}: proves event {index} in size {tree_size}")
        positions = path_positions(index, size)
        if len(positions) != len(path):
            raise Failure(f"{where}: path has {len(path)} nodes, expected {len(positions)}")
        for (level, node_index), node in zip(positions, path):  # noqa: B905
            if not first_seq <= (node_index << level) < first_seq + n:
                outside[(level, node_index)] = node
    tree = RangeTree(leaves, first_seq, size, outside)
    if tree.root != root:
        return False
    if size == 1:
        line = b'{"index":0,"kind":"inclusion","leaf_hash":"%s","path":[],"tree_size":1}\n'
        expected = line % leaves[0].hex().encode()
        with open(proofs.path, "rb") as fh:
            fh.seek(proofs.inclusion_offset)
            if fh.read() != expected:
                fh.seek(proofs.inclusion_offset)
                _explain_mismatch(fh, [expected], 0, 0, proofs, leaves, size, root)
        return True
    quoted = [(lo, _quote(nodes)) for lo, nodes in tree.levels]
    widths = [size]
    while len(widths) < len(quoted):
        widths.append((widths[-1] + 1) // 2)
    stop = first_seq + n
    # The second half is checked beside the first: it starts where the shape of the first
    # half's lines says it must (their lengths follow from the tree size alone).
    check = (proofs, quoted, widths, first_seq, leaves, root)
    if n < PARALLEL_FROM:
        _check_lines(*check, first_seq, stop, proofs.inclusion_offset)
        return True
    middle = first_seq + n // 2
    at = proofs.inclusion_offset + _lines_length(first_seq, middle, size, widths)
    second = Background(_check_lines, *check, middle, stop, at)
    ended = _check_lines(*check, first_seq, middle, proofs.inclusion_offset)
    second.result()
    if ended != at:  # cannot happen unless _lines_length and _expected_lines disagree
        raise Failure(f"proofs.jsonl: event {middle}'s proof starts at byte {ended}, not {at}")
    return True


def _check_lines(
    proofs: ProofsFile,
    quoted: list[tuple[int, list[bytes]]],
    widths: list[int],
    first_seq: int,
    leaves: list[bytes],
    root: bytes,
    start: int,
    stop: int,
    offset: int,
) -> int:
    """Compare the inclusion proof lines of events start..stop-1, which begin at byte
    `offset` of proofs.jsonl, with the lines the tree says they must be. Returns the
    offset after them."""
    size = widths[0]
    with open(proofs.path, "rb") as fh:
        fh.seek(offset)
        for begin in range(start, stop, PROOF_CHUNK):
            end = min(stop, begin + PROOF_CHUNK)
            expected = _expected_lines(quoted, widths, begin, end)
            where = fh.tell()
            if fh.read(len(expected)) != expected:
                fh.seek(where)
                lines = expected.splitlines(keepends=True)
                _explain_mismatch(fh, lines, begin, first_seq, proofs, leaves, size, root)
        ended = fh.tell()
        if stop == first_seq + len(leaves) and fh.readline():
            raise Failure(f"proofs.jsonl: more inclusion proofs than the {len(leaves)} events")
    return ended


def _lines_length(start: int, stop: int, size: int, widths: list[int]) -> int:
    """Bytes of the inclusion proof lines of leaves start..stop-1 in a tree of `size` >= 2
    leaves, from their shape: the index's digits, and 67 bytes (a quoted hash and a comma,
    less one comma per line) for each level at which a leaf's ancestor has a sibling."""
    count = stop - start
    fixed = len(b'{"index":,"kind":"inclusion","leaf_hash":"","path":[],"tree_size":}\n')
    fixed += 64 + len(str(size)) - 1
    siblings = 0
    for level, width in enumerate(widths[:-1]):
        siblings += count
        if width % 2:  # the unpaired last node of an odd level: no sibling there
            lo, hi = (width - 1) << level, min(width << level, size)
            siblings -= max(0, min(hi, stop) - max(lo, start))
    return count * fixed + _digits_below(stop) - _digits_below(start) + 67 * siblings


def _digits_below(x: int) -> int:
    """Decimal digits in writing 0, 1, ..., x - 1."""
    total, digits, low = 0, 1, 0
    while low < x:
        high = 10**digits
        total += digits * (min(x, high) - low)
        low, digits = high, digits + 1
    return total


PROOF_CHUNK = 8192
SEP = b'","'


def _quote(nodes: list[bytes]) -> list[bytes]:
    """Each node as a proof line spells it, up to the next one: `hex","` (one C pass)."""
    hexed = binascii.hexlify(b"".join(nodes), b" ", 32) + b" "
    return hexed.replace(b" ", SEP + b" ").split(b" ")[:-1]


def _level(
    level: int,
    quoted: list[tuple[int, list[bytes]]],
    widths: list[int],
    above: list[bytes],
    above_lo: int,
    lo: int,
    hi: int,
) -> tuple[list[bytes], list[bytes]]:
    """For nodes lo..hi-1 of `level`: each one's sibling as written (empty for the unpaired
    last node of a level) and its parent's path from the level above. A node's path from
    this level up is the two joined. Whole-list operations only: no Python loop per node."""
    q_lo, q = quoted[level]
    first, pairs = lo & ~1, ((hi - 1) >> 1) + 1 - (lo >> 1)
    siblings = q[first - q_lo : min(first + 2 * pairs, widths[level]) - q_lo]
    if level == len(quoted) - 2:  # just below the root: the last node of every path
        siblings = [s[: -len(SEP)] for s in siblings]
    if len(siblings) < 2 * pairs:
        siblings.append(b"")
    swapped = list(chain.from_iterable(zip(siblings[1::2], siblings[0::2])))  # noqa: B905
    parents = above[(lo >> 1) - above_lo : (lo >> 1) - above_lo + pairs]
    doubled = list(chain.from_iterable(zip(parents, parents)))  # noqa: B905
    return swapped[lo - first : hi - first], doubled[lo - first : hi - first]


def _expected_lines(
    quoted: list[tuple[int, list[bytes]]], widths: list[int], start: int, end: int
) -> bytes:
    """The inclusion proof lines of leaves start..end-1, exactly as the box writes them.

    The path of leaf i from level k up depends only on i >> k, so paths are built top-down,
    one string per node of each level (its sibling, then its parent's path): about two
    string joins per leaf instead of a loop over twenty levels."""
    above, above_lo = [b""], 0  # the root: nothing above it
    for level in range(len(quoted) - 2, 0, -1):
        lo, hi = start >> level, ((end - 1) >> level) + 1
        siblings, parents = _level(level, quoted, widths, above, above_lo, lo, hi)
        above, above_lo = list(map(bytes.__add__, siblings, parents)), lo
    siblings, parents = _level(0, quoted, widths, above, above_lo, start, end)
    leaf_lo, leaf_quoted = quoted[0]
    size = widths[0]
    pieces = zip(  # noqa: B905
        map(b'{"index":%d,"kind":"inclusion","leaf_hash":"'.__mod__, range(start, end)),
        leaf_quoted[start - leaf_lo : end - leaf_lo],  # `hex","`
        repeat(b'path":["'),
        siblings,
        parents,
        repeat(b'"],"tree_size":%d}\n' % size),
    )
    return b"".join(chain.from_iterable(pieces))


def _explain_mismatch(
    fh: Any,
    expected: list[bytes],
    start: int,
    first_seq: int,
    proofs: ProofsFile,
    leaves: list[bytes],
    size: int,
    root: bytes,
) -> None:
    """Name the first proof line that is not what the tree says it must be."""
    for k, want in enumerate(expected):
        line = fh.readline()
        i = start + k
        number = proofs.head_lines + 1 + (i - first_seq)
        if not line:
            raise Failure(
                f"proofs.jsonl holds {i - first_seq} inclusion proofs for {len(leaves)} events"
            )
        if line == want:
            continue
        where = _where(number, i)
        index, tree_size, leaf, path = _parse_inclusion(line, where)
        if leaf != leaves[i - first_seq]:
            raise Failure(f"{where}: proves a different leaf than events.jsonl holds")
        if index != i or tree_size != size or not verify_inclusion(leaf, i, size, path, root):
            raise Failure(f"{where}: does not lead to the root of checkpoint size {size}")
        raise Failure(f"{where}: not in the canonical form the box writes")
    raise Failure("proofs.jsonl: inclusion proofs differ from the tree (no line found)")


def check_inclusion(
    proofs: ProofsFile,
    first_seq: int | None,
    leaves: list[bytes],
    last: dict[str, Any],
    thorough: bool,
    report: Report,
) -> None:
    size, root = last["size"], last["root_bytes"]
    if first_seq is None or not leaves:
        if proofs.first_line:
            raise Failure("proofs.jsonl holds inclusion proofs, but events.jsonl is empty")
        report.note("the export holds no events (only checkpoints)")
        return
    if first_seq + len(leaves) > size:
        raise Failure(
            f"events.jsonl runs to event {first_seq + len(leaves) - 1}, beyond the last "
            f"checkpoint (size {size})"
        )
    if not proofs.first_line:
        raise Failure("proofs.jsonl holds no inclusion proofs")
    last_seq = first_seq + len(leaves) - 1
    if not thorough and check_inclusion_fast(proofs, first_seq, leaves, size, root):
        report.ok(
            f"inclusion: events {first_seq}..{last_seq} rebuild the root of checkpoint size "
            f"{size}, and each of the {len(leaves)} proofs lists that tree's nodes"
        )
        return
    check_each_inclusion(proofs, first_seq, leaves, size, root)
    if not thorough:
        raise Failure(
            f"the events do not rebuild the root of checkpoint size {size}, although each "
            "proof verifies on its own"
        )
    report.ok(
        f"inclusion: all {len(leaves)} proofs verify one by one (RFC 9162) against "
        f"checkpoint size {size}"
    )


# --- main ------------------------------------------------------------------------------


def verify(
    folder: str,
    fingerprint: str | None = None,
    thorough: bool = False,
    skip_signatures: bool = False,
) -> int:
    """Run every check; returns the exit status."""
    started, cpu_started = time.perf_counter(), time.process_time()
    report = Report()
    try:
        manifest_raw, manifest = load_manifest(folder)
    except Failure as exc:
        print("FAILED: " + str(exc))
        return 2
    # Started first, before any thread exists (a process forked beside a thread can
    # inherit a lock that thread held).
    hasher = Background(check_hashes, folder, manifest)
    gpg = None
    signatures_checked = False
    try:
        checkpoints = load_checkpoints(folder)
        if not skip_signatures:
            gpg = Gpg(os.path.join(folder, "box-public-key.asc"))
        if gpg is not None and gpg.exe is not None:
            print("      box key fingerprint " + str(gpg.fingerprint))
            if fingerprint and fingerprint.replace(" ", "").upper() != gpg.fingerprint:
                raise Failure(
                    f"box-public-key.asc is key {gpg.fingerprint}, not the expected {fingerprint}"
                )
            check_signatures(gpg, manifest_raw, folder, checkpoints, report)
            signatures_checked = True
        proofs = ProofsFile(folder)
        check_consistency(checkpoints, proofs, report)
        first_seq, leaves = read_events(folder, thorough)
        span = f"{first_seq}..{first_seq + len(leaves) - 1}" if first_seq is not None else "-"
        report.ok(f"events: {len(leaves)} lines, sequence {span}, no gaps")
        check_inclusion(proofs, first_seq, leaves, checkpoints[-1], thorough, report)
    except Failure as exc:
        report.fail(str(exc))
    except OSError as exc:
        report.fail(f"cannot read the export: {exc}")
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        report.fail(f"the export is malformed ({type(exc).__name__}: {exc})")
    finally:
        if gpg is not None:
            gpg.close()
    try:
        problems: list[str] = hasher.result()
    except Failure as exc:
        problems = [f"manifest hashes could not be computed: {exc}"]
    if problems:
        for problem in problems:
            print("FAIL  " + problem)
    else:
        report.ok(f"manifest: {len(manifest['files'])} files match their sha256")
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    print(f"      checked in {wall:.1f} s (CPU {cpu:.1f} s)")
    failures = problems + report.failures
    if failures:
        print("\nFAILED: " + failures[0])
        return 1
    if not signatures_checked:
        print("\nSIGNATURES NOT CHECKED: " + _no_gpg_reason(skip_signatures))
        print("Everything else holds, but without the signatures anyone could have rebuilt it.")
        return 0 if skip_signatures else 3
    print("\nALL CHECKS PASSED")
    return 0


def _no_gpg_reason(skipped: bool) -> str:
    if skipped:
        return "--skip-signatures was given."
    return "gpg is not installed (install GnuPG and run again; --skip-signatures to accept)."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify an Enclave HR audit export offline.")
    parser.add_argument("folder", help="the export directory (holds manifest.json)")
    parser.add_argument("--fingerprint", help="the box key fingerprint you expect")
    parser.add_argument(
        "--thorough",
        action="store_true",
        help="verify each inclusion proof on its own (RFC 9162) and parse every event line",
    )
    parser.add_argument(
        "--skip-signatures", action="store_true", help="do not call gpg (exit 0 without it)"
    )
    args = parser.parse_args(argv)
    return verify(args.folder, args.fingerprint, args.thorough, args.skip_signatures)


if __name__ == "__main__":
    sys.exit(main())
