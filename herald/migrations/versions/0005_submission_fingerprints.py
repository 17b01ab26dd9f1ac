"""submission_fingerprints: winnowed text fingerprints for the built-in similarity engine

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "submission_fingerprints",
        sa.Column("submission_id", sa.Integer(), nullable=False),
        sa.Column("hash", sa.BigInteger(), nullable=False),
        sa.Column("assignment_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["assignment_id"],
            ["assignments.id"],
            name=op.f("fk_submission_fingerprints_assignment_id_assignments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["submissions.id"],
            name=op.f("fk_submission_fingerprints_submission_id_submissions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("submission_id", "hash", name=op.f("pk_submission_fingerprints")),
    )
    with op.batch_alter_table("submission_fingerprints", schema=None) as batch_op:
        batch_op.create_index(
            "ix_submission_fingerprints_assignment_hash",
            ["assignment_id", "hash", "submission_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("submission_fingerprints", schema=None) as batch_op:
        batch_op.drop_index("ix_submission_fingerprints_assignment_hash")
    op.drop_table("submission_fingerprints")
