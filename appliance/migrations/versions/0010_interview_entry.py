"""interview entry: kiosk codes and answer state

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26 05:35:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import appliance.records.base

# revision identifiers, used by Alembic.
revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "kiosk_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", appliance.records.base.UTCDateTime(), nullable=False),
        sa.Column("expires_at", appliance.records.base.UTCDateTime(), nullable=False),
        sa.Column("used_at", appliance.records.base.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_kiosk_codes_created_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["interview_sessions.id"],
            name=op.f("fk_kiosk_codes_session_id_interview_sessions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kiosk_codes")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_kiosk_codes_code_hash")),
    )
    with op.batch_alter_table("kiosk_codes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_kiosk_codes_session_id"), ["session_id"], unique=False)

    op.create_table(
        "interview_leases",
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("browser_hash", sa.String(length=64), nullable=False),
        sa.Column("acquired_at", appliance.records.base.UTCDateTime(), nullable=False),
        sa.Column("seen_at", appliance.records.base.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["interview_sessions.id"],
            name=op.f("fk_interview_leases_session_id_interview_sessions"),
        ),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_interview_leases")),
    )
    op.create_table(
        "upload_parts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("answer_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("blob_id", sa.String(length=32), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("media_type", sa.String(length=80), nullable=False),
        sa.Column("created_at", appliance.records.base.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["answer_id"], ["answers.id"], name=op.f("fk_upload_parts_answer_id_answers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_upload_parts")),
        sa.UniqueConstraint("answer_id", "seq", name=op.f("uq_upload_parts_answer_id")),
        sa.UniqueConstraint("blob_id", name=op.f("uq_upload_parts_blob_id")),
    )
    with op.batch_alter_table("upload_parts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_upload_parts_answer_id"), ["answer_id"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("upload_parts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_upload_parts_answer_id"))
    op.drop_table("upload_parts")
    op.drop_table("interview_leases")
    with op.batch_alter_table("kiosk_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_kiosk_codes_session_id"))
    op.drop_table("kiosk_codes")
