"""market data: recorded price ticks and settlement curves

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "price_tick",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("instrument", sa.String(length=48), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("bid", sa.Float(), nullable=True),
        sa.Column("ask", sa.Float(), nullable=True),
        sa.Column("last", sa.Float(), nullable=True),
        sa.Column("size", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_price_tick")),
    )
    op.create_index("ix_price_tick_instrument_ts", "price_tick", ["instrument", "ts"])
    op.create_table(
        "settlement_curve",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("product", sa.String(length=32), nullable=False),
        sa.Column("settle_date", sa.Date(), nullable=False),
        sa.Column("start_month", sa.String(length=7), nullable=False),
        sa.Column("prices", sa.Text(), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=80), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlement_curve")),
        sa.UniqueConstraint("product", "settle_date", name="uq_settlement_curve_product_date"),
    )


def downgrade() -> None:
    op.drop_table("settlement_curve")
    op.drop_index("ix_price_tick_instrument_ts", table_name="price_tick")
    op.drop_table("price_tick")
