"""Child process for tests/test_store_faults.py: insert trades in a loop until killed.

``python -m tests.store_writer_child STORE BOOK_ID CP_ID PRODUCT_ID`` opens the store through
the application (``Store`` + ``TradeRepository``), prints ``ready``, then inserts batches of 1-5
trades forever. After each ``insert_trades`` call returns (the transaction is committed) it
prints ``<batch-tag> <uuid> <uuid> ...`` and flushes, so every line the parent reads names
trades that were acknowledged as committed. Each trade's comment is ``<batch-tag>/<size>``, so
the parent can check that every batch in the store is complete (all or nothing).
"""

from __future__ import annotations

import os
import random
import sys
import uuid
from decimal import Decimal

from app.models.repository import TradeRepository
from app.models.store import Store
from tests.test_store import economics


def main(argv: list[str]) -> int:
    path, book_id, cp_id, product_id = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    store = Store.open_file(path)
    repo = TradeRepository(store)
    rng = random.Random()
    print("ready", flush=True)
    n = 0
    while True:
        n += 1
        size = rng.randint(1, 5)
        tag = f"b{os.getpid()}-{n}"
        batch = [
            economics(book_id, cp_id, product_id, trade_uuid=uuid.uuid4(),
                      quantity=Decimal(rng.randint(1, 10_000)), comment=f"{tag}/{size}")
            for _ in range(size)
        ]  # fmt: skip
        records = repo.insert_trades(batch, "killer-test")
        sys.stdout.write(tag + " " + " ".join(r.trade_uuid.hex for r in records) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
