"""JSON logs without personal data (issue 9, item 5): one JSON object per line; structured
fields only under id names and with id-shaped values, anything else dropped and named;
exceptions as type and message, never a traceback's local values; a real worker process
writes them."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from appliance.logs import DROPPED, JsonFormatter, is_id_value, json_handler
from tests.conftest import Box

REPO = Path(__file__).resolve().parents[2]


def emit(*args: object, **kwargs: object) -> dict[str, object]:
    stream = io.StringIO()
    logger = logging.getLogger("test_json_logs.sample")
    logger.propagate = False
    handler = json_handler("web", stream)
    logger.addHandler(handler)
    try:
        logger.warning(*args, **kwargs)  # type: ignore[arg-type]
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    return json.loads(lines[0])


def test_a_line_is_one_json_object_with_the_ids_it_was_given() -> None:
    line = emit(
        "answer %d analysed", 12, extra={"answer_id": 12, "job_id": "a1b2-c3", "step": "asr"}
    )
    assert line["message"] == "answer 12 analysed"
    assert (line["level"], line["logger"], line["process"]) == (
        "WARNING",
        "test_json_logs.sample",
        "web",
    )
    assert (line["answer_id"], line["job_id"], line["step"]) == (12, "a1b2-c3", "asr")
    assert line["time"].endswith("+00:00") and "dropped" not in line


def test_fields_that_are_not_ids_are_dropped_and_named() -> None:
    """A field outside the id names, or an id name carrying words, never reaches the line."""
    line = emit(
        "candidate updated",
        extra={"candidate_name": "张三", "subject_id": "王五 的 电话 13800000000", "session_id": 4},
    )
    text = json.dumps(line, ensure_ascii=False)
    assert "张三" not in text and "王五" not in text and "13800000000" not in text
    assert line["dropped"] == ["candidate_name", "subject_id"]
    assert line["session_id"] == 4
    assert DROPPED  # the marker the module documents


def test_an_exception_is_its_type_and_message_without_the_traceback() -> None:
    secret = "身份证 110101199003077777"
    try:
        values = {"id_number": secret}
        raise KeyError("answer 7: asr: AudioDecodeError")
    except KeyError:
        line = emit("job failed", exc_info=True)
    assert line["exception"].startswith("KeyError: ")
    assert secret not in json.dumps(line, ensure_ascii=False) and values


def test_id_values() -> None:
    for ok in (
        12,
        1.5,
        None,
        "7f3a" * 8,
        "analysis.score_session",
        "worker-analysis",
        "192.0.2.1:443",
    ):
        assert is_id_value(ok), ok
    for bad in ("张三", "two words", "x" * 65, {"a": 1}, ["a"]):
        assert not is_id_value(bad), bad


def test_formatter_names_its_process() -> None:
    record = logging.makeLogRecord({"msg": "hello", "levelname": "INFO", "name": "n"})
    assert json.loads(JsonFormatter("scheduler").format(record))["process"] == "scheduler"


def test_a_real_worker_process_logs_json_lines(redis_box: Box) -> None:
    """`appliance worker --burst` on an empty queue: every line on stderr is a JSON object
    with the worker's name, a job_id field (rq's lines too) and the guard's start line."""
    redis_box.redis.flushdb()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    env.update(ENCLAVE_CONFIG="", ENCLAVE_SECRETS="/nonexistent/secrets.toml", PYTHONPATH=str(REPO))
    argv = ["-m", "appliance", "worker", "--queue", "maintenance", "--burst"]
    proc = subprocess.run(
        [sys.executable, *argv, "--data-dir", str(redis_box.settings.data_dir)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.strip()]
    assert lines
    assert {line["process"] for line in lines} == {"worker-maintenance"}
    assert all("job_id" in line and "time" in line and "message" in line for line in lines)
    assert any(line["logger"] == "enclave.egress" for line in lines)
