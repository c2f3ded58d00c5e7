"""Test helpers for the central desk database (a real PostgreSQL from ``desk_server``).

``CentralDesk.create(server, name)`` makes a fresh database migrated by the same Alembic
migrations the application uses (run as the ``postgres`` superuser, like a DBA running
``quantaenergi central init``), with the standard products, two desk books and two
counterparties. Users are PostgreSQL login roles created through ``qe_admin_create_user``; they
connect over TCP with SCRAM passwords.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg

from app.models.demo import ensure_reference_data
from app.models.store import Store

BOOKS = ("DESK-A", "DESK-B")
COUNTERPARTIES = (
    ("Northwind Energy AG", "5493001KJTIIGC8Y1R12", "DE", False),
    ("Gulf Crescent Trading", "5493000IBP32UQZ0KL24", "AE", True),
)


@dataclass
class CentralDesk:
    server: Any
    db: str
    users: dict[str, str] = field(default_factory=dict)  # name -> password

    @classmethod
    def create(cls, server: Any, db: str) -> CentralDesk:
        store = Store(server.create_db(db))
        try:
            ensure_reference_data(store)
        finally:
            store.close()
        desk = cls(server, db)
        with desk.admin() as conn:
            for name in BOOKS:
                conn.execute("SELECT qe_admin_upsert_book(%s, %s)", (name, f"{name} desk book"))
            for name, lei, country, islamic in COUNTERPARTIES:
                conn.execute("SELECT qe_admin_upsert_counterparty(%s, %s, %s, %s)",
                             (name, lei, country, islamic))  # fmt: skip
        return desk

    def admin(self) -> psycopg.Connection[Any]:
        """A superuser connection (unix socket, autocommit)."""
        return psycopg.connect(host=str(self.server.dir), port=self.server.port,
                               user="postgres", dbname=self.db, autocommit=True)  # fmt: skip

    def add_user(
        self, name: str, role: str, books: tuple[str, ...] = (), password: str | None = None
    ) -> str:
        password = password or f"pw-{name}-S3cret!"
        with self.admin() as conn:
            conn.execute("SELECT qe_admin_create_user(%s, %s, %s, %s, %s)",
                         (name, name.title(), role, password, list(books)))  # fmt: skip
        self.users[name] = password
        return password

    def dsn(self, user: str, password: str | None = None, port: int | None = None) -> str:
        """libpq DSN of ``user`` over TCP (``port`` e.g. a fault proxy's)."""
        pw = self.users[user] if password is None else password
        return (f"host=127.0.0.1 port={port or self.server.port} dbname={self.db} "
                f"user={user} password={pw} connect_timeout=5")  # fmt: skip

    def url(self, user: str, port: int | None = None) -> str:
        """SQLAlchemy-style URL of ``user`` over TCP (password not included)."""
        return f"postgresql://{user}@127.0.0.1:{port or self.server.port}/{self.db}"

    def connect(self, user: str, **kw: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn(user), **kw)
