"""pipeline decisions and merges

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26 04:05:00.000000

Issue 6, item 3: stage changes (who, when, from, to, the reason as a sealed comment),
merges of duplicate candidates, and import batches (counts and problem codes only).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import appliance.records.base

# revision identifiers, used by Alembic.
revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STAGES = ("applied", "screened", "invited", "interviewed", "reviewed", "offer", "hired", "rejected")


def _stage(name: str, nullable: bool) -> sa.Column:
    return sa.Column(
        name,
        sa.Enum(*STAGES, name="stage", native_enum=False, length=16),
        nullable=nullable,
    )


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "stage_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("application_id", sa.Integer(), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=False),
        _stage("from_stage", True),
        _stage("to_stage", False),
        sa.Column("reason_comment_id", sa.Integer(), nullable=True),
        sa.Column("batch", sa.String(length=32), nullable=True),
        sa.Column("at", appliance.records.base.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["application_id"],
            ["applications.id"],
            name=op.f("fk_stage_changes_application_id_applications"),
        ),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["users.id"], name=op.f("fk_stage_changes_actor_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["reason_comment_id"],
            ["comments.id"],
            name=op.f("fk_stage_changes_reason_comment_id_comments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stage_changes")),
    )
    with op.batch_alter_table("stage_changes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_stage_changes_application_id"), ["application_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_stage_changes_batch"), ["batch"], unique=False)

    op.create_table(
        "candidate_merges",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("survivor_id", sa.Integer(), nullable=False),
        sa.Column("merged_candidate_id", sa.Integer(), nullable=False),
        sa.Column("merged_subject_id", sa.String(length=32), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=False),
        sa.Column(
            "reason",
            sa.Enum(
                "same_phone",
                "same_email",
                "same_person",
                name="mergereason",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("moved", sa.JSON(), nullable=False),
        sa.Column("at", appliance.records.base.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["survivor_id"],
            ["candidates.id"],
            name=op.f("fk_candidate_merges_survivor_id_candidates"),
        ),
        sa.ForeignKeyConstraint(
            ["merged_subject_id"],
            ["subjects.id"],
            name=op.f("fk_candidate_merges_merged_subject_id_subjects"),
        ),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["users.id"], name=op.f("fk_candidate_merges_actor_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_candidate_merges")),
    )
    with op.batch_alter_table("candidate_merges", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_candidate_merges_survivor_id"), ["survivor_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_candidate_merges_merged_subject_id"),
            ["merged_subject_id"],
            unique=False,
        )

    op.create_table(
        "import_batches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum("done", "rejected", name="importstatus", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("file_kind", sa.String(length=8), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("created", sa.Integer(), nullable=False),
        sa.Column("existing", sa.Integer(), nullable=False),
        sa.Column("resumes", sa.Integer(), nullable=False),
        sa.Column("problems", sa.JSON(), nullable=False),
        sa.Column("at", appliance.records.base.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_import_batches_job_id_jobs")
        ),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["users.id"], name=op.f("fk_import_batches_actor_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_import_batches")),
    )
    with op.batch_alter_table("import_batches", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_import_batches_job_id"), ["job_id"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("import_batches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_import_batches_job_id"))
    op.drop_table("import_batches")
    with op.batch_alter_table("candidate_merges", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_candidate_merges_merged_subject_id"))
        batch_op.drop_index(batch_op.f("ix_candidate_merges_survivor_id"))
    op.drop_table("candidate_merges")
    with op.batch_alter_table("stage_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_stage_changes_batch"))
        batch_op.drop_index(batch_op.f("ix_stage_changes_application_id"))
    op.drop_table("stage_changes")
