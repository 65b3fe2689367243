"""The sweep queue, API tokens and idempotency keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hpscape.service.db.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hpscape_sweeps",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("record_name", sa.String(220), nullable=False, unique=True),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("total_trials", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("launches", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("launched_at", UTCDateTime(), nullable=True),
        sa.Column("heartbeat_at", UTCDateTime(), nullable=True),
        sa.Column("cancel_requested_at", UTCDateTime(), nullable=True),
        sa.Column("cancelled_by", sa.String(64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("log_path", sa.Text(), nullable=True),
    )
    op.create_index("ix_hpscape_sweeps_status", "hpscape_sweeps", ["status"])
    op.create_index("ix_hpscape_sweeps_owner", "hpscape_sweeps", ["owner"])
    op.create_index("ix_hpscape_sweeps_created_at", "hpscape_sweeps", ["created_at"])
    op.create_table(
        "hpscape_tokens",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
    )
    op.create_table(
        "hpscape_idempotency",
        sa.Column("owner", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column("sweep_id", sa.String(16), sa.ForeignKey("hpscape_sweeps.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("hpscape_idempotency")
    op.drop_table("hpscape_tokens")
    op.drop_index("ix_hpscape_sweeps_created_at", "hpscape_sweeps")
    op.drop_index("ix_hpscape_sweeps_owner", "hpscape_sweeps")
    op.drop_index("ix_hpscape_sweeps_status", "hpscape_sweeps")
    op.drop_table("hpscape_sweeps")
