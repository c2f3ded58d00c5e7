"""One job runner for all background work.

``JobRunner.submit(title, fn)`` runs ``fn(ctx)`` on a QThreadPool worker. ``ctx.progress(f, msg)``
reports progress (throttled), ``ctx.cancelled()`` tells a cancellable job to stop between chunks.
Results and errors arrive on the GUI thread through the job's signals; a job submitted with a
``key`` cancels the previous job with the same key and disconnects it, so a late result never
lands (latest request wins). Workers never touch widgets.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from enum import Enum
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from app.models.store import StoreError

log = logging.getLogger(__name__)


class JobState(Enum):
    QUEUED = "Queued"
    RUNNING = "Running"
    DONE = "Done"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


class JobCancelled(Exception):
    """Raise inside a job (or let ``ctx.check()`` raise it) to stop it as cancelled."""


class JobContext:
    """Handed to the job function: progress reporting and cancellation (thread-safe)."""

    def __init__(self, job: Job) -> None:
        self._job = job
        self._last = 0.0

    def progress(self, fraction: float, message: str = "") -> None:
        now = time.monotonic()
        if fraction < 1.0 and now - self._last < 0.05:
            return
        self._last = now
        self._job.fraction = max(0.0, min(1.0, fraction))
        self._job.sig_progress.emit(self._job.fraction, message)

    def cancelled(self) -> bool:
        return self._job.cancel_event.is_set()

    def partial(self, value: Any) -> None:
        """Deliver an intermediate result (e.g. a chunk of rows) to the GUI thread."""
        if not self.cancelled():
            self._job.sig_partial.emit(value)  # dropped on arrival if superseded meanwhile

    def check(self) -> None:
        """Raise :class:`JobCancelled` when cancellation was requested."""
        if self.cancelled():
            raise JobCancelled


class Job(QObject):
    """A background task's handle, living on the GUI thread."""

    sig_progress = Signal(float, str)
    """(fraction 0..1, message)"""
    sig_result = Signal(object)
    """(the function's return value)"""
    sig_partial = Signal(object)
    """(an intermediate result sent with ``ctx.partial``)"""
    sig_error = Signal(str)
    """(a user-facing message; the traceback goes to the log)"""
    sig_finished = Signal()
    """Emitted last, whatever the outcome."""

    def __init__(self, title: str, fn: Callable[[JobContext], Any], key: str | None) -> None:
        super().__init__()
        self.title = title
        self.fn = fn
        self.key = key
        self.state = JobState.QUEUED
        self.fraction = 0.0
        self.message = ""
        self.error = ""
        self.started = time.monotonic()
        self.cancel_event = threading.Event()
        self.superseded = False
        self.sig_progress.connect(self._on_progress)

    def _on_progress(self, fraction: float, message: str) -> None:
        self.message = message

    def cancel(self) -> None:
        """Ask the job to stop; it ends as Cancelled at its next check."""
        self.cancel_event.set()

    @property
    def active(self) -> bool:
        return self.state in (JobState.QUEUED, JobState.RUNNING)


class _Runnable(QRunnable):
    def __init__(self, job: Job, done: Callable[[Job, JobState, Any], None]) -> None:
        super().__init__()
        self.job = job
        self.done = done
        self.setAutoDelete(True)

    def run(self) -> None:
        job = self.job
        if job.cancel_event.is_set():
            self.done(job, JobState.CANCELLED, None)
            return
        job.state = JobState.RUNNING
        try:
            result = job.fn(JobContext(job))
        except JobCancelled:
            self.done(job, JobState.CANCELLED, None)
            return
        except StoreError as exc:
            log.error("%s: %s", job.title, exc)
            self.done(job, JobState.FAILED, str(exc))
            return
        except Exception as exc:
            log.error("%s failed: %s\n%s", job.title, exc, traceback.format_exc())
            self.done(job, JobState.FAILED, f"{job.title} failed: {exc}")
            return
        if job.cancel_event.is_set():
            self.done(job, JobState.CANCELLED, None)
        else:
            self.done(job, JobState.DONE, result)


class _Relay(QObject):
    """Carries a worker's outcome to the GUI thread (queued signal)."""

    sig_done = Signal(object, object, object)


class JobRunner(QObject):
    """Runs jobs on a thread pool and tracks them for the Jobs indicator and dock."""

    sig_changed = Signal()
    """A job was added, progressed or finished."""
    sig_job_added = Signal(object)
    """(Job)"""

    def __init__(self, max_threads: int | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.pool = QThreadPool(self)
        if max_threads:
            self.pool.setMaxThreadCount(max_threads)
        self.jobs: list[Job] = []
        self._by_key: dict[str, Job] = {}
        self._relay = _Relay(self)
        self._relay.sig_done.connect(self._finish)
        self.closed = False  # after shutdown(): new jobs are cancelled, never started

    def submit(
        self,
        title: str,
        fn: Callable[[JobContext], Any],
        *,
        on_result: Callable[[Any], None] | None = None,
        on_error: Callable[[str], None] | None = None,
        on_progress: Callable[[float, str], None] | None = None,
        on_partial: Callable[[Any], None] | None = None,
        key: str | None = None,
    ) -> Job:
        """Run ``fn(ctx)`` in the background; callbacks run on the GUI thread."""
        if key is not None and key in self._by_key:
            old = self._by_key.pop(key)
            old.superseded = True  # its late result, partials and errors are dropped
            old.cancel()
        job = Job(title, fn, key)
        if on_result is not None:
            job.sig_result.connect(on_result)
        if on_error is not None:
            job.sig_error.connect(on_error)
        if on_progress is not None:
            job.sig_progress.connect(on_progress)
        if on_partial is not None:
            job.sig_partial.connect(lambda v: None if job.superseded else on_partial(v))
        job.sig_progress.connect(self.sig_changed)
        if key is not None:
            self._by_key[key] = job
        self.jobs.append(job)
        del self.jobs[:-50]  # keep a short history for the Jobs dock
        self.sig_job_added.emit(job)
        self.sig_changed.emit()
        if self.closed:  # the window is closing: nothing new may touch the store
            job.cancel()
            job.state = JobState.CANCELLED
            return job
        self.pool.start(_Runnable(job, self._relay.sig_done.emit))
        return job

    def _finish(self, job: Job, state: JobState, payload: Any) -> None:
        job.state = state
        if self._by_key.get(job.key or "") is job:
            del self._by_key[job.key]  # type: ignore[arg-type]
        if job.superseded:
            state = job.state = JobState.CANCELLED
        if state is JobState.DONE:
            job.fraction = 1.0
            job.sig_result.emit(payload)
        elif state is JobState.FAILED:
            job.error = str(payload)
            job.sig_error.emit(job.error)
        job.sig_finished.emit()
        self.sig_changed.emit()

    @property
    def active_jobs(self) -> list[Job]:
        return [j for j in self.jobs if j.active]

    def cancel_all(self) -> None:
        for j in self.active_jobs:
            j.cancel()

    def shutdown(self, timeout_ms: int = 10_000) -> bool:
        """Cancel everything and wait for the workers (call before the store closes); later
        submissions are cancelled without running."""
        self.closed = True
        self.cancel_all()
        return bool(self.pool.waitForDone(timeout_ms))
