"""Task indexes for the Background Tasks screen: keyset pages (newest first, by id)
filtered by status, kind, queue or owner read one index range; a time range reads
created_at

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26 14:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index("ix_tasks_status_id", ["status", "id"], unique=False)
        batch_op.create_index("ix_tasks_kind_id", ["kind", "id"], unique=False)
        batch_op.create_index("ix_tasks_queue_id", ["queue", "id"], unique=False)
        batch_op.create_index("ix_tasks_owner_id_id", ["owner_id", "id"], unique=False)
        batch_op.create_index("ix_tasks_created_at", ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_created_at")
        batch_op.drop_index("ix_tasks_owner_id_id")
        batch_op.drop_index("ix_tasks_queue_id")
        batch_op.drop_index("ix_tasks_kind_id")
        batch_op.drop_index("ix_tasks_status_id")
