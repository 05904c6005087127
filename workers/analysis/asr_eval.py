"""Scoring transcripts against references: CER for Mandarin, WER for English (issue #5).

The normalisation is the one the speech fixtures' README describes (and that produced
`baseline_asr.json`), so our figures compare with the baseline's:

- Mandarin (and the code-switching clip): NFKC, traditional -> simplified (zhconv),
  lower-case, Arabic numerals read as Chinese numerals, punctuation and whitespace
  removed; the units are characters.
- English: lower-case, 0-99 written as words, punctuation removed; the units are words.

Rates are micro-averaged: edit distances summed over clips divided by the summed
reference length, so a long clip weighs more than a short one.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import zhconv

_DIGITS = "零一二三四五六七八九"
_SMALL_UNITS = ("", "十", "百", "千")
_EN_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_EN_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()

# A year (2019年) is read digit by digit; a percentage as 百分之…; a decimal with 点.
_ZH_NUMBER = re.compile(r"(\d+(?:\.\d+)?)(%|％)?(年)?")
_EN_NUMBER = re.compile(r"(?<![\d.])\d{1,2}(?![\d.]|\.\d)")


def _zh_below_10000(n: int) -> str:
    """0 < n < 10000 in Chinese, with 零 for inner gaps (一百零一) and 十 for 10-19."""
    out = ""
    gap = False
    for power in (3, 2, 1, 0):
        digit = n // 10**power % 10
        if digit == 0:
            gap = bool(out)
            continue
        if gap:
            out += "零"
            gap = False
        if not (power == 1 and digit == 1 and not out):
            out += _DIGITS[digit]
        out += _SMALL_UNITS[power]
    return out


def zh_integer(n: int) -> str:
    """An integer as it is read in Mandarin: 20 -> 二十, 105 -> 一百零五, 10010 -> 一万零一十."""
    for size, unit in ((10**8, "亿"), (10**4, "万")):
        if n >= size:
            high, low = divmod(n, size)
            if low == 0:
                return zh_integer(high) + unit
            tail = zh_integer(low)
            if tail.startswith("十"):
                tail = "一" + tail  # 十 alone opens a number, but 一万零一十 inside one
            return zh_integer(high) + unit + ("零" if low < size // 10 else "") + tail
    return _zh_below_10000(n) if n else "零"


def _zh_number(match: re.Match[str]) -> str:
    number, percent, year = match.groups()
    if year and "." not in number and len(number) == 4:
        return "".join(_DIGITS[int(d)] for d in number) + "年"
    whole, _, fraction = number.partition(".")
    text = zh_integer(int(whole))
    if fraction:
        text += "点" + "".join(_DIGITS[int(d)] for d in fraction)
    return ("百分之" + text if percent else text) + (year or "")


def en_number(n: int) -> str:
    """0-99 as English words: 21 -> twenty one (the hyphen would be punctuation anyway)."""
    if n < 20:
        return _EN_ONES[n]
    tens, ones = divmod(n, 10)
    return _EN_TENS[tens] + ("" if ones == 0 else " " + _EN_ONES[ones])


def _strip_punctuation(text: str, keep_apostrophe_words: bool) -> str:
    if keep_apostrophe_words:
        # "patient's" stays one word: apostrophes go, they do not split.
        text = re.sub(r"['’]", "", text)
    return "".join(" " if unicodedata.category(ch)[0] in "PSZ" else ch for ch in text)


def normalise_zh(text: str) -> str:
    """The units of a Mandarin CER: simplified characters, no punctuation or spaces."""
    text = zhconv.convert(unicodedata.normalize("NFKC", text), "zh-cn").lower()
    text = _ZH_NUMBER.sub(_zh_number, text)
    return "".join(_strip_punctuation(text, keep_apostrophe_words=False).split())


def normalise_en(text: str) -> list[str]:
    """The units of an English WER: lower-case words, 0-99 spelled out, no punctuation."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = _EN_NUMBER.sub(lambda m: f" {en_number(int(m.group()))} ", text)
    return _strip_punctuation(text, keep_apostrophe_words=True).split()


def units(text: str, language: str) -> Sequence[str]:
    """What the error rate counts for a language: characters for zh, words for en."""
    return normalise_zh(text) if language == "zh" else normalise_en(text)


def edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Levenshtein distance (substitutions, deletions, insertions all cost 1)."""
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1]


@dataclass(frozen=True)
class ErrorCount:
    errors: int
    ref_units: int

    @property
    def rate(self) -> float:
        return self.errors / self.ref_units if self.ref_units else 0.0


def score(reference: str, hypothesis: str, language: str) -> ErrorCount:
    """Edit distance and reference length of one clip (CER for zh, WER for en)."""
    ref = units(reference, language)
    return ErrorCount(edit_distance(ref, units(hypothesis, language)), len(ref))


def micro_rate(counts: Iterable[ErrorCount]) -> float:
    """Errors summed over clips divided by reference units summed over clips."""
    counts = list(counts)
    total = sum(c.ref_units for c in counts)
    return sum(c.errors for c in counts) / total if total else 0.0


@dataclass(frozen=True)
class Clip:
    """One speech fixture (`transcripts.json`): reference text and where the speech is."""

    file: str
    language: str
    kind: str
    """answer, vad_long_silence or code_switch."""
    text: str
    duration_s: float
    speech_spans: tuple[tuple[float, float], ...]
    role: str | None


def fixture_clips(folder: Path) -> list[Clip]:
    """The clips listed in `folder/transcripts.json`, in its order."""
    entries = json.loads((folder / "transcripts.json").read_text(encoding="utf-8"))
    return [
        Clip(
            file=e["file"],
            language=e["lang"],
            kind=e["kind"],
            text=e["text"],
            duration_s=float(e["duration_s"]),
            speech_spans=tuple((float(a), float(b)) for a, b in e.get("speech_spans", [])),
            role=e.get("role"),
        )
        for e in entries
    ]


ROLE_VOCABULARY: dict[str, dict[str, str]] = {
    "nurse": {
        "zh": "护士，临床护理，患者沟通，静脉输液，护理记录，团队协作，沟通能力",
        "en": (
            "Registered nurse, emergency department, patient care, triage, teamwork, communication"
        ),
    },
    "resident": {
        "zh": "住院医师，规培，临床诊疗，病历书写，医嘱，患者安全，沟通能力",
        "en": "Resident doctor, internal medicine, clinical rotation, patient safety, teamwork",
    },
    "pharmacist": {
        "zh": "药师，处方审核，药品调配，用药安全，静脉用药配置，团队协作",
        "en": "Pharmacist, dispensing, medication safety, prescriptions, incident reporting",
    },
    "admin": {
        "zh": "行政管理，档案管理，人事，登记，沟通协调，细致认真",
        "en": "Administrative clerk, medical records, scheduling, administration, communication",
    },
    "it": {
        "zh": "信息工程师，信息系统运维，网络，门诊系统，故障处理，团队协作",
        "en": "IT engineer, electronic health record, database, system upgrade, help desk",
    },
}
"""Stand-ins for the job vocabulary prompt the pipeline builds for the fixtures' roles
(`workers.analysis.jobs.vocabulary_prompt`: title, requirement terms, competencies), as
a hospital's job posting would word them. Written after the DEV transcripts were read,
so figures measured with them are optimistic: the figures without a prompt are the
ones to compare with the baseline."""
