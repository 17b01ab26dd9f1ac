"""queue_samples (the dashboard's depth history), alerts, and the task indexes the
dashboard's history and the backlog check read

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "queue_samples",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("waiting", sa.Integer(), nullable=False),
        sa.Column("delayed", sa.Integer(), nullable=False),
        sa.Column("running", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queue_samples")),
    )
    with op.batch_alter_table("queue_samples", schema=None) as batch_op:
        batch_op.create_index("ix_queue_samples_at", ["at"], unique=False)

    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("task_failed", "backlog", name="alertkind", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("queue", sa.String(length=64), nullable=True),
        sa.Column("task_id", sa.Integer(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("emailed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("key", name=op.f("uq_alerts_key")),
    )
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.create_index("ix_alerts_created_at", ["created_at"], unique=False)

    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index(
            "ix_tasks_status_finished", ["status", "finished_at", "queue"], unique=False
        )
        batch_op.create_index(
            "ix_tasks_status_queue_queued", ["status", "queue", "queued_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_status_queue_queued")
        batch_op.drop_index("ix_tasks_status_finished")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index("ix_alerts_created_at")
    op.drop_table("alerts")
    with op.batch_alter_table("queue_samples", schema=None) as batch_op:
        batch_op.drop_index("ix_queue_samples_at")
    op.drop_table("queue_samples")
