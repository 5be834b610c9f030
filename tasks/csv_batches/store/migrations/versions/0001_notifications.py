"""The notifications table: one row per valid CSV row, keyed by its notification id.

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", postgresql.UUID(), primary_key=True),
        sa.Column("job_id", postgresql.UUID(), nullable=False),
        sa.Column("job_row_number", sa.Integer(), nullable=False),
        sa.Column("service_id", postgresql.UUID(), nullable=False),
        sa.Column("template_id", postgresql.UUID(), nullable=False),
        sa.Column("notification_type", sa.Text(), nullable=False),
        sa.Column("to", sa.Text(), nullable=False),
        sa.Column(
            "personalisation",
            postgresql.JSONB(),
            nullable=False,
            server_default=sa.text("'{}'::jsonb"),
        ),
        sa.Column("status", sa.Text(), nullable=False, server_default="created"),
        sa.Column(
            "created_at",
            sa.TIMESTAMP(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.CheckConstraint(
            "notification_type IN ('sms', 'email', 'letter')",
            name="notifications_notification_type_check",
        ),
        sa.CheckConstraint('char_length("to") <= 1000', name="notifications_to_length_check"),
        sa.CheckConstraint("job_row_number >= 1", name="notifications_job_row_number_check"),
        sa.CheckConstraint(
            "jsonb_typeof(personalisation) = 'object'",
            name="notifications_personalisation_check",
        ),
    )
    # The report (rows of a job in row order) and the reconciler (count of a job's rows) both
    # read a job's rows by this index; the count is an index-only scan.
    op.create_index(
        "notifications_job_id_row_number_idx",
        "notifications",
        ["job_id", "job_row_number"],
    )


def downgrade() -> None:
    op.drop_index("notifications_job_id_row_number_idx", table_name="notifications")
    op.drop_table("notifications")
