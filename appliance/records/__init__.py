"""The box's records (SQLAlchemy 2 models), grouped by domain. Import from here."""

from appliance.records.analysis import (
    AnalysisStatus,
    AnswerAnalysis,
    ExpressionSignals,
    FaceSignals,
    ScoreOverride,
    ScoreReport,
)
from appliance.records.audit import AuditCheckpoint, AuditEvent, CandidateToken
from appliance.records.base import Base, UTCDateTime, new_uuid, utcnow
from appliance.records.box import BoxInfo
from appliance.records.consent import Consent, ConsentPurpose
from appliance.records.documents import ResumeParse
from appliance.records.hiring import (
    Application,
    Comment,
    InterviewPlan,
    InterviewQuestion,
    Job,
    JobStatus,
    RubricLine,
    ScoringDimension,
    ScoringTemplate,
    Stage,
)
from appliance.records.interviews import (
    Answer,
    Evaluation,
    InterviewSession,
    Recording,
    SessionStatus,
)
from appliance.records.jobs import JobRun, RunStatus
from appliance.records.org import OrgKind, OrgUnit, Role, RoleAssignment, User
from appliance.records.people import Candidate, Employee, Referral, Subject, SubjectKind

__all__ = [
    "AnalysisStatus",
    "Answer",
    "AnswerAnalysis",
    "Consent",
    "ConsentPurpose",
    "ExpressionSignals",
    "FaceSignals",
    "ScoreOverride",
    "ScoreReport",
    "AuditCheckpoint",
    "AuditEvent",
    "CandidateToken",
    "Application",
    "Base",
    "BoxInfo",
    "Candidate",
    "Comment",
    "Employee",
    "Evaluation",
    "InterviewPlan",
    "InterviewQuestion",
    "InterviewSession",
    "Job",
    "JobRun",
    "JobStatus",
    "OrgKind",
    "OrgUnit",
    "Recording",
    "Referral",
    "Role",
    "RoleAssignment",
    "ResumeParse",
    "RubricLine",
    "RunStatus",
    "ScoringDimension",
    "ScoringTemplate",
    "SessionStatus",
    "Stage",
    "Subject",
    "SubjectKind",
    "User",
    "UTCDateTime",
    "new_uuid",
    "utcnow",
]
