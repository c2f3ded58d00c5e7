"""limits: VaR, ES, position and stress limits per book, and their breach history

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24

Limit values are exact decimals stored as scaled integers (app.models.types.ExactDecimal, 3
places); measured usages and utilisations are floats (they come out of the risk engine).
Breaches are append-only: one row per state transition (warning, breach, cleared).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=24)


def upgrade() -> None:
    op.create_table(
        "risk_limit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("book_id", sa.Integer(), nullable=False),
        sa.Column("kind", _enum("limitkind", "VAR", "ES", "POSITION", "STRESS"), nullable=False),
        sa.Column("product", sa.String(length=24), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("horizon_days", sa.Integer(), nullable=True),
        sa.Column("limit_value", sa.BigInteger(), nullable=False),
        sa.Column("warning_pct", sa.BigInteger(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("comment", sa.String(length=200), nullable=False),
        sa.Column("created_by", sa.String(length=60), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_by", sa.String(length=60), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["book_id"], ["book.id"], name=op.f("fk_risk_limit_book_id_book")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_limit")),
    )
    with op.batch_alter_table("risk_limit", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_risk_limit_book_id"), ["book_id"], unique=False)
    op.create_table(
        "limit_breach",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("limit_id", sa.Integer(), nullable=False),
        sa.Column("detected_at", sa.DateTime(), nullable=False),
        sa.Column("kind", _enum("breachkind", "BREACH", "WARNING", "CLEARED"), nullable=False),
        sa.Column("usage", sa.Float(), nullable=False),
        sa.Column("limit_value", sa.BigInteger(), nullable=False),
        sa.Column("utilisation", sa.Float(), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=True),
        sa.Column("detail", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(
            ["limit_id"], ["risk_limit.id"], name=op.f("fk_limit_breach_limit_id_risk_limit")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_limit_breach")),
    )
    with op.batch_alter_table("limit_breach", schema=None) as batch_op:
        batch_op.create_index("ix_limit_breach_limit", ["limit_id", "id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_limit_breach_detected_at"), ["detected_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("limit_breach", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_limit_breach_detected_at"))
        batch_op.drop_index("ix_limit_breach_limit")
    op.drop_table("limit_breach")
    with op.batch_alter_table("risk_limit", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_risk_limit_book_id"))
    op.drop_table("risk_limit")
