"""Privacy jobs on the `maintenance` queue (issue #8), and the subject's queued jobs.

- `apply_retention`: the retention schedules (`compliance.retention.run`), daily.
- `remind_request_deadlines`: reminders for data-subject requests nearing or past
  their deadline (`compliance.requests.due_reminders`), every few hours; a request
  is reminded at most once a day.
- `cancel_subject_jobs`: the hook `compliance.deletion` and `compliance.register`
  take, to cancel a person's jobs still waiting in Redis before their data goes.
  Jobs carry ids only; which of a job's ids are the person's is read from the job
  function's parameter names (`answer_id`, `session_id`, ...), or from a 32-hex id
  (subject or blob) anywhere in its arguments.

Logs hold ids and counts only.
"""

from __future__ import annotations

import inspect
from functools import partial
from typing import Any

from redis import Redis
from rq import get_current_job
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.registry import DeferredJobRegistry, FailedJobRegistry, ScheduledJobRegistry

from appliance.queue import QUEUES
from appliance.records import JobRun, RunStatus, utcnow
from appliance.settings import Settings, load_settings
from appliance.store import Store
from compliance import requests, retention
from compliance.actors import Actor
from compliance.deletion import Footprint, JobCanceller
from workers.jobs import SERIALIZER, JobContext, UnknownJob, job, job_spec, queue_for

# A job parameter's name -> the table its id belongs to.
PARAMETER_TABLES = {
    "candidate_id": "candidates",
    "application_id": "applications",
    "session_id": "interview_sessions",
    "answer_id": "answers",
    "recording_id": "recordings",
    "evaluation_id": "evaluations",
    "analysis_id": "answer_analyses",
    "report_id": "score_reports",
    "parse_id": "resume_parses",
    "resume_parse_id": "resume_parses",
    "employee_id": "employees",
}


def _parameters(name: str) -> list[str]:
    """The job's id parameters in order (without its context), or [] if unknown here."""
    try:
        spec = job_spec(name)
    except UnknownJob:
        return []
    return list(inspect.signature(spec.function).parameters)[1:]


# A withdrawn consent cancels only the jobs of its purpose (by the job's name); a job that
# serves several purposes is left to check `compliance.consent.holds` itself, as every
# pipeline step must before it writes.
PURPOSE_JOBS = {
    "face_analysis": ("face", "expression"),
    "ai_scoring": ("score", "scoring"),
}


def concerns(args: tuple[Any, ...], fp: Footprint) -> bool:
    """Whether a job's arguments (name, *ids) name something of the subject's (and, for a
    withdrawn consent, the job serves that purpose)."""
    if not args:
        return False
    name, ids = str(args[0]), args[1:]
    if fp.purpose is not None and fp.purpose in PURPOSE_JOBS:
        short = name.rsplit(".", 1)[-1]
        if not any(word in short for word in PURPOSE_JOBS[fp.purpose]):
            return False
    own_hex = {fp.subject_id, *fp.blob_ids}
    if any(isinstance(i, str) and i in own_hex for i in ids):
        return True
    for parameter, value in zip(_parameters(name), ids, strict=False):
        table = PARAMETER_TABLES.get(parameter)
        if table is not None and isinstance(value, int) and value in set(fp.ids(table)):
            return True
    return False


def _waiting_job_ids(redis: Redis) -> list[str]:
    ids: list[str] = []
    for name in QUEUES:
        queue = queue_for(name, redis)
        ids += queue.get_job_ids()
        for registry in (ScheduledJobRegistry, DeferredJobRegistry, FailedJobRegistry):
            ids += registry(queue=queue).get_job_ids()
    return list(dict.fromkeys(ids))


def cancel_subject_jobs(redis: Redis, fp: Footprint, store: Store | None = None) -> list[str]:
    """Cancel and delete the subject's queued, scheduled, deferred and failed jobs; their
    `JobRun` rows say why. A job already running finds the data gone and fails."""
    cancelled = []
    for job_id in _waiting_job_ids(redis):
        try:
            rq_job = Job.fetch(job_id, connection=redis, serializer=SERIALIZER)
        except NoSuchJobError:
            continue
        if not concerns(tuple(rq_job.args or ()), fp):
            continue
        try:
            rq_job.cancel()
        except InvalidJobOperation:
            pass  # already cancelled or finished: deleting it below is enough
        rq_job.delete(remove_from_queue=True)
        cancelled.append(job_id)
    if store is not None and cancelled:
        with store.transaction() as db:
            for run in db.query(JobRun).filter(JobRun.rq_job_id.in_(cancelled)):
                run.status = RunStatus.FAILED
                run.ended_at = utcnow()
                run.error = "Cancelled: the subject's data was deleted or their consent withdrawn"
    return cancelled


def canceller(redis: Redis, store: Store | None = None) -> JobCanceller:
    """The hook to hand `erase_subject`, `withdraw` and the request functions."""
    return partial(cancel_subject_jobs, redis, store=store)


def _settings(store: Store) -> Settings:
    return load_settings(data_dir=store.data_dir)


@job(queue="maintenance", timeout=6 * 3600, retries=0)
def apply_retention(ctx: JobContext) -> None:
    """Delete what the retention schedules say is due (legal holds respected)."""
    store = ctx.store
    current = get_current_job()
    run = retention.run(
        store,
        _settings(store),
        Actor.system(ctx.rq_job_id),
        dry_run=False,
        cancel_jobs=canceller(current.connection, store) if current is not None else None,
    )
    deleted = sum(len(r.get("deleted", [])) for r in run.results.values() if isinstance(r, dict))
    ctx.logger.info("retention run %d: %d deleted", run.id, deleted)


@job(queue="maintenance", timeout=900)
def remind_request_deadlines(ctx: JobContext) -> None:
    """Remind of data-subject requests due soon or overdue (each at most once a day)."""
    reminders = requests.due_reminders(ctx.store, _settings(ctx.store))
    for reminder in reminders:
        ctx.logger.warning(
            "data request %d (%s) %s: %d working day(s) left",
            reminder.request_id,
            reminder.kind,
            "OVERDUE" if reminder.overdue else "due soon",
            reminder.working_days_left,
        )
