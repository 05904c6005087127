"""job design and question bank

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 04:05:00.000000

Issue 6, item 2: competencies and an editor's trail on jobs, an owner unit on scoring
templates, the question bank (seeded with a hospital-wide starter set, so that a new box
suggests questions from day one), and where an interview question came from.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import appliance.records.base

# revision identifiers, used by Alembic.
revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here (a migration never imports application code): (competency, text, keywords).
STARTER_BANK = (
    (
        "沟通能力",
        "请介绍一次您向患者或家属解释复杂病情或治疗方案的经历。",
        ["患者", "家属", "解释", "病情"],
    ),
    (
        "沟通能力",
        "遇到情绪激动的患者家属时，您会如何沟通？请举例说明。",
        ["家属", "投诉", "情绪", "沟通"],
    ),
    ("沟通能力", "请谈谈您处理患者投诉的一次经历，结果如何？", ["投诉", "患者", "服务"]),
    (
        "团队协作",
        "请举例说明您在多学科团队中与同事协作完成一项任务的经历。",
        ["多学科", "团队", "协作", "会诊"],
    ),
    ("团队协作", "当您与同事对处置意见不一致时，您是怎么处理的？", ["同事", "分歧", "协作"]),
    ("团队协作", "请谈谈您在交接班中如何保证信息完整、不遗漏。", ["交接班", "护理", "病房"]),
    (
        "专业知识",
        "请描述您对急性胸痛患者的初步评估和处理流程。",
        ["胸痛", "心内科", "急诊", "心电图"],
    ),
    ("专业知识", "请谈谈您如何执行查对制度，防止用药差错。", ["用药", "查对", "护理", "药剂"]),
    (
        "专业知识",
        "请介绍您最熟悉的一项诊疗或护理操作规范及其要点。",
        ["规范", "操作", "诊疗", "护理"],
    ),
    (
        "专业知识",
        "在院感防控方面，您在日常工作中会注意哪些环节？",
        ["院感", "感染", "防控", "消毒"],
    ),
    ("应变能力", "如果夜班时发现用药错误，您会怎么做？", ["夜班", "用药", "差错", "上报"]),
    ("应变能力", "请讲一次您在突发抢救中冷静处置的经历。", ["抢救", "急诊", "突发", "重症"]),
    ("应变能力", "同一时间有多位患者需要处理时，您如何排序？", ["急诊", "分诊", "优先", "患者"]),
    ("语言逻辑", "请用三分钟介绍您为什么适合这个岗位，先说结论再说依据。", ["岗位", "优势"]),
    ("语言逻辑", "请总结您近一年工作中最大的收获，并说明原因。", ["总结", "经验"]),
)


def upgrade() -> None:
    """Upgrade schema."""
    bank = op.create_table(
        "question_bank",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("competency", sa.String(length=120), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("keywords", sa.JSON(), nullable=False),
        sa.Column("think_seconds", sa.Integer(), nullable=False),
        sa.Column("answer_seconds", sa.Integer(), nullable=False),
        sa.Column("retakes", sa.Integer(), nullable=False),
        sa.Column("org_unit_id", sa.Integer(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", appliance.records.base.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_question_bank_created_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["org_unit_id"], ["org_units.id"], name=op.f("fk_question_bank_org_unit_id_org_units")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_question_bank")),
    )
    with op.batch_alter_table("question_bank", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_question_bank_competency"), ["competency"])
        batch_op.create_index(batch_op.f("ix_question_bank_org_unit_id"), ["org_unit_id"])

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("competencies", sa.JSON(), server_default="[]", nullable=False)
        )
        batch_op.add_column(sa.Column("updated_by_id", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("updated_at", appliance.records.base.UTCDateTime(), nullable=True)
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_jobs_updated_by_id_users"), "users", ["updated_by_id"], ["id"]
        )

    with op.batch_alter_table("scoring_templates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("org_unit_id", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("updated_at", appliance.records.base.UTCDateTime(), nullable=True)
        )
        batch_op.create_index(batch_op.f("ix_scoring_templates_org_unit_id"), ["org_unit_id"])
        batch_op.create_foreign_key(
            batch_op.f("fk_scoring_templates_org_unit_id_org_units"),
            "org_units",
            ["org_unit_id"],
            ["id"],
        )

    with op.batch_alter_table("interview_questions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("source", sa.String(length=16), server_default="manual", nullable=False)
        )
        batch_op.add_column(sa.Column("bank_question_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("suggestion_reasons", sa.JSON(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_interview_questions_bank_question_id_question_bank"),
            "question_bank",
            ["bank_question_id"],
            ["id"],
            ondelete="SET NULL",
        )

    now = appliance.records.base.utcnow()
    op.bulk_insert(
        bank,
        [
            {
                "competency": competency,
                "text": text,
                "keywords": keywords,
                "think_seconds": 30,
                "answer_seconds": 120,
                "retakes": 1,
                "org_unit_id": None,
                "active": True,
                "created_by_id": None,
                "created_at": now,
            }
            for competency, text, keywords in STARTER_BANK
        ],
    )


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("interview_questions", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_interview_questions_bank_question_id_question_bank"), type_="foreignkey"
        )
        batch_op.drop_column("suggestion_reasons")
        batch_op.drop_column("bank_question_id")
        batch_op.drop_column("source")

    with op.batch_alter_table("scoring_templates", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_scoring_templates_org_unit_id_org_units"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_scoring_templates_org_unit_id"))
        batch_op.drop_column("updated_at")
        batch_op.drop_column("org_unit_id")

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_jobs_updated_by_id_users"), type_="foreignkey")
        batch_op.drop_column("updated_at")
        batch_op.drop_column("updated_by_id")
        batch_op.drop_column("competencies")

    with op.batch_alter_table("question_bank", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_question_bank_org_unit_id"))
        batch_op.drop_index(batch_op.f("ix_question_bank_competency"))

    op.drop_table("question_bank")
