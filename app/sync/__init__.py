"""Local SQLite <-> central PostgreSQL replication (see docs/sync.md).

* :mod:`app.models.payload` - the wire form of a trade version (natural keys, exact integers).
* :mod:`app.sync.outbox` - outbox rows written in the same transaction as each local change.
* :mod:`app.sync.connection` - central connection settings, keyring password, diagnostics.
* :mod:`app.sync.engine` - the sync worker: push with idempotency keys, pull from the server's
  change sequence, LISTEN/NOTIFY wake-ups, conflicts, restore detection.
* :mod:`app.sync.status` - the status the worker publishes (``SYNC_STATUS`` events).
"""
