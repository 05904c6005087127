"""Batch screening on the `documents` queue: uploaded resumes parsed in a sandbox, duplicates found.

The payload is blob ids only (the encrypted uploads, `appliance.blobs`); the
job reads each blob through the store into memory, parses it in the worker's
sandboxed child (`sandbox.ResumeParser`, kept for the worker's life so OCR
loads once), reports progress, and groups files of the same person (same
e-mail, same mobile, or same name and school). A bad file gets its error and
the batch goes on.

Persistence: `save_report` writes one `ResumeParse` row per file (the parsed
fields sealed under the subject's key, through the permission gate).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from appliance.records import ResumeParse
from compliance.actors import Actor
from compliance.gate import Gate
from workers.jobs import JobContext, job
from workers.resumes.limits import DEFAULT_LIMITS
from workers.resumes.sandbox import ResumeParser

PARSER_VERSION = "1"
"""Bump when parsing changes what it extracts, so old rows can be found and re-parsed."""
_PARSER: ResumeParser | None = None


def worker_parser() -> ResumeParser:
    """The worker process's parsing child (started on first use, restarted when it dies)."""
    global _PARSER
    if _PARSER is None:
        _PARSER = ResumeParser(DEFAULT_LIMITS)
    return _PARSER


@dataclass
class ScreeningReport:
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # blob id -> parsed
    duplicates: list[list[str]] = field(default_factory=list)  # groups of blob ids
    failed: list[str] = field(default_factory=list)


def _identity_keys(parsed: dict[str, Any]) -> list[str]:
    keys = []
    if parsed.get("email"):
        keys.append("e:" + parsed["email"].casefold())
    if parsed.get("phone"):
        keys.append("p:" + re.sub(r"\D", "", parsed["phone"]))
    name = re.sub(r"\W", "", (parsed.get("name") or "").casefold())
    schools = {
        re.sub(r"\W", "", (e.get("school") or "").casefold()) for e in parsed.get("education") or []
    } - {""}
    if name:
        keys.extend(f"n:{name}:{school}" for school in schools)
    return keys


def find_duplicates(results: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Groups (two or more) of ids whose resumes are the same person."""
    parent = {rid: rid for rid in results}

    def root(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    seen: dict[str, str] = {}
    for rid, parsed in results.items():
        if parsed.get("error"):
            continue
        for key in _identity_keys(parsed):
            if key in seen:
                parent[root(rid)] = root(seen[key])
            else:
                seen[key] = rid
    groups: dict[str, list[str]] = {}
    for rid in results:
        groups.setdefault(root(rid), []).append(rid)
    return sorted((sorted(g) for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def screen_documents(
    ids: Sequence[str],
    read: Callable[[str], bytes],
    parser: ResumeParser,
    progress: Callable[[float], None] = lambda _f: None,
) -> ScreeningReport:
    """Parse every document `read(id)` returns; one bad file never stops the batch."""
    report = ScreeningReport()
    step = max(1, len(ids) // 100)  # a progress write per ~1 %, not per file
    for done, doc_id in enumerate(ids, 1):
        try:
            data = read(doc_id)
        except Exception as exc:  # a damaged or shredded blob: record it, go on
            parsed = {"file": doc_id, "error": f"cannot read blob ({type(exc).__name__})"}
        else:
            parsed = parser.parse(data, doc_id)
        report.results[doc_id] = parsed
        if parsed.get("error"):
            report.failed.append(doc_id)
        if done % step == 0 or done == len(ids):
            progress(done / len(ids))
    report.duplicates = find_duplicates(report.results)
    return report


def save_report(ctx: JobContext, report: ScreeningReport) -> None:
    """One `ResumeParse` row per blob: error and duplicate group in the clear (no content),
    the parsed fields sealed under the subject's key and written through the gate, which
    records one audit event for the batch listing every subject it touched (issue #3)."""
    store = ctx.store
    group_of = {blob_id: group[0] for group in report.duplicates for blob_id in group}
    with store.transaction() as db:
        known = {
            row.blob_id: row
            for row in db.scalars(
                select(ResumeParse).where(ResumeParse.blob_id.in_(list(report.results)))
            )
        }
        for blob_id, parsed in report.results.items():
            row = known.get(blob_id) or ResumeParse(
                blob_id=blob_id, subject_id=store.blobs.subject_of(blob_id)
            )
            row.rq_job_id = ctx.rq_job_id
            row.parser_version = PARSER_VERSION
            row.error = parsed.get("error")
            row.duplicate_group = group_of.get(blob_id)
            db.add(row)
    with store.session() as db:
        rows = db.scalars(
            select(ResumeParse).where(
                ResumeParse.blob_id.in_(list(report.results)), ResumeParse.error.is_(None)
            )
        ).all()
        changes = [
            (row, {"parsed": json.dumps(report.results[row.blob_id], ensure_ascii=False)})
            for row in rows
        ]
        Gate(store).update_many(Actor.system(ctx.rq_job_id), changes, "processing")
    ctx.logger.info(
        "screened %d resumes: %d failed, %d duplicate groups",
        len(report.results),
        len(report.failed),
        len(report.duplicates),
    )


@job(queue="documents", timeout=6 * 3600, retries=1)
def screen_resumes(ctx: JobContext, *blob_ids: str) -> None:
    """Parse uploaded resumes (blob ids) in the sandbox, with progress; find duplicates."""
    limit = DEFAULT_LIMITS.max_bytes

    def read(blob_id: str) -> bytes:
        with ctx.store.blobs.open(blob_id) as reader:
            return bytes(reader.read(limit + 1))  # one byte over: the parser says "too large"

    report = screen_documents(list(blob_ids), read, worker_parser(), ctx.progress)
    save_report(ctx, report)
