"""Small widget helpers shared by the panels and dialogs (dates, spin boxes, field layouts)."""

from __future__ import annotations

import datetime as dt

from PySide6.QtCore import QDate
from PySide6.QtWidgets import QDoubleSpinBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

#: A panel-level error message (red, bold).
ERROR_STYLE = "color: #b3261e; font-weight: bold;"
#: An inline error under one field.
FIELD_ERROR_STYLE = "color: #b3261e; font-size: 11px;"
#: A small grey explanatory note.
NOTE_STYLE = "color: #666; font-size: 11px;"


def qdate(d: dt.date) -> QDate:
    return QDate(d.year, d.month, d.day)


def pydate(q: QDate) -> dt.date:
    return dt.date(q.year(), q.month(), q.day())


def spin_box(lo: float, hi: float, decimals: int) -> QDoubleSpinBox:
    """A number box that reacts when editing ends (not per keystroke), with thousands separators."""
    box = QDoubleSpinBox()
    box.setRange(lo, hi)
    box.setDecimals(decimals)
    box.setKeyboardTracking(False)
    box.setGroupSeparatorShown(True)
    box.setAccelerated(True)
    return box


def with_suffix(main: QWidget, suffix: QWidget, min_width: int) -> QWidget:
    """``main`` stretched, followed by a unit/currency label (or a small selector)."""
    box = QWidget()
    h = QHBoxLayout(box)
    h.setContentsMargins(0, 0, 0, 0)
    h.addWidget(main, 1)
    suffix.setMinimumWidth(min_width)
    h.addWidget(suffix)
    return box


def stacked(main: QWidget, below: QLabel) -> QWidget:
    """``main`` with a label (note or error) right under it."""
    box = QWidget()
    v = QVBoxLayout(box)
    v.setContentsMargins(0, 0, 0, 0)
    v.setSpacing(1)
    v.addWidget(main)
    v.addWidget(below)
    return box
