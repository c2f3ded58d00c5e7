"""The sync worker's status, published on the event bus as ``SYNC_STATUS``."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

#: Possible values of :attr:`SyncStatus.state`.
STATES = ("not configured", "signed out", "offline", "connecting", "syncing", "online",
          "incompatible")  # fmt: skip


@dataclass(frozen=True)
class SyncStatus:
    """What the status bar and the Conflicts dock show about the desk database.

    ``state``: one of :data:`STATES` ("incompatible": the central schema version differs, the
    workstation stays offline and does not write). ``pending``: outgoing changes not yet
    acknowledged. ``progress``: (done, total) of a long catch-up, else ``None``. ``skew_s``:
    this machine's clock minus the server's, in seconds, when last measured.
    """

    state: str = "not configured"
    pending: int = 0
    last_sync: dt.datetime | None = None
    conflicts: int = 0
    rejected: int = 0
    progress: tuple[int, int] | None = None
    skew_s: float | None = None
    message: str = ""

    @property
    def label(self) -> str:
        """Short status-bar text, e.g. ``Central DB: online · 3 pending · synced 10:41:02``."""
        parts = [f"Central DB: {self.state}"]
        if self.pending:
            parts.append(f"{self.pending} pending")
        if self.conflicts:
            parts.append(f"{self.conflicts} conflict{'s' * (self.conflicts != 1)}")
        if self.rejected:
            parts.append(f"{self.rejected} rejected")
        if self.progress is not None:
            parts.append(f"{self.progress[0]:,}/{self.progress[1]:,}")
        if self.last_sync is not None:
            parts.append("synced " + self.last_sync.astimezone().strftime("%H:%M:%S"))
        return " · ".join(parts)
