"""broadcasts and broadcast_acks: admins' notices, one row each, and who has seen them

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "broadcasts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("course_id", sa.Integer(), nullable=True),
        sa.Column(
            "level",
            sa.Enum(
                "info", "warning", "urgent", name="broadcastlevel", native_enum=False, length=16
            ),
            nullable=False,
        ),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("link", sa.String(length=1024), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["course_id"],
            ["courses.id"],
            name=op.f("fk_broadcasts_course_id_courses"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_broadcasts_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_broadcasts")),
    )
    with op.batch_alter_table("broadcasts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_broadcasts_course_id"), ["course_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_broadcasts_expires_at"), ["expires_at"], unique=False)

    op.create_table(
        "broadcast_acks",
        sa.Column("broadcast_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("acked_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["broadcast_id"],
            ["broadcasts.id"],
            name=op.f("fk_broadcast_acks_broadcast_id_broadcasts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_broadcast_acks_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("broadcast_id", "user_id", name=op.f("pk_broadcast_acks")),
    )
    with op.batch_alter_table("broadcast_acks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_broadcast_acks_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("broadcast_acks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_broadcast_acks_user_id"))
    op.drop_table("broadcast_acks")
    with op.batch_alter_table("broadcasts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_broadcasts_expires_at"))
        batch_op.drop_index(batch_op.f("ix_broadcasts_course_id"))
    op.drop_table("broadcasts")
