"""invitations and outbox

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 04:05:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import appliance.records.base

# revision identifiers, used by Alembic.
revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "invitations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("application_id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("token_id", sa.String(length=32), nullable=False),
        sa.Column("window_start", appliance.records.base.UTCDateTime(), nullable=False),
        sa.Column("window_end", appliance.records.base.UTCDateTime(), nullable=False),
        sa.Column("slot_start", appliance.records.base.UTCDateTime(), nullable=False),
        sa.Column("slot_end", appliance.records.base.UTCDateTime(), nullable=False),
        sa.Column("channels", sa.JSON(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("reminded_at", appliance.records.base.UTCDateTime(), nullable=True),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", appliance.records.base.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["application_id"],
            ["applications.id"],
            name=op.f("fk_invitations_application_id_applications"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_invitations_created_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["interview_sessions.id"],
            name=op.f("fk_invitations_session_id_interview_sessions"),
        ),
        sa.ForeignKeyConstraint(
            ["token_id"],
            ["candidate_tokens.id"],
            name=op.f("fk_invitations_token_id_candidate_tokens"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invitations")),
        sa.UniqueConstraint("session_id", name=op.f("uq_invitations_session_id")),
        sa.UniqueConstraint("token_id", name=op.f("uq_invitations_token_id")),
    )
    with op.batch_alter_table("invitations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_invitations_application_id"), ["application_id"], unique=False
        )

    op.create_table(
        "outbox_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("invitation_id", sa.Integer(), nullable=False),
        sa.Column(
            "channel",
            sa.Enum("EMAIL", "SMS", name="channel", native_enum=False, length=8),
            nullable=False,
        ),
        sa.Column(
            "kind",
            sa.Enum(
                "INVITATION",
                "REMINDER",
                "RESCHEDULED",
                name="messagekind",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum(
                "QUEUED",
                "SENDING",
                "SENT",
                "FAILED",
                name="messagestatus",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("idempotency_key", sa.String(length=32), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", appliance.records.base.UTCDateTime(), nullable=False),
        sa.Column("last_attempt_at", appliance.records.base.UTCDateTime(), nullable=True),
        sa.Column("sent_at", appliance.records.base.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["invitation_id"],
            ["invitations.id"],
            name=op.f("fk_outbox_messages_invitation_id_invitations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_messages")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_outbox_messages_idempotency_key")),
    )
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_outbox_messages_invitation_id"), ["invitation_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_outbox_messages_status"), ["status"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_messages_status"))
        batch_op.drop_index(batch_op.f("ix_outbox_messages_invitation_id"))
    op.drop_table("outbox_messages")
    with op.batch_alter_table("invitations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_invitations_application_id"))
    op.drop_table("invitations")
