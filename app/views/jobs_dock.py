"""The Jobs dock (every background job with progress and Cancel) and the status-bar indicator."""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QLabel,
    QProgressBar,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.views.jobs import Job, JobRunner


class JobsPanel(QWidget):
    """Lists jobs (newest first): title, state, progress bar, elapsed time, Cancel."""

    def __init__(self, runner: JobRunner, parent: Any = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Job", "State", "Progress", "Time", ""])
        self.tree.setRootIsDecorated(False)
        self.tree.setColumnWidth(0, 220)
        self.tree.setColumnWidth(1, 80)
        self.tree.setColumnWidth(2, 140)
        self.tree.setColumnWidth(3, 60)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.tree)
        self._items: dict[int, tuple[QTreeWidgetItem, QProgressBar, QPushButton]] = {}
        runner.sig_job_added.connect(self._add)
        runner.sig_changed.connect(self.refresh)

    def _add(self, job: Job) -> None:
        item = QTreeWidgetItem([job.title, job.state.value, "", ""])
        self.tree.insertTopLevelItem(0, item)
        bar = QProgressBar()
        bar.setRange(0, 1000)
        bar.setTextVisible(True)
        cancel = QPushButton("Cancel")
        cancel.clicked.connect(job.cancel)
        self.tree.setItemWidget(item, 2, bar)
        self.tree.setItemWidget(item, 4, cancel)
        self._items[id(job)] = (item, bar, cancel)
        while self.tree.topLevelItemCount() > 50:
            self.tree.takeTopLevelItem(self.tree.topLevelItemCount() - 1)

    def refresh(self) -> None:
        now = time.monotonic()
        for job in self.runner.jobs:
            entry = self._items.get(id(job))
            if entry is None:
                continue
            item, bar, cancel = entry
            item.setText(1, job.state.value)
            item.setText(3, f"{now - job.started:.1f}s" if job.active else item.text(3) or "")
            bar.setValue(int(job.fraction * 1000))
            bar.setFormat(f"{job.fraction:.0%} {job.message}".strip())
            cancel.setEnabled(job.active)
            if job.error:
                item.setToolTip(0, job.error)


class JobsIndicator(QLabel):
    """Status-bar label: 'Jobs: idle' or 'Jobs: 2 running · Loading blotter 40%'."""

    sig_clicked = Signal()

    def __init__(self, runner: JobRunner, parent: Any = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip("Background jobs: click to open the Jobs panel")
        runner.sig_changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        active = self.runner.active_jobs
        if not active:
            self.setText("Jobs: idle")
            return
        first = active[0]
        more = f"{len(active)} running · " if len(active) > 1 else ""
        self.setText(f"Jobs: {more}{first.title} {first.fraction:.0%}")

    def mousePressEvent(self, event: Any) -> None:
        self.sig_clicked.emit()
        super().mousePressEvent(event)
