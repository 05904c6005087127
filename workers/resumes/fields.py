"""Lines of cells in, resume fields out: sections, contact details, entries, dates.

Rules, not a model: section headings (zh and en, with their usual variants),
date ranges in the common styles normalised to YYYY-MM (ongoing: end None),
and entries read from cells. Which cell is the school, the degree or the
employer is decided by what the text is (degree words, organisation words),
not by where it sits, so `dates  school  major  degree` rows, `school — degree,
major (dates)` lines and the 个人简历 grid with its column header row all read
the same way.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any

from workers.resumes.extract import CJK, Line

# ---------------------------------------------------------------- headings

_HEADINGS: dict[str, tuple[str, ...]] = {
    "education": (
        "教育背景",
        "教育经历",
        "学习经历",
        "教育情况",
        "教育",
        "学历",
        "学历背景",
        "教育及培训",
        "education",
        "academic background",
        "educational background",
        "academic history",
        "academic qualifications",
        "education background",
        "education and training",
    ),
    "experience": (
        "工作经历",
        "工作经验",
        "工作履历",
        "职业经历",
        "从业经历",
        "实习经历",
        "工作及实习经历",
        "执业经历",
        "临床经历",
        "experience",
        "work experience",
        "professional experience",
        "employment history",
        "work history",
        "career history",
        "employment",
        "clinical experience",
        "relevant experience",
        "career",
    ),
    "skills": (
        "专业技能",
        "技能特长",
        "技能",
        "个人技能",
        "专业特长",
        "技能专长",
        "职业技能",
        "核心技能",
        "skills",
        "core competencies",
        "key skills",
        "technical skills",
        "competencies",
        "expertise",
        "skills and competencies",
        "clinical skills",
        "professional skills",
    ),
    "certifications": (
        "资格证书",
        "证书资质",
        "证书",
        "执业资格",
        "资质证书",
        "获得证书",
        "证书与资质",
        "职业资格",
        "资格认证",
        "资质",
        "证书及职称",
        "certifications",
        "certificates",
        "licenses & certifications",
        "licences & certifications",
        "licenses and certifications",
        "licenses",
        "licences",
        "certification",
        "licensure",
        "qualifications and licenses",
        "credentials",
    ),
    "languages": (
        "语言能力",
        "外语水平",
        "语言",
        "外语能力",
        "语言技能",
        "外语",
        "languages",
        "language skills",
        "language",
        "language proficiency",
    ),
    "summary": (
        "自我评价",
        "个人评价",
        "个人简介",
        "自我介绍",
        "个人总结",
        "个人优势",
        "求职意向",
        "summary",
        "profile",
        "objective",
        "about me",
        "professional summary",
        "personal statement",
        "career objective",
    ),
    "basic": (
        "基本信息",
        "个人信息",
        "联系方式",
        "个人资料",
        "contact",
        "contact details",
        "contact information",
        "personal information",
        "personal details",
    ),
    "other": (
        "荣誉奖励",
        "获奖情况",
        "科研成果",
        "论文发表",
        "项目经历",
        "兴趣爱好",
        "培训经历",
        "awards",
        "honors",
        "honours",
        "publications",
        "research",
        "projects",
        "interests",
        "hobbies",
        "references",
        "volunteer experience",
    ),
}
_HEADING_INDEX = {
    re.sub(r"[\s&]|and", "", h.casefold()): kind for kind, hs in _HEADINGS.items() for h in hs
}
_DECOR = re.compile(r"^[\s■□●◆▶►#=*\-_|【\[]+|[\s:：■□●◆#=*\-_|】\]]+$")


def heading_of(text: str) -> str | None:
    """The section a heading line opens, or None: '■ 工作经验', 'LICENSES & CERTIFICATIONS:'."""
    core = _DECOR.sub("", text)
    if not core or len(core) > 40:
        return None
    key = re.sub(r"[\s&]|and", "", core.casefold())
    return _HEADING_INDEX.get(key)


# ---------------------------------------------------------------- dates

_MONTHS = {
    m: i + 1
    for i, names in enumerate(
        [
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ]
    )
    for m in names
}
_MON = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sept?(?:ember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"  # noqa: E501
_DATE = (
    rf"(?:(?P<y1>(?:19|20)\d\d)\s*[./\-年]\s*(?P<m1>\d{{1,2}})\s*月?"
    rf"|(?P<m2>\d{{1,2}})\s*[/.\-]\s*(?P<y2>(?:19|20)\d\d)"
    rf"|(?P<mon>{_MON})\s*,?\s*(?P<y3>(?:19|20)\d\d)"
    rf"|(?P<y4>(?:19|20)\d\d)\s*年?)"
)
_PRESENT = r"(?:至今|今|现在|目前|迄今|present|now|current|currently|today|date)"
_SEP = r"\s*(?:[-–—~～至到]+|to|until)\s*"
_DATE_RE = re.compile(_DATE, re.I)
_RANGE_RE = re.compile(
    rf"(?P<a>{_DATE.replace('?P<', '?P<a_')}){_SEP}"
    rf"(?P<b>{_DATE.replace('?P<', '?P<b_')}|{_PRESENT})",
    re.I,
)
# "2019年9月至今" has no separator before 至今
_ONGOING_RE = re.compile(rf"(?P<a>{_DATE.replace('?P<', '?P<a_')})\s*(?P<b>至今|起至今)", re.I)


def _ym(groups: dict[str, str | None], prefix: str) -> str | None:
    g = {k[len(prefix) :]: v for k, v in groups.items() if k.startswith(prefix) and v}
    if "y1" in g:
        year, month = int(g["y1"]), int(g["m1"])
    elif "y2" in g:
        year, month = int(g["y2"]), int(g["m2"])
    elif "y3" in g:
        year, month = int(g["y3"]), _MONTHS[g["mon"].rstrip(".").casefold()]
    elif "y4" in g:
        return g["y4"]
    else:
        return None
    if not 1 <= month <= 12:
        return None
    return f"{year:04d}-{month:02d}"


def find_range(text: str) -> tuple[str | None, str | None, tuple[int, int]] | None:
    """(start, end, span) of the first date range in `text`; end None when ongoing."""
    match = _RANGE_RE.search(text) or _ONGOING_RE.search(text)
    if not match:
        return None
    groups = match.groupdict()
    start = _ym(groups, "a_")
    end = _ym(groups, "b_")
    if start is None:
        return None
    return start, end, match.span()


def has_range(text: str) -> bool:
    return find_range(text) is not None


# ---------------------------------------------------------------- contact

_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")
_MOBILE = re.compile(r"(?<!\d)(?:\(?\+?\s*86\)?[\s\-]*)?(1[3-9]\d(?:[\s\-]?\d){8})(?!\d)")
_PHONE = re.compile(r"(?<![\d.])\+?\(?\d[\d\s\-()]{7,18}\d(?![\d.])")
_LABELS = {
    "name": ("姓名", "name", "full name"),
    "phone": ("电话", "手机", "联系电话", "手机号码", "phone", "mobile", "tel", "telephone"),
    "email": ("邮箱", "电子邮箱", "email", "e-mail"),
}
_OTHER_LABELS = (
    "性别",
    "出生年月",
    "出生日期",
    "现居",
    "籍贯",
    "民族",
    "政治面貌",
    "年龄",
    "婚姻状况",
    "求职意向",
    "照片",
    "住址",
    "地址",
    "身高",
    "户籍",
    "gender",
    "address",
    "date of birth",
)
_ALL_LABELS = {lab for labs in _LABELS.values() for lab in labs} | set(_OTHER_LABELS)
_COLUMN_WORDS = {
    "时间": "dates",
    "起止时间": "dates",
    "起止日期": "dates",
    "日期": "dates",
    "dates": "dates",
    "学校": "school",
    "院校": "school",
    "毕业院校": "school",
    "学校名称": "school",
    "school": "school",
    "institution": "school",
    "专业": "major",
    "所学专业": "major",
    "major": "major",
    "学历": "degree",
    "学位": "degree",
    "学历/学位": "degree",
    "degree": "degree",
    "工作单位": "employer",
    "单位": "employer",
    "单位名称": "employer",
    "employer": "employer",
    "科室": "dept",
    "部门": "dept",
    "department": "dept",
    "职务": "title",
    "职位": "title",
    "岗位": "title",
    "职称": "title",
    "title": "title",
    "position": "title",
}


def _label(text: str) -> str:
    return re.sub(r"[\s:：]", "", text).casefold()


def has_label(boxes: Any) -> bool:
    return any(_label(b.text) in _ALL_LABELS for b in boxes)


def normalise_phone(text: str) -> str | None:
    match = _MOBILE.search(text)
    if match:
        return re.sub(r"\D", "", match.group(1))
    return None


# ---------------------------------------------------------------- entries

_DEGREE = re.compile(
    r"^(?:本科|硕士|博士|大专|专科|中专|高中|学士|硕士研究生|博士研究生|研究生|博士后|专升本|"
    r"大学本科|全日制本科|.{0,6}学士|.{0,6}硕士|.{0,6}博士)$"
    r"|^(?:bachelor|master|doctor|associate|diploma|b\.?sc|m\.?sc|b\.?s\.?|m\.?s\.?|m\.?d\.?|"
    r"ph\.?d|mbbs|mph|mba|bn|bsn|msn|b\.?a\.?|m\.?a\.?|b\.?eng|m\.?eng|b\.?pharm)\b",
    re.I,
)
_SCHOOL = re.compile(r"大学|学院|学校|医专|卫校|university|college|institute|school|academy", re.I)
_ORG = re.compile(
    r"医院|卫生院|保健院|公司|集团|研究所|研究院|大学|学院|诊所|卫生服务|疾控|管理局|委员会|中心|"
    r"hospital|clinic|co\.|ltd|inc\b|company|group|corporation|llc|bureau|commission|"
    r"university|institute|cent(?:er|re)|health|pharmacy\b|laborator",
    re.I,
)
_DEPT_PREFIX = re.compile(
    r"^(?:(?:operating room|oncology|cardiology|neurology|emergency(?: medicine| department)?|"
    r"pediatrics|paediatrics|icu|intensive care(?: unit)?|surgery|orthopaedics|orthopedics|"
    r"obstetrics(?: and gynaecology)?|gynaecology|radiology|respiratory medicine|"
    r"internal medicine|general surgery|outpatient pharmacy|inpatient pharmacy|"
    r"clinical pharmacy(?: unit)?|pharmacy|it department|information cent(?:er|re)|"
    r"medical records|human resources|nursing department|"
    r"hospital director's office|director's office|administration|finance|"
    r"dermatology|ophthalmology|nephrology|gastroenterology|endocrinology|hematology|"
    r"haematology|psychiatry|rehabilitation|anesthesiology|anaesthesiology)\s+)(?=\S)",
    re.I,
)
_DEPT_RUN_IN = re.compile(
    r"^.{1,12}?(?:科|室|中心|部|病区|药房)(?=.{0,4}(?:医师|药师|护师|护士|技师)$)"
)
_PAREN_TAIL = re.compile(r"\s*[（(][^()（）]*[)）]\s*$")
_BULLET_LINE = re.compile(r"^\s*(?:[•·●▪◦■□*–]|-\s|\d+[.、)]\s)")
_COMMA_SPLIT = re.compile(r",\s+(?!(?:ltd|inc|llc|co)\b)|，|\s[—–|]\s|\s+-\s+|\s*\|\s*", re.I)


@dataclass
class Education:
    school: str | None = None
    degree: str | None = None
    major: str | None = None
    start: str | None = None
    end: str | None = None


@dataclass
class Experience:
    employer: str | None = None
    title: str | None = None
    start: str | None = None
    end: str | None = None


@dataclass
class ParsedResume:
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    education: list[Education] = field(default_factory=list)
    experience: list[Experience] = field(default_factory=list)
    skills: list[str] = field(default_factory=list)
    certifications: list[str] = field(default_factory=list)
    languages: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _clean(text: str) -> str:
    text = re.sub(r"^[\s#*•·●▪◦■□\-–—:：|,，;；]+|[\s*•·:：|,，;；\-–—]+$", "", text)
    text = re.sub(r"[（(]\s*[)）]", "", text)
    return " ".join(text.split())


def _parts(cells: list[str]) -> list[str]:
    out: list[str] = []
    for cell in cells:
        for part in _COMMA_SPLIT.split(cell):
            part = _clean(part)
            if part and CJK.search(part) and not re.search(r"[A-Za-z]{3}", part):
                out.extend(p for p in part.split() if p)  # zh cells: a space separates
            elif part:
                out.append(part)
    return out


def _strip_range(cells: list[str]) -> tuple[list[str], tuple[str | None, str | None] | None]:
    dates = None
    out: list[str] = []
    for cell in cells:
        found = find_range(cell)
        if found and dates is None:
            start, end, (a, b) = found
            dates = (start, end)
            cell = cell[:a] + "  " + cell[b:]
            cell = re.sub(r"[（(]\s*[)）]", "", cell)
            out.extend(c for c in re.split(r"\s{2,}", cell) if _clean(c))
        else:
            out.append(cell)
    return out, dates


def _education_from(parts: list[str], entry: Education) -> None:
    rest = []
    for part in parts:
        if entry.degree is None and _DEGREE.search(part):
            entry.degree = part
        elif entry.school is None and _SCHOOL.search(part):
            entry.school = _PAREN_TAIL.sub("", part)
        else:
            rest.append(part)
    if entry.degree is None:
        # "Clinical Pharmacy Bachelor of Science": a degree at the end of a cell
        for i, part in enumerate(rest):
            m = re.search(r"\b(bachelor|master|doctor|associate)\b.*$", part, re.I)
            if m and m.start() > 0:
                entry.degree = part[m.start() :]
                rest[i] = part[: m.start()].strip()
                break
    rest = [p for p in rest if p]
    if entry.major is None and rest:
        entry.major = re.sub(r"^(?:major|专业)\s*[:：]\s*", "", rest[0], flags=re.I)


def _experience_from(parts: list[str], entry: Experience) -> None:
    rest = []
    for part in parts:
        if entry.employer is None and _ORG.search(part) and not _DEPT_PREFIX.match(part + " x"):
            entry.employer = _PAREN_TAIL.sub("", part)
        else:
            rest.append(part)
    if entry.employer is None and rest:
        entry.employer = _PAREN_TAIL.sub("", rest.pop(0))
    if entry.title is None and rest:
        cjk = any(CJK.search(p) for p in rest)
        title = rest[-1] if cjk else rest[0]
        if cjk:
            title = title.split()[-1] if " " in title else title
            # "呼吸与危重症医学科住院医师": a department run into a clinical title
            title = _DEPT_RUN_IN.sub("", title)
        else:
            while _DEPT_PREFIX.match(title):
                title = _DEPT_PREFIX.sub("", title, count=1)
        entry.title = title


def _is_prose(cells: list[str]) -> bool:
    """A description line that lost its bullet (OCR): a sentence, not a name or a title."""
    text = "".join(cells)
    if _ORG.search(text) or _DEGREE.search(text) or _SCHOOL.search(text):
        return False
    if re.search(r"[。；;.!]$", text):
        return True
    cjk = len(CJK.findall(text))
    return len(cells) == 1 and (cjk > 10 or len(text.split()) > 8)


def _entries(lines: list[Line], kind: str) -> list[Any]:
    make: Any = Education if kind == "education" else Experience
    fill: Any = _education_from if kind == "education" else _experience_from
    columns: list[str] | None = None
    # (lines printed before the date line, the date line, lines after it, dates)
    blocks: list[tuple[list[Line], Line, list[Line], tuple[str | None, str | None]]] = []
    pending: list[Line] = []
    seen_bullet = False
    results: list[Any] = []
    for cells in lines:
        words = [_COLUMN_WORDS.get(_label(c)) for c in cells]
        if len(cells) >= 2 and all(words):
            columns = [w or "" for w in words]
            continue
        if columns and len(cells) == len(columns):
            entry = make()
            values = dict(zip(columns, cells, strict=True))
            found = find_range(values.get("dates", ""))
            if found:
                entry.start, entry.end = found[0], found[1]
            for key, value in values.items():
                if key in ("school", "degree", "major", "employer", "title"):
                    setattr(entry, key, _clean(value))
            results.append(entry)
            continue
        text = " ".join(cells)
        if _BULLET_LINE.match(cells[0]):
            if not has_range(text):
                seen_bullet = True
                continue
            cells = [_BULLET_LINE.sub("", cells[0]), *cells[1:]]
        rest, dates = _strip_range(cells)
        if dates is not None:
            blocks.append((pending, rest, [], dates))
            pending, seen_bullet = [], False
        elif _is_prose(cells) or len(text) >= 120:
            seen_bullet = True
        elif not blocks or seen_bullet:
            pending.append(cells)
        else:
            blocks[-1][2].append(cells)
    for before, date_line, after, dates in blocks:
        entry = make()
        fill(_parts([c for cells in before[-1:] for c in cells] + date_line), entry)
        for cells in after:
            fill(_parts(cells), entry)
        entry.start, entry.end = dates
        results.append(entry)
    return results


# ---------------------------------------------------------------- lists

_YEAR_BITS = [
    re.compile(r"\s*[（(]\s*(?:19|20)\d\d\s*年?\s*(?:取得|获得)?[)）]"),
    re.compile(r"\s*[,，]\s*(?:19|20)\d\d\s*年?\s*$"),
    re.compile(r"^\s*(?:19|20)\d\d\s*(?:年|\.\d{1,2})?\s*"),
    re.compile(r"\s+(?:19|20)\d\d\s*年?\s*$"),
]


def _items(lines: list[Line], separators: str) -> list[str]:
    out = []
    for cells in lines:
        for cell in cells:
            for piece in re.split(separators, cell):
                piece = _clean(piece)
                if piece:
                    out.append(piece)
    return out


def _skills(lines: list[Line]) -> list[str]:
    items = _items(lines, r"[、，,；;|/]\s*(?![^()（）]*[)）])" if False else r"[、，；;|]|,\s+")
    return [i for i in items if len(i) <= 60 and not re.search(r"[。.]$", i)]


def _certifications(lines: list[Line]) -> list[str]:
    out = []
    for item in _items(lines, r"[；;、]"):
        for pattern in _YEAR_BITS:
            item = pattern.sub("", item)
        item = _clean(item)
        if item and len(item) <= 80:
            out.append(item)
    return out


_LEVEL = re.compile(
    r"\s*[（(][^()（）]*[)）]|\s*[:：\-–]\s*.*$|\s+(?:fluent|native|basic|conversational|"
    r"intermediate|advanced|proficient|cet-?\d|ielts.*|toefl.*|n\d)\b.*$",
    re.I,
)


_LEVEL_WORD = re.compile(
    r"^(?:fluent|native|basic|conversational|intermediate|advanced|proficient|good|"
    r"母语|熟练|良好|精通|一般|流利|基础)$",
    re.I,
)


def _languages(lines: list[Line]) -> list[str]:
    out = []
    bare = [[re.sub(r"\s*[（(][^()（）]*[)）]", "", c) for c in cells] for cells in lines]
    for item in _items(bare, r"[；;、，,|/:：]"):
        if _LEVEL_WORD.match(item):
            continue
        item = _clean(_LEVEL.sub("", item))
        item = re.sub(r"(?:四级|六级|八级|专业[四八]级|[CcＣ][EeＥ][TtＴ]-?\d)$", "", item)
        if item and len(item) <= 30:
            out.append(item)
    return out


# ---------------------------------------------------------------- whole resume


def _section_lines(lines: list[Line]) -> dict[str, list[Line]]:
    sections: dict[str, list[Line]] = {"basic": []}
    current = "basic"
    for cells in lines:
        if all(re.fullmatch(r"[=\-_*~#]{3,}", c) for c in cells):
            continue
        kind = heading_of(cells[0]) if len(cells) <= 2 else None
        if kind is not None and (len(cells) == 1 or heading_of(cells[1]) == kind):
            current = kind
            sections.setdefault(current, [])
            continue
        head = re.match(r"^\s*([^:：]{2,20})[:：]\s*(.+)$", cells[0])
        if head and heading_of(head.group(1)) not in (None, "basic"):
            current = heading_of(head.group(1)) or current
            sections.setdefault(current, []).append([head.group(2), *cells[1:]])
            continue
        sections.setdefault(current, []).append(cells)
    return sections


def _labelled(lines: list[Line]) -> dict[str, str]:
    """Values next to labels: 'key：value' in a cell, or a label cell then its value cell."""
    found: dict[str, str] = {}
    for cells in lines:
        for i, cell in enumerate(cells):
            for kv in re.split(r"\s{2,}|\u3000", cell):
                m = re.match(r"^\s*([^:：]{1,12})[:：]\s*(.+)$", kv)
                if m:
                    found.setdefault(_label(m.group(1)), m.group(2).strip())
            if _label(cell) in _ALL_LABELS and i + 1 < len(cells):
                found.setdefault(_label(cell), cells[i + 1].strip())
    return found


def _name(lines: list[Line], labelled: dict[str, str]) -> str | None:
    for label in _LABELS["name"]:
        if label in labelled:
            return _clean(labelled[label])
    for cells in lines[:6]:
        for cell in cells:
            text = _clean(cell)
            if (
                not text
                or text in ("个人简历", "简历")
                or re.search(r"resume|curriculum|\d|@|[:：]", text, re.I)
                or heading_of(text)
            ):
                continue
            if CJK.search(text):
                if re.fullmatch(r"[\u3400-\u9fff·]{2,5}", text):
                    return text
                continue
            if re.fullmatch(r"[A-Z][A-Za-z'\-.]+(?: [A-Z][A-Za-z'\-.]+){1,3}", text):
                return text
            return None
    return None


def parse_lines(lines: list[Line]) -> ParsedResume:
    sections = _section_lines(lines)
    basic = sections.get("basic", [])
    labelled = _labelled(basic)
    whole = "\n".join(" ".join(cells) for cells in lines)
    resume = ParsedResume()
    resume.name = _name(basic, labelled)
    email = _EMAIL.search(whole) or _EMAIL.search(re.sub(r"\s+", "", whole))  # OCR: "exampl e.cn"
    resume.email = email.group(0) if email else None
    head = "\n".join(" ".join(c) for c in basic) or whole
    resume.phone = normalise_phone(head) or normalise_phone(whole)
    resume.education = _entries(sections.get("education", []), "education")
    resume.experience = _entries(sections.get("experience", []), "experience")
    resume.skills = _skills(sections.get("skills", []))
    resume.certifications = _certifications(sections.get("certifications", []))
    resume.languages = _languages(sections.get("languages", []))
    return resume


def nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)
