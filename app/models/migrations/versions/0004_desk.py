"""desk database: users, book access, outbox, sync state, conflicts, change log, audit, approvals

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25

The same tables exist in the local SQLite store and in the central PostgreSQL database; each
side uses its part (outbox/sync_state/sync_conflict locally, change_log centrally, the rest on
both). On PostgreSQL this revision also installs the central security model
(app/models/migrations/central.py): group roles, ownership by ``qe_owner``, row-level security
per book keyed on the session user, the ``qe_apply`` write function and the append-only,
hash-chained audit table.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

from app.models.migrations import central

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=24)


BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "app_user",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=60), nullable=False),
        sa.Column("display_name", sa.String(length=120), nullable=False),
        sa.Column(
            "role",
            _enum("userrole", "TRADER", "RISK_MANAGER", "BACK_OFFICE", "COMPLIANCE", "ADMIN"),
            nullable=False,
        ),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app_user")),
        sa.UniqueConstraint("username", name=op.f("uq_app_user_username")),
    )
    op.create_table(
        "book_access",
        sa.Column("username", sa.String(length=60), nullable=False),
        sa.Column("book_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["book_id"], ["book.id"], name=op.f("fk_book_access_book_id_book")),
        sa.PrimaryKeyConstraint("username", "book_id", name=op.f("pk_book_access")),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("op_id", sa.String(length=36), nullable=False),
        sa.Column("entity", sa.String(length=24), nullable=False),
        sa.Column("entity_key", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=60), nullable=False),
        sa.Column("payload", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("server_seq", sa.BigInteger(), nullable=True),
        sa.Column("acked_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("op_id", name=op.f("uq_outbox_op_id")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_state", ["state", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_outbox_entity_key"), ["entity_key"], unique=False)
    op.create_table(
        "sync_state",
        sa.Column("key", sa.String(length=40), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_sync_state")),
    )
    op.create_table(
        "sync_conflict",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("entity_key", sa.String(length=64), nullable=False),
        sa.Column("op_id", sa.String(length=36), nullable=False),
        sa.Column("base_version", sa.Integer(), nullable=False),
        sa.Column("local_payload", sa.Text(), nullable=False),
        sa.Column("remote_version", sa.Integer(), nullable=True),
        sa.Column("remote_payload", sa.Text(), nullable=True),
        sa.Column("detected_at", sa.DateTime(), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("resolution", sa.String(length=200), nullable=False),
        sa.Column("resolved_by", sa.String(length=60), nullable=True),
        sa.Column("resolved_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_conflict")),
    )
    with op.batch_alter_table("sync_conflict", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sync_conflict_entity_key"), ["entity_key"], unique=False
        )
    op.create_table(
        "change_log",
        sa.Column("seq", BIGINT_PK, nullable=False),
        sa.Column("op_id", sa.String(length=36), nullable=False),
        sa.Column("payload_sha", sa.String(length=64), nullable=False),
        sa.Column("entity", sa.String(length=24), nullable=False),
        sa.Column("entity_key", sa.String(length=64), nullable=False),
        sa.Column("book_id", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("origin", sa.String(length=120), nullable=False),
        sa.Column("username", sa.String(length=60), nullable=False),
        sa.Column("client_ts", sa.DateTime(), nullable=True),
        sa.Column("committed_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_change_log")),
        sa.UniqueConstraint("op_id", name=op.f("uq_change_log_op_id")),
    )
    with op.batch_alter_table("change_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_change_log_book_id"), ["book_id"], unique=False)
    op.create_table(
        "audit_log",
        sa.Column("seq", BIGINT_PK, nullable=False),
        sa.Column("ts", sa.DateTime(), nullable=False),
        sa.Column("username", sa.String(length=60), nullable=False),
        sa.Column("workstation", sa.String(length=120), nullable=False),
        sa.Column("entity", sa.String(length=24), nullable=False),
        sa.Column("entity_id", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=24), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_log")),
        sa.UniqueConstraint("hash", name=op.f("uq_audit_log_hash")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_entity", ["entity", "entity_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_log_ts"), ["ts"], unique=False)
    op.create_table(
        "approval_request",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_uuid", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("entity_key", sa.String(length=64), nullable=False),
        sa.Column("book_id", sa.Integer(), nullable=True),
        sa.Column("summary", sa.String(length=300), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.String(length=60), nullable=False),
        sa.Column("requested_at", sa.DateTime(), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("decided_by", sa.String(length=60), nullable=True),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.Column("decision_comment", sa.String(length=300), nullable=False),
        sa.ForeignKeyConstraint(
            ["book_id"], ["book.id"], name=op.f("fk_approval_request_book_id_book")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approval_request")),
        sa.UniqueConstraint("request_uuid", name=op.f("uq_approval_request_request_uuid")),
    )
    with op.batch_alter_table("risk_limit", schema=None) as batch_op:
        batch_op.add_column(sa.Column("limit_uuid", sa.String(length=32), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_risk_limit_limit_uuid"), ["limit_uuid"])
    bind = op.get_bind()
    for (limit_id,) in bind.execute(sa.text("SELECT id FROM risk_limit")).all():
        bind.execute(sa.text("UPDATE risk_limit SET limit_uuid = :u WHERE id = :i"),
                     {"u": uuid.uuid4().hex, "i": limit_id})  # fmt: skip
    if bind.dialect.name == "sqlite":
        # The local trail is append-only too (tamper tests drop these on purpose).
        op.execute(
            "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
            "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
        )
        op.execute(
            "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
            "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
        )
    elif bind.dialect.name == "postgresql":
        central.execute(bind, central.install_statements())


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        central.execute(bind, central.uninstall_statements())
    with op.batch_alter_table("risk_limit", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_risk_limit_limit_uuid"), type_="unique")
        batch_op.drop_column("limit_uuid")
    for name in ("approval_request", "audit_log", "change_log", "sync_conflict", "sync_state",
                 "outbox", "book_access", "app_user"):  # fmt: skip
        op.drop_table(name)
