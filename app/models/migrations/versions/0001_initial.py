"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-24

Quantities and prices are scaled integers (see app.models.types.ExactDecimal); timestamps are
UTC stored without offset (app.models.types.UTCDateTime).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "book",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=60), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("is_demo", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_book")),
        sa.UniqueConstraint("name", name=op.f("uq_book_name")),
    )
    op.create_table(
        "counterparty",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("lei", sa.String(length=20), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("is_islamic", sa.Boolean(), nullable=False),
        sa.Column("is_demo", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_counterparty")),
        sa.UniqueConstraint("lei", name=op.f("uq_counterparty_lei")),
        sa.UniqueConstraint("name", name=op.f("uq_counterparty_name")),
    )
    op.create_table(
        "product",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=24), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column(
            "commodity",
            sa.Enum(
                "POWER",
                "NATURAL_GAS",
                "CRUDE",
                "REFINED",
                name="commodity",
                native_enum=False,
                create_constraint=True,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("hub", sa.String(length=60), nullable=False),
        sa.Column(
            "unit",
            sa.Enum(
                "MWH",
                "MMBTU",
                "THERM",
                "BBL",
                "GAL",
                "TONNE",
                name="unit",
                native_enum=False,
                create_constraint=True,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("contract_size", sa.BigInteger(), nullable=False),
        sa.Column(
            "load_shape",
            sa.Enum(
                "BASE",
                "PEAK",
                "OFF_PEAK",
                name="loadshape",
                native_enum=False,
                create_constraint=True,
                length=24,
            ),
            nullable=True,
        ),
        sa.Column("price_floor", sa.BigInteger(), nullable=False),
        sa.Column("price_cap", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_product")),
        sa.UniqueConstraint("code", name=op.f("uq_product_code")),
    )
    op.create_table(
        "trade",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("trade_uuid", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("is_current", sa.Boolean(), nullable=False),
        sa.Column("book_id", sa.Integer(), nullable=False),
        sa.Column("counterparty_id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column(
            "instrument",
            sa.Enum(
                "PHYSICAL_FORWARD",
                "FUTURE",
                "SWAP",
                "OPTION",
                name="instrumenttype",
                native_enum=False,
                create_constraint=True,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column(
            "side",
            sa.Enum(
                "BUY", "SELL", name="side", native_enum=False, create_constraint=True, length=24
            ),
            nullable=False,
        ),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column(
            "quantity_unit",
            sa.Enum(
                "MWH",
                "MMBTU",
                "THERM",
                "BBL",
                "GAL",
                "TONNE",
                name="unit",
                native_enum=False,
                create_constraint=True,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("price", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("trade_date", sa.Date(), nullable=False),
        sa.Column("delivery_start", sa.Date(), nullable=False),
        sa.Column("delivery_end", sa.Date(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "CAPTURED",
                "VALIDATED",
                "CONFIRMED",
                "ALLOCATED",
                "SETTLED",
                "INVOICED",
                "PAID",
                "CANCELLED",
                name="tradestatus",
                native_enum=False,
                create_constraint=True,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column(
            "option_type",
            sa.Enum(
                "CALL",
                "PUT",
                name="optiontype",
                native_enum=False,
                create_constraint=True,
                length=24,
            ),
            nullable=True,
        ),
        sa.Column("strike", sa.BigInteger(), nullable=True),
        sa.Column("expiry_date", sa.Date(), nullable=True),
        sa.Column(
            "exercise_style",
            sa.Enum(
                "EUROPEAN",
                "AMERICAN",
                "ASIAN",
                name="exercisestyle",
                native_enum=False,
                create_constraint=True,
                length=24,
            ),
            nullable=True,
        ),
        sa.Column("premium", sa.BigInteger(), nullable=True),
        sa.Column("comment", sa.String(length=500), nullable=False),
        sa.Column("created_by", sa.String(length=60), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_by", sa.String(length=60), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["book_id"], ["book.id"], name=op.f("fk_trade_book_id_book")),
        sa.ForeignKeyConstraint(
            ["counterparty_id"],
            ["counterparty.id"],
            name=op.f("fk_trade_counterparty_id_counterparty"),
        ),
        sa.ForeignKeyConstraint(
            ["product_id"], ["product.id"], name=op.f("fk_trade_product_id_product")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trade")),
        sa.UniqueConstraint("trade_uuid", "version", name="uq_trade_uuid_version"),
    )
    with op.batch_alter_table("trade", schema=None) as batch_op:
        batch_op.create_index("ix_trade_current", ["is_current", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_trade_trade_uuid"), ["trade_uuid"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("trade", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_trade_trade_uuid"))
        batch_op.drop_index("ix_trade_current")

    op.drop_table("trade")
    op.drop_table("product")
    op.drop_table("counterparty")
    op.drop_table("book")
