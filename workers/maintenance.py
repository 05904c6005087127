"""Housekeeping jobs on the `maintenance` queue. Their logs hold counts and ids only."""

from __future__ import annotations

from appliance.errors import BlobNotFound, BlobTruncated, IntegrityError, SubjectKeyDestroyed
from compliance import audit
from workers.jobs import JobContext, job


class BlobsDamaged(Exception):
    """Some blobs failed authentication; the message names how many and their ids."""


@job(queue="maintenance", timeout=900)
def checkpoint_database(ctx: JobContext) -> None:
    """Fold the WAL back into the database file and truncate it.

    SQLite checkpoints passively as it goes, but a reader that never pauses (the
    web app's pool) keeps the WAL growing; TRUNCATE waits (busy_timeout) for a
    moment without readers and leaves a zero-length WAL.
    """
    # A raw DBAPI connection: SQLAlchemy would open a transaction first, and a
    # checkpoint cannot complete from inside one.
    raw = ctx.store.engine.raw_connection()
    try:
        busy, wal_frames, checkpointed = (
            raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        )
    finally:
        raw.close()
    ctx.logger.info(
        "wal checkpoint: busy=%d wal_frames=%d checkpointed=%d", busy, wal_frames, checkpointed
    )


@job(queue="maintenance", timeout=900)
def seal_audit_log(ctx: JobContext) -> None:
    """Sign a checkpoint over the newest audit events when one is due, so a quiet box
    still seals its last events within `audit.checkpoint_minutes` (issue #3)."""
    checkpoint = audit.checkpoint_if_due(ctx.store)
    if checkpoint is not None:
        ctx.logger.info("audit checkpoint signed at size %d", checkpoint.size)


@job(queue="maintenance", timeout=900)
def reconcile_remote_transcriptions(ctx: JobContext) -> None:
    """Scale-out (issue 9): close the answers whose worker host failed without telling the
    box (it died, or lost its network), so they say "failed" instead of "queued" forever."""
    from rq import get_current_job

    from workers.analysis.jobs import reconcile_remote

    current = get_current_job()
    if current is None:
        return  # only meaningful inside a worker, with the box's Redis
    closed = reconcile_remote(ctx.store, current.connection)
    if closed:
        ctx.logger.info("%d remote transcriptions closed as failed", closed)


@job(queue="maintenance", timeout=6 * 3600, retries=0)
def verify_blobs(ctx: JobContext) -> None:
    """Decrypt every blob end to end and report the ones that fail authentication.

    Reads everything (recordings included), so it runs on demand, not on a
    timer. Blobs of shredded subjects and blobs still being written are counted,
    not failures. Fails (with the ids) if any blob is damaged, so the operator
    sees it in the job list.
    """
    blob_ids = list(ctx.store.blobs.blob_ids())
    ok = incomplete = shredded = 0
    damaged: list[str] = []
    for done, blob_id in enumerate(blob_ids, start=1):
        try:
            with ctx.store.blobs.open(blob_id) as reader:
                for _chunk in reader:
                    pass
            ok += 1
        except BlobNotFound:
            continue  # deleted since it was listed
        except BlobTruncated:
            incomplete += 1
            ctx.logger.info("blob %s ends before its final chunk", blob_id)
        except SubjectKeyDestroyed:
            shredded += 1
        except IntegrityError:
            damaged.append(blob_id)
            ctx.logger.warning("blob %s failed authentication", blob_id)
        if done % 100 == 0:
            ctx.progress(done / len(blob_ids))
    ctx.logger.info(
        "verified %d blobs: ok=%d incomplete=%d shredded=%d damaged=%d",
        len(blob_ids),
        ok,
        incomplete,
        shredded,
        len(damaged),
    )
    if damaged:
        more = f" and {len(damaged) - 10} more (see the log)" if len(damaged) > 10 else ""
        raise BlobsDamaged(
            f"{len(damaged)} blob(s) failed authentication: {', '.join(damaged[:10])}{more}"
        )
