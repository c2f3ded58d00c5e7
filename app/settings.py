"""The one settings object: where data lives, environment overrides, secrets.

Paths default to the platform user data dir (platformdirs); ``--data-dir`` or ``QE_DATA_DIR``
override it. Secrets (database passwords, feed tokens) go to the OS keyring, never to a file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

APP_NAME = "QuantaEnergi"
APP_AUTHOR = "QuantaEnergi"


def default_data_dir() -> Path:
    env = os.environ.get("QE_DATA_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_path

    return user_data_path(APP_NAME, APP_AUTHOR)


@dataclass(frozen=True)
class FeedOptions:
    """Where live prices come from (command line; ``url`` falls back to ``QE_FEED_URL``).

    ``url`` set: connect to that remote feed with the token from the OS keyring. Otherwise, when
    ``enabled``, start the embedded feed server (``mode`` simulate or replay, ``speed`` in trading
    days per second, ``None`` = the mode's default) on a free loopback port.
    """

    url: str | None = None
    enabled: bool = True
    mode: str = "simulate"
    speed: float | None = None


@dataclass(frozen=True)
class Settings:
    """Resolved locations for one run of the workstation."""

    data_dir: Path

    @classmethod
    def load(cls, data_dir: str | Path | None = None) -> Settings:
        path = Path(data_dir).expanduser() if data_dir else default_data_dir()
        return cls(data_dir=path.resolve())

    @property
    def store_path(self) -> Path:
        """The local trade store (SQLite)."""
        return self.data_dir / "store.db"

    @property
    def ui_settings_path(self) -> Path:
        """Window layout, column states, named workspaces (INI, written atomically by Qt)."""
        return self.data_dir / "workstation.ini"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def central_config_path(self) -> Path:
        """The desk database settings (host, port, database, user; never the password)."""
        return self.data_dir / "central.json"

    @property
    def central_url(self) -> str | None:
        """Desk database URL ``postgresql://user@host:port/db``: ``--central-url`` (which sets
        QE_CENTRAL_URL for the run), else QE_CENTRAL_URL, else the central.json saved by the
        Settings dialog; ``None`` until the desk database is set."""
        env = os.environ.get("QE_CENTRAL_URL")
        if env:
            return env
        from app.sync.connection import CentralConfig, CentralConfigError

        try:
            config = CentralConfig.load(self.data_dir)
        except CentralConfigError as exc:
            logging.getLogger(__name__).warning("%s", exc)
            return None
        return config.url if config else None

    @property
    def dask_scheduler(self) -> str | None:
        """Dask scheduler address (QE_DASK_SCHEDULER, or ``--dask-scheduler``) for Monte Carlo
        VaR; ``None``: local threads."""
        return os.environ.get("QE_DASK_SCHEDULER") or None

    @property
    def feed_url(self) -> str | None:
        """Remote price feed URL (QE_FEED_URL); ``None`` until the feed is configured."""
        return os.environ.get("QE_FEED_URL") or None

    def ensure_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
