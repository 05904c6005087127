"""Resumes: parse any format offline (zh and en), match them to jobs, screen them in batches.

Public API:

- `parse_resume(data, filename)`: bytes -> `ResumeResult` in this process (trusted
  callers, tests, bench).
- `sandbox.ResumeParser`: the same in a child process with memory, CPU and
  wall-clock limits; what the CLI and the batch job use for uploads.
- `matching.rank(resumes, requirement)`: hard requirements, soft fit, reasons.
- `jobs.screen_resumes`: the `documents` job over uploaded resume blobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workers.resumes.errors import ResumeRejected
from workers.resumes.fields import ParsedResume, parse_lines
from workers.resumes.limits import DEFAULT_LIMITS, Limits

__all__ = [
    "DEFAULT_LIMITS",
    "Limits",
    "ParsedResume",
    "ResumeRejected",
    "ResumeResult",
    "parse_resume",
    "result_dict",
]

KEYS = (
    "name",
    "email",
    "phone",
    "education",
    "experience",
    "skills",
    "certifications",
    "languages",
)


@dataclass
class ResumeResult:
    format: str | None
    resume: ParsedResume | None
    error: str | None


def parse_resume(
    data: bytes, filename: str = "", limits: Limits = DEFAULT_LIMITS, ocr: Any = None
) -> ResumeResult:
    """Parse one file in this process; a refused file comes back with `error` set."""
    from workers.resumes.extract import extract_lines

    try:
        fmt, lines = extract_lines(data, filename, limits, ocr)
    except ResumeRejected as exc:
        return ResumeResult(None, None, str(exc))
    resume = parse_lines(lines)
    if not lines:
        return ResumeResult(fmt, resume, "no text found in the file")
    return ResumeResult(fmt, resume, None)


def result_dict(file: str, result: ResumeResult) -> dict[str, Any]:
    """The CLI's JSON object: exactly the issue's keys, absent values null or []."""
    out: dict[str, Any] = {"file": file}
    parsed = result.resume.to_dict() if result.resume is not None else {}
    for key in KEYS:
        default: Any = (
            []
            if key in ("education", "experience", "skills", "certifications", "languages")
            else None
        )
        out[key] = parsed.get(key, default)
    out["error"] = result.error
    return out
