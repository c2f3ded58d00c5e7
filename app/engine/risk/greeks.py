"""First and second derivatives of a :class:`~app.engine.risk.book.RiskBook` in factor space.

Used by the parametric methods (delta-normal and delta-gamma Cornish-Fisher) and by anything
that needs the book's sensitivities per curve-tenor factor.  Black-76 greeks at the base point
(undiscounted, as the revaluation); an option's underlying is ``F = w . factors``, so its
delta spreads over its months by ``w`` and its gamma is ``gamma w w'``.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from app.engine.risk.book import RiskBook, _black, _black_delta, _black_gamma

__all__ = ["book_gamma", "group_delta", "time_decay"]

FloatArray = NDArray[np.float64]


def _group_matrix(book: RiskBook) -> sparse.csr_matrix:
    o = book.n_options
    return sparse.csr_matrix((np.ones(o), (np.arange(o), book.opt_group)), shape=(o, book.n_groups))


def group_delta(book: RiskBook) -> FloatArray:
    """``(m, n_groups)``: P&L per unit move of each factor, per group (linear + option deltas)."""
    out = np.array(book.linear, dtype=float, copy=True)
    if book.n_options:
        d = _black_delta(book.opt_forward0, book.opt_strike, book.opt_t, book.opt_vol,
                         book.opt_call) * book.opt_qty  # fmt: skip
        # (m, o) @ (o, g): each option's delta spread over its months by its weights.
        per = book.opt_weights.T.multiply(d[None, :]).tocsr()
        out += np.asarray((per @ _group_matrix(book)).todense())
    return out


def book_gamma(book: RiskBook) -> FloatArray:
    """``(m, m)`` second derivative of the book's value: ``sum_o q_o gamma_o w_o w_o'``."""
    m = book.n_factors
    if not book.n_options:
        return np.zeros((m, m))
    g = _black_gamma(book.opt_forward0, book.opt_strike, book.opt_t, book.opt_vol) * book.opt_qty
    w = book.opt_weights
    gw = w.multiply(g[:, None]).tocsr()
    return np.asarray((w.T @ gw).todense())


def time_decay(book: RiskBook, calendar_days: float) -> float:
    """Change of the book's value when ``calendar_days`` pass at unchanged factors."""
    if not book.n_options or calendar_days == 0:
        return 0.0
    if not math.isfinite(calendar_days) or calendar_days < 0:
        raise ValueError("calendar_days must be finite and >= 0")
    t1 = np.maximum(book.opt_t - calendar_days / 365.0, 0.0)
    v1 = _black(book.opt_forward0, book.opt_strike, t1, book.opt_vol, book.opt_call)
    return float(np.sum((v1 - book.opt_value0) * book.opt_qty))
