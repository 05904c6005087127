"""Proof that no plaintext media reaches the disk (issue 7, "Must show"), for the media
service's tests and the browser's.

`assert_nothing_plaintext` looks at a data dir once; `PlaintextWatch` looks at it every
quarter second while a test runs, so that a plaintext file written and removed again
between two looks at the end would still be seen unless it lived under 250 ms. The
signatures are long enough (8 bytes, or at the start of a file) that encrypted bytes
never match them by chance.
"""

from __future__ import annotations

import threading
from pathlib import Path

from appliance.blobs import MAGIC as BLOB_MAGIC

ANYWHERE = (
    b"ENCRTP01",
    b"OpusHead",
    b"OpusTags",
    b"\x42\x82\x84webm",
    b"\x42\x82\x88matroska",
    b"YUV4MPEG2",
)
"""Our RTP log, Opus headers, the EBML DocType element of WebM and Matroska (a log line
that names `video/webm` is not media), Chromium's fake camera file."""
AT_START = (b"\x1a\x45\xdf\xa3", b"DKIF", b"OggS", b"RIFF")
"""EBML (WebM, Matroska), IVF, Ogg and WAV files."""


def plaintext_in(path: Path) -> bytes | None:
    """The media signature a file holds, if any."""
    try:
        content = path.read_bytes()
    except OSError:  # removed or a socket meanwhile
        return None
    for magic in ANYWHERE:
        if magic in content:
            return magic
    return next((magic for magic in AT_START if content.startswith(magic)), None)


def assert_nothing_plaintext(data_dir: Path) -> None:
    """Every blob file is the encrypted format; no file anywhere holds media magic."""
    blob_files = [p for p in (data_dir / "blobs").rglob("*") if p.is_file()]
    assert blob_files
    for path in blob_files:
        assert path.read_bytes()[: len(BLOB_MAGIC)] == BLOB_MAGIC, path
    for path in data_dir.rglob("*"):
        if path.is_file() and path.suffix != ".sock":
            assert plaintext_in(path) is None, path


class PlaintextWatch:
    """Looks at every new or changed file under a folder while a test runs."""

    def __init__(self, folder: Path, every_s: float = 0.25) -> None:
        self.folder = folder
        self.every_s = every_s
        self.found: list[str] = []
        self.looks = 0
        self._seen: dict[Path, tuple[int, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="plaintext-watch", daemon=True)

    def __enter__(self) -> PlaintextWatch:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._look()  # once more after the last write

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self._look()

    def _look(self) -> None:
        self.looks += 1
        for path in self.folder.rglob("*"):
            try:
                stat = path.stat()
            except OSError:
                continue
            if not path.is_file() or path.suffix == ".sock":
                continue
            stamp = (stat.st_mtime_ns, stat.st_size)
            if self._seen.get(path) == stamp:
                continue
            self._seen[path] = stamp
            magic = plaintext_in(path)
            if magic is not None:
                self.found.append(f"{path.relative_to(self.folder)} holds {magic!r}")
