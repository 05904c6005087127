"""Live captions of the candidate's own answer (issue 7, item 7, with issue 5's captioner).

The real media service process, the real Whisper model from its PyPI package, the
fixture's spoken answer over WebRTC: while the answer streams, the caption grows and
says what the speaker says; a job without live captions has none; nothing of the
caption is stored (the recording is the only thing the answer leaves).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from sqlalchemy import select

from appliance.records import Answer, Recording
from appliance.store import Store
from tests.media.media_client import REPO, get, make_answer, stream_answer

TRUTH = json.loads((REPO.parent / "shared/fixtures/speech/transcripts.json").read_text())
SPOKEN = next(c["text"] for c in TRUTH if c["file"] == "zh_10_it_complaint.wav")
"""What `candidate_answer.mp4` says (fixtures/README.md)."""
STREAM_SECONDS = 14.0


def shared_characters(caption: str, truth: str) -> float:
    """Share of the caption's Chinese characters that the truth also has."""
    hanzi = [c for c in caption if "\u4e00" <= c <= "\u9fff"]
    return sum(c in truth for c in hanzi) / max(len(hanzi), 1)


def test_the_candidate_sees_their_words_while_they_speak(store: Store, media_service: Path) -> None:
    answer_id, _ = make_answer(store, live_captions=True)
    seen: list[str] = []

    async def watch() -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + STREAM_SECONDS
        while loop.time() < end:
            status, body = await get(media_service, f"/answers/{answer_id}/caption")
            assert status == 200, body
            assert body["failed"] is False
            if body["text"] and (not seen or body["text"] != seen[-1]):
                seen.append(body["text"])
            await asyncio.sleep(0.5)

    stopped = asyncio.run(stream_answer(media_service, answer_id, STREAM_SECONDS, during=watch))
    assert stopped["recording_id"]
    assert len(seen) >= 2, seen  # it grew while the candidate spoke
    last = seen[-1]
    assert len([c for c in last if "\u4e00" <= c <= "\u9fff"]) >= 15, seen
    assert shared_characters(last, SPOKEN) >= 0.8, (last, SPOKEN)
    assert "挂号" in last or "患者" in last, last

    with store.session() as db:
        answer = db.get(Answer, answer_id)
        assert answer is not None and answer.transcript_sealed is None  # captions not kept
        assert len(db.scalars(select(Recording).where(Recording.answer_id == answer_id)).all()) == 1


def test_a_job_without_live_captions_has_none(store: Store, media_service: Path) -> None:
    answer_id, _ = make_answer(store, code="MEDIA-N")
    statuses: list[int] = []

    async def watch() -> None:
        await asyncio.sleep(2.0)
        status, body = await get(media_service, f"/answers/{answer_id}/caption")
        statuses.append(status)
        assert body["code"] == "no_caption"

    asyncio.run(stream_answer(media_service, answer_id, 2.5, during=watch))
    assert statuses == [404]
