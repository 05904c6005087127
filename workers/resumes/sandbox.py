"""Parse untrusted files in a child process that may die without taking the caller with it.

The child is started with `spawn` (no inherited state, no fork of a threaded
parent), caps its own address space (RLIMIT_AS) and, per file, its CPU time
(RLIMIT_CPU counted from the file's start); the parent adds a wall-clock
timeout and kills the child when it passes. A dead or killed child gives that
file an `error` and is restarted for the next one, so a batch goes on. The
child keeps its OCR engine between files (loading it takes seconds).

File bytes travel over the pipe, never through a temporary file.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import signal
from typing import Any

from workers.resumes.limits import DEFAULT_LIMITS, Limits


def _serve(conn: multiprocessing.connection.Connection, limits: Limits) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash dump would hold resume text
    from workers.resumes import parse_resume, result_dict

    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        if request is None:
            return
        data, filename = request
        used = resource.getrusage(resource.RUSAGE_SELF)
        spent = int(used.ru_utime + used.ru_stime) + 1
        hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
        soft = spent + limits.cpu_s
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
        try:
            reply: dict[str, Any] = result_dict(filename, parse_resume(data, filename, limits))
        except MemoryError:
            reply = {"error": f"out of memory parsing the file (limit {limits.memory_bytes} bytes)"}
        except Exception as exc:  # a parser bug on a hostile file: report, keep serving
            reply = {"error": f"could not parse the file ({type(exc).__name__})"}
        conn.send(reply)


class ResumeParser:
    """A parsing child process; `parse(data, name)` returns the CLI's JSON object.

    Use as a context manager, or call `close()`.
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._ctx = multiprocessing.get_context("spawn")
        self._process: Any = None
        self._conn: multiprocessing.connection.Connection | None = None
        self.restarts = 0

    def __enter__(self) -> ResumeParser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _start(self) -> None:
        parent, child = self._ctx.Pipe()
        process = self._ctx.Process(
            target=_serve, args=(child, self.limits), name="resume-parser", daemon=True
        )
        process.start()
        child.close()
        self._process, self._conn = process, parent

    def _stop(self) -> None:
        if self._process is not None:
            if self._process.is_alive():
                self._process.kill()
            self._process.join(5)
        if self._conn is not None:
            self._conn.close()
        self._process, self._conn = None, None

    def close(self) -> None:
        if self._conn is not None and self._process is not None and self._process.is_alive():
            try:
                self._conn.send(None)
                self._process.join(2)
            except (OSError, BrokenPipeError):
                pass
        self._stop()

    def parse(self, data: bytes, filename: str = "") -> dict[str, Any]:
        from workers.resumes import ResumeResult, result_dict

        if len(data) > self.limits.max_bytes:  # don't even ship it to the child
            message = f"file too large: {len(data)} bytes, limit {self.limits.max_bytes} bytes"
            return result_dict(filename, ResumeResult(None, None, message))
        if self._process is None or not self._process.is_alive():
            if self._process is not None:
                self.restarts += 1  # died between files
            self._stop()
            self._start()
        if self._conn is None or self._process is None:
            raise RuntimeError("resume parser child did not start")
        error: str
        try:
            self._conn.send((data, filename))
            if self._conn.poll(self.limits.timeout_s):
                reply = self._conn.recv()
                if set(reply) == {"error"}:
                    return result_dict(filename, ResumeResult(None, None, reply["error"]))
                reply["file"] = filename
                return reply
            error = f"parsing took longer than {self.limits.timeout_s:.0f} s; stopped"
        except (EOFError, OSError, BrokenPipeError):
            self._process.join(5)
            code = self._process.exitcode
            if code is not None and code < 0:
                name = signal.Signals(-code).name
                why = {
                    "SIGXCPU": f"CPU time limit of {self.limits.cpu_s} s",
                    "SIGKILL": "killed, likely out of memory",
                    "SIGSEGV": "crashed in a native library",
                }.get(name, name)
                error = f"parser process stopped on this file ({why})"
            else:
                error = f"parser process stopped on this file (exit code {code})"
        self._stop()
        self.restarts += 1  # the next file gets a fresh child
        return result_dict(filename, ResumeResult(None, None, error))
