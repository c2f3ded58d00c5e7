"""User-defined stress scenarios, stored as JSON in a file the caller names.

The file (by convention ``<data dir>/scenarios.json``) holds ``{"version": 1, "scenarios":
[...]}``, each entry a :meth:`app.engine.risk.stress.Scenario.to_dict`.  Every change rewrites
the file atomically (a temporary file in the same directory, fsync, ``os.replace``), so a crash
never leaves half a file.  A file that cannot be read (bad JSON, wrong layout, an invalid
scenario) is moved aside to ``scenarios.json.corrupt-<timestamp>`` -- never deleted -- and
:class:`ScenarioLibraryError` says where it went; the library then starts empty.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import tempfile
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from app.engine.risk.stress import Scenario, ScenarioError
from app.models.store import StoreError

__all__ = ["FORMAT_VERSION", "ScenarioLibrary", "ScenarioLibraryError"]

FORMAT_VERSION = 1
#: ``audit(action, entity_id, before, after)`` -> a context manager around the file write.
AuditHook = Callable[[str, str, Any, Any], AbstractContextManager[Any]]


class ScenarioLibraryError(Exception):
    """The scenario file could not be read or written (the message says what happened)."""


class ScenarioLibrary:
    """The user's saved scenarios in ``path`` (created on the first save).

    Thread-safe; names are unique case-insensitively.  ``load_error`` keeps the message of a
    corrupt file found by :meth:`load` (the GUI shows it once).  ``audit``, when given (see
    :func:`app.models.audit.settings_recorder`), records every save and delete in the audit
    trail: ``with audit(action, name, before, after): <write the file>``.
    """

    def __init__(self, path: str | Path, audit: AuditHook | None = None) -> None:
        self.path = Path(path)
        self._audit = audit
        self._lock = threading.RLock()
        self._items: list[Scenario] | None = None
        self.load_error: str | None = None

    # ------------------------------------------------------------------ reading

    def load(self) -> list[Scenario]:
        """Read the file (a missing file is an empty library).

        Raises :class:`ScenarioLibraryError` for a corrupt file, after moving it aside; the
        library is empty afterwards.
        """
        with self._lock:
            self._items = []
            self.load_error = None
            try:
                text = self.path.read_text(encoding="utf-8")
            except FileNotFoundError:
                return []
            except OSError as exc:
                raise ScenarioLibraryError(
                    f"cannot read {self.path}: {exc.strerror or exc}"
                ) from exc
            try:
                items = self._parse(text)
            except (ValueError, ScenarioError) as exc:
                aside = self._move_aside()
                self.load_error = (
                    f"The saved scenarios in {self.path} could not be read ({exc}). The file "
                    f"was kept as {aside}; starting with an empty scenario library."
                )
                raise ScenarioLibraryError(self.load_error) from exc
            self._items = items
            return list(items)

    @staticmethod
    def _parse(text: str) -> list[Scenario]:
        data: Any = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("scenarios"), list):
            raise ValueError('expected an object with a "scenarios" list')
        version = data.get("version")
        if version != FORMAT_VERSION:
            raise ValueError(f"unsupported format version {version!r}")
        out: list[Scenario] = []
        seen: set[str] = set()
        for i, d in enumerate(data["scenarios"]):
            try:
                s = Scenario.from_dict(d)
            except ScenarioError as exc:
                raise ScenarioError(f"scenario {i + 1}: {exc}") from exc
            if s.name.casefold() in seen:
                raise ScenarioError(f"scenario {i + 1}: duplicate name {s.name!r}")
            seen.add(s.name.casefold())
            out.append(s)
        return out

    def _move_aside(self) -> Path:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while aside.exists():
            n += 1
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        os.replace(self.path, aside)
        return aside

    def scenarios(self) -> list[Scenario]:
        """The saved scenarios (loads the file the first time; a corrupt file gives ``[]``
        and sets :attr:`load_error`)."""
        with self._lock:
            if self._items is None:
                with contextlib.suppress(ScenarioLibraryError):  # load_error keeps the message
                    self.load()
            return list(self._items or [])

    def get(self, name: str) -> Scenario:
        for s in self.scenarios():
            if s.name.casefold() == name.casefold():
                return s
        raise KeyError(name)

    # ------------------------------------------------------------------ writing

    def save(self, scenario: Scenario, replace: str | None = None) -> None:
        """Add ``scenario``, or replace the one named ``replace`` (renaming is allowed).

        Raises ``ValueError`` if another scenario already has the name.
        """
        with self._lock:
            items = self.scenarios()
            old = (replace or "").casefold()
            new = scenario.name.casefold()
            if new != old and any(s.name.casefold() == new for s in items):
                raise ValueError(f"a scenario named {scenario.name!r} already exists")
            pos = next((i for i, s in enumerate(items) if s.name.casefold() == old), None)
            if replace is not None and pos is None:
                raise KeyError(replace)
            before = None if pos is None else items[pos].to_dict()
            if pos is None:
                items.append(scenario)
            else:
                items[pos] = scenario
            self._write_audited(items, "save", scenario.name, before, scenario.to_dict())

    def delete(self, name: str) -> None:
        with self._lock:
            items = self.scenarios()
            keep = [s for s in items if s.name.casefold() != name.casefold()]
            if len(keep) == len(items):
                raise KeyError(name)
            gone = next(s for s in items if s.name.casefold() == name.casefold())
            self._write_audited(keep, "delete", gone.name, gone.to_dict(), None)

    def _write_audited(
        self, items: list[Scenario], action: str, name: str, before: Any, after: Any
    ) -> None:
        """Write the file inside the audit hook: no audit record, no change."""
        try:
            with nullcontext() if self._audit is None else self._audit(
                action, f"scenario:{name}"[:64], before, after):  # fmt: skip
                self._write(items)
        except StoreError as exc:  # the store refused the audit record (locked, full...)
            raise ScenarioLibraryError(
                f"the scenarios were not saved: the audit trail could not be written ({exc})"
            ) from exc

    def _write(self, items: list[Scenario]) -> None:
        data = {"version": FORMAT_VERSION, "scenarios": [s.to_dict() for s in items]}
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        tmp = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                       dir=self.path.parent)  # fmt: skip
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            tmp = None
        except OSError as exc:
            raise ScenarioLibraryError(
                f"cannot save the scenarios to {self.path}: {exc.strerror or exc}"
            ) from exc
        finally:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
        self._items = list(items)
