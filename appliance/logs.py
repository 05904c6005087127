"""JSON log lines for every process of the box (issue 9, item 5), with no personal data.

One JSON object per line: `time` (UTC, ISO 8601), `level`, `logger`, `process`
(the box's process name: web, worker-analysis, ...), `pid`, `message`, and the
structured fields a record carries through `extra=`.

No personal data (PIPL Art. 51, GDPR Art. 32): a filter cannot recognise a name
or a diagnosis in free text, so the guarantee is structural instead:

- structured fields are allowed only under the names in `ID_FIELDS` and only with
  values that are ids: ints, 32-hex subject/blob ids, rq job ids, short enum-like
  tokens (`[A-Za-z0-9_.:@/+-]`, at most 64 characters). Any other field, or a value
  that is not id-shaped, is replaced by "[dropped]" and the line says which
  fields were dropped (`dropped`), so a mistake shows in review instead of leaking;
- messages are the code's own format strings filled with ids (the convention the
  whole code base follows: job arguments and errors carry ids, never values);
  an exception's text is kept because the jobs' error messages are ids-only by
  design (`workers.analysis.jobs._reason`), while local variables never are.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

ID_FIELDS = frozenset(
    {
        "job_id",
        "rq_job_id",
        "queue",
        "answer_id",
        "session_id",
        "subject_id",
        "blob_id",
        "run_id",
        "user_id",
        "request_id",
        "event",
        "target",
        "process_name",
        "status",
        "step",
        "duration_ms",
        "attempt",
    }
)
_ID_VALUE = re.compile(r"[A-Za-z0-9_.:@/+\-\[\]]{1,64}")
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
DROPPED = "[dropped]"


def is_id_value(value: object) -> bool:
    """An int, float or bool, or a short token with no spaces: what an id looks like."""
    if isinstance(value, int | float) or value is None:
        return True
    return isinstance(value, str) and bool(_ID_VALUE.fullmatch(value))


def structured_fields(record: logging.LogRecord) -> tuple[dict[str, Any], list[str]]:
    """The record's `extra=` fields that may be logged, and the names of those dropped."""
    kept: dict[str, Any] = {}
    dropped: list[str] = []
    for name, value in record.__dict__.items():
        if name in _STANDARD or name.startswith("_"):
            continue
        if name in ID_FIELDS and is_id_value(value):
            kept[name] = value
        else:
            dropped.append(name)
    return kept, sorted(dropped)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; see the module doc for what may appear in it."""

    def __init__(self, process_name: str) -> None:
        super().__init__()
        self.process_name = process_name

    def format(self, record: logging.LogRecord) -> str:
        fields, dropped = structured_fields(record)
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "process": self.process_name,
            "pid": record.process or os.getpid(),
            "message": record.getMessage(),
            **fields,
        }
        if dropped:
            line["dropped"] = dropped
        if record.exc_info and record.exc_info[0] is not None:
            # The type and message only: a traceback's frames can show local values.
            line["exception"] = f"{record.exc_info[0].__name__}: {record.exc_info[1]}"
        return json.dumps(line, ensure_ascii=False, default=str)


def json_handler(process_name: str, stream: TextIO | None = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(process_name))
    return handler


def wants_json(environ: dict[str, str] | None = None) -> bool:
    """JSON unless ENCLAVE_LOG_FORMAT=text (a person reading a terminal in development)."""
    env = os.environ if environ is None else environ
    return env.get("ENCLAVE_LOG_FORMAT", "json").lower() != "text"


def configure(process_name: str, level: int = logging.INFO) -> bool:
    """JSON lines on stderr for this process (systemd's journal or the supervisor's log
    file), unless the root logger has a handler already or text was asked for."""
    root = logging.getLogger()
    if root.handlers or not wants_json():
        return False
    root.addHandler(json_handler(process_name))
    root.setLevel(level)
    return True
