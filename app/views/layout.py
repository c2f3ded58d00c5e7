"""Layout persistence: window geometry, dock state and table columns, plus named workspaces.

Stored with QSettings in an INI file in the data dir (Qt writes it atomically). ``STATE_VERSION``
is bumped whenever dock names change; a saved state of another version, or one that Qt refuses,
falls back to the default layout instead of a broken window.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Protocol

from PySide6.QtCore import QByteArray, QSettings

log = logging.getLogger(__name__)

STATE_VERSION = 6  # 2: Market Watch, Forward Curve; 3: Positions; 4: Risk; 5: What-if;
# 6: Conflicts, Approvals, Audit
_NAME_RE = re.compile(r"^[\w .-]{1,40}$")


class LayoutHost(Protocol):
    def saveGeometry(self) -> QByteArray: ...
    def restoreGeometry(self, geometry: QByteArray | bytes) -> bool: ...
    def saveState(self, version: int = ...) -> QByteArray: ...
    def restoreState(self, state: QByteArray | bytes, version: int = ...) -> bool: ...
    def table_states(self) -> dict[str, QByteArray]: ...
    def restore_table_states(self, states: dict[str, Any]) -> None: ...
    def apply_default_layout(self) -> None: ...


class LayoutStore:
    """Reads and writes layouts of a :class:`LayoutHost` (the main window)."""

    def __init__(self, path: Path) -> None:
        self.settings = QSettings(str(path), QSettings.Format.IniFormat)

    def _save(self, host: LayoutHost, prefix: str) -> None:
        s = self.settings
        s.setValue(f"{prefix}/version", STATE_VERSION)
        s.setValue(f"{prefix}/geometry", host.saveGeometry())
        s.setValue(f"{prefix}/state", host.saveState(STATE_VERSION))
        for name, state in host.table_states().items():
            s.setValue(f"{prefix}/table/{name}", state)
        s.sync()

    def _restore(self, host: LayoutHost, prefix: str) -> bool:
        s = self.settings
        version = s.value(f"{prefix}/version")
        if version is None:
            return False
        try:
            if int(version) != STATE_VERSION:
                log.info("Saved layout is version %s, this is %s: using the default layout",
                         version, STATE_VERSION)  # fmt: skip
                return False
            geometry = s.value(f"{prefix}/geometry")
            state = s.value(f"{prefix}/state")
            ok = bool(geometry is not None and host.restoreGeometry(geometry))
            ok = ok and bool(state is not None and host.restoreState(state, STATE_VERSION))
            if not ok:
                raise ValueError("Qt could not restore the saved window state")
            s.beginGroup(f"{prefix}/table")
            tables = {k: s.value(k) for k in s.childKeys()}
            s.endGroup()
            host.restore_table_states(tables)
            return True
        except (ValueError, TypeError) as exc:
            log.warning("Could not restore the saved layout (%s); using the default layout", exc)
            host.apply_default_layout()
            return False

    def save_session(self, host: LayoutHost) -> None:
        """Save the layout used at the next start."""
        self._save(host, "session")

    def restore_session(self, host: LayoutHost) -> bool:
        """Restore the last session's layout; False (default layout kept) if none or invalid."""
        return self._restore(host, "session")

    # -- named workspaces -----------------------------------------------------------------------
    @staticmethod
    def check_name(name: str) -> str:
        name = name.strip()
        if not _NAME_RE.match(name):
            raise ValueError(
                "A workspace name has 1-40 letters, digits, spaces, dots, dashes or underscores"
            )
        return name

    def save_workspace(self, host: LayoutHost, name: str) -> None:
        self._save(host, f"workspaces/{self.check_name(name)}")

    def load_workspace(self, host: LayoutHost, name: str) -> bool:
        if name not in self.workspaces():
            raise ValueError(f"No workspace named '{name}'")
        return self._restore(host, f"workspaces/{name}")

    def delete_workspace(self, name: str) -> None:
        self.settings.remove(f"workspaces/{name}")
        self.settings.sync()

    def workspaces(self) -> list[str]:
        self.settings.beginGroup("workspaces")
        names = sorted(self.settings.childGroups(), key=str.casefold)
        self.settings.endGroup()
        return names
