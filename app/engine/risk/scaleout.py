"""Scale-out of full revaluation: Monte Carlo VaR and stress/scenario grids on an executor.

The work is cut into blocks of scenarios; an :class:`Executor` runs one task per block, on
local threads (:class:`LocalExecutor`, the default) or on a Dask distributed cluster
(:class:`DaskExecutor`, when a scheduler address is configured: :func:`make_executor`).  The
blocks and what each task computes do not depend on the executor, so both give **bitwise the
same results** for the same inputs and seed (given the same numpy/BLAS build on the workers).

Monte Carlo shocks
------------------
:func:`monte_carlo_full_reval` draws exactly the shocks of
:func:`~app.engine.risk.monte_carlo_var_es` for the same ``seed``: ``z`` row by row from
``numpy.random.default_rng(seed)``, ``x = z L'`` in blocks of 256 rows.  The standard normal
generator consumes a variable number of raw draws per normal (ziggurat rejections), so a block's
place in the stream cannot be jumped to; instead the caller's process runs through the stream
once, block by block, recording the bit generator's state at the start of each block (~5 ns per
normal: 0.25 s for a million scenarios of 50 factors), and each task re-draws its own block from
that state.  Only a ~100-byte state travels per block, never the shocks.  Blocks are multiples of
256 rows, so the Cholesky transform runs on the same 256-row blocks as in
:func:`~app.engine.risk.monte_carlo_var_es`; the P&L then agrees with
``monte_carlo_var_es(lambda x: revalue(book, x, ...), cov, alpha, n, seed)`` to the last bits of
the linear part's matrix product (1e-12 relative or better).

Dask
----
``dask.distributed`` is imported only when a :class:`DaskExecutor` first runs (never at
application start-up).  The book (and the scenario grid) is sent to the workers once per call
(``client.scatter(..., broadcast=True)``); tasks are plain functions of this module, so the
workers need the application's package importable (the same version: results are bitwise equal
only with the same code and numpy/BLAS build).  Cancellation is polled by the caller's thread
while it waits (``cancelled()`` is never sent to a worker); pending tasks are then cancelled on
the cluster and :class:`concurrent.futures.CancelledError` is raised.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import math
import os
import threading
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import CancelledError
from typing import Any, Protocol, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from app.engine._inputs import as_float, check
from app.engine.risk.book import RevalStats, RiskBook, _check_shifts, revalue
from app.engine.risk.var import (
    _MC_BLOCK,
    MonteCarloResult,
    as_cov,
    cov_cholesky,
    mc_result,
    mc_settings,
)

__all__ = [
    "DaskExecutor",
    "Executor",
    "LocalExecutor",
    "make_executor",
    "monte_carlo_full_reval",
    "revalue_grid",
]

FloatArray = NDArray[np.float64]
S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")

#: Seconds between two polls of ``cancelled()`` while waiting for tasks.
_POLL = 0.05
#: Bound on scenario rows per Monte Carlo / grid task (memory of one task: rows x factors).
_MAX_BLOCK_ROWS = 65_536


class Executor(Protocol):
    """Runs ``fn(shared, task)`` for each task; what :func:`monte_carlo_full_reval` needs."""

    @property
    def workers(self) -> int:
        """Tasks that run at once (used to size the blocks)."""
        ...

    def imap_unordered(
        self,
        fn: Callable[[S, T], R],
        shared: S,
        tasks: Sequence[T],
        cancelled: Callable[[], bool] | None = None,
    ) -> Generator[tuple[int, R], None, None]:
        """Yield ``(task index, fn(shared, tasks[index]))`` as tasks finish.

        ``shared`` is sent to each worker once.  ``cancelled()`` is polled while waiting; when
        it returns True the remaining tasks are cancelled and ``CancelledError`` is raised.
        Closing the iterator early (an exception in the consumer) cancels the rest too.
        """
        ...


def _raise_if(cancelled: Callable[[], bool] | None) -> None:
    if cancelled is not None and cancelled():
        raise CancelledError("cancelled")


class LocalExecutor:
    """Tasks on a thread pool of this process (the kernels and numpy release the GIL)."""

    def __init__(self, workers: int | None = None) -> None:
        if workers is not None and workers < 1:
            raise ValueError("workers must be >= 1")
        self._workers = workers or min(os.cpu_count() or 1, 8)

    @property
    def workers(self) -> int:
        return self._workers

    def imap_unordered(
        self,
        fn: Callable[[S, T], R],
        shared: S,
        tasks: Sequence[T],
        cancelled: Callable[[], bool] | None = None,
    ) -> Generator[tuple[int, R], None, None]:
        stop = threading.Event()

        def guarded(task: T) -> R:
            if stop.is_set():  # queued behind a cancellation: do not start
                raise CancelledError("cancelled")
            return fn(shared, task)

        pool = cf.ThreadPoolExecutor(self._workers, thread_name_prefix="scaleout")
        try:
            index = {pool.submit(guarded, t): i for i, t in enumerate(tasks)}
            pending = set(index)
            while pending:
                _raise_if(cancelled)
                done, pending = cf.wait(pending, timeout=_POLL, return_when=cf.FIRST_COMPLETED)
                for f in done:
                    yield index[f], f.result()
        finally:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor:
    """Tasks on a Dask distributed cluster.

    Parameters
    ----------
    address_or_client : str or distributed.Client
        A scheduler address (``"tcp://host:8786"``): a client is opened on first use and
        closed by :meth:`close`; or an existing ``Client`` (left open).
    """

    def __init__(self, address_or_client: Any) -> None:
        if isinstance(address_or_client, str):
            if not address_or_client.strip():
                raise ValueError("address_or_client must be a scheduler address or a Client")
            self._address: str | None = address_or_client
            self._client: Any = None
            self._owned = True
        else:
            self._address = None
            self._client = address_or_client
            self._owned = False

    @property
    def client(self) -> Any:
        if self._client is None:
            from distributed import Client  # lazy: never imported at start-up

            self._client = Client(self._address)
        return self._client

    @property
    def workers(self) -> int:
        return max(1, sum(self.client.nthreads().values()))

    def close(self) -> None:
        """Close the client if this executor opened it."""
        if self._owned and self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def imap_unordered(
        self,
        fn: Callable[[S, T], R],
        shared: S,
        tasks: Sequence[T],
        cancelled: Callable[[], bool] | None = None,
    ) -> Generator[tuple[int, R], None, None]:
        from distributed import wait

        client = self.client
        _raise_if(cancelled)
        remote = client.scatter(shared, broadcast=True, hash=False)
        futures = client.map(_call, list(tasks), fn=fn, shared=remote, pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        pending = set(futures)
        try:
            while pending:
                _raise_if(cancelled)
                try:
                    done, pending = wait(pending, timeout=_POLL, return_when="FIRST_COMPLETED")
                except TimeoutError:
                    continue
                for f in done:
                    yield index[f.key], f.result()
        finally:
            if pending:
                client.cancel(list(pending))


def _call(task: Any, fn: Callable[[Any, Any], Any], shared: Any) -> Any:
    return fn(shared, task)


def make_executor(address: str | None = None, workers: int | None = None) -> Executor:
    """:class:`DaskExecutor` on ``address`` when a scheduler address is configured, else a
    :class:`LocalExecutor` with ``workers`` threads."""
    if address:
        return DaskExecutor(address)
    return LocalExecutor(workers)


def _block_rows(n: int, executor: Executor, block_rows: int | None, align: int) -> int:
    """Rows per task: given (rounded up to ``align``), or about four tasks per worker."""
    if block_rows is None:
        block_rows = min(-(-n // (4 * max(executor.workers, 1))), _MAX_BLOCK_ROWS)
    check("block_rows", block_rows >= 1, "a positive integer")
    return -(-int(block_rows) // align) * align


# --------------------------------------------------------------------------- Monte Carlo


def _mc_task(
    shared: tuple[RiskBook, FloatArray, float, float, FloatArray | None, bool],
    task: tuple[int, dict[str, Any]],
) -> tuple[FloatArray, int]:
    """P&L of one block of scenarios: re-draw its normals from the recorded generator state."""
    book, chol_t, vol_shift, horizon_days, loadings_t, by_group = shared
    size, state = task
    bit_gen = getattr(np.random, state["bit_generator"])()
    bit_gen.state = state
    z = np.random.Generator(bit_gen).standard_normal((size, chol_t.shape[0]))
    shocks = np.empty_like(z)
    for b in range(0, size, _MC_BLOCK):  # the 256-row blocks of monte_carlo_var_es
        shocks[b : b + _MC_BLOCK] = z[b : b + _MC_BLOCK] @ chol_t
    if loadings_t is not None:
        shocks = shocks @ loadings_t  # factor moves x = L s
    stats = RevalStats()
    pnl = revalue(book, shocks, vol_shift, horizon_days, by_group=by_group, workers=1,
                  stats=stats)  # fmt: skip
    return pnl, stats.nonpositive


def monte_carlo_full_reval(
    book: RiskBook,
    cov: ArrayLike,
    alpha: float,
    n_scenarios: int,
    seed: int,
    *,
    horizon_days: float = 0.0,
    vol_shift: float = 0.0,
    executor: Executor | None = None,
    block_rows: int | None = None,
    progress: Callable[[float], object] | None = None,
    cancelled: Callable[[], bool] | None = None,
    ci_level: float = 0.95,
    stats: RevalStats | None = None,
    loadings: ArrayLike | None = None,
    by_group: bool = False,
) -> MonteCarloResult:
    """Monte Carlo VaR/ES of ``book`` by full revaluation, scenario blocks on ``executor``.

    The same figures as ``monte_carlo_var_es(lambda x: revalue(book, x, vol_shift,
    horizon_days), cov, alpha, n_scenarios, seed, ci_level=ci_level)`` (the same shocks, see the
    module docstring), computed block by block on local threads or a Dask cluster.

    Parameters
    ----------
    book : RiskBook
    cov : array_like, shape (m, m)
        Covariance of the factor shocks over the horizon (positive definite).
    alpha, n_scenarios, seed, ci_level
        As for :func:`~app.engine.risk.monte_carlo_var_es`.
    horizon_days, vol_shift : float
        As for :func:`~app.engine.risk.book.revalue` (the same for every scenario).
    executor : Executor, optional
        Default: a :class:`LocalExecutor` on every core (at most 8).
    block_rows : int, optional
        Scenarios per task, rounded up to a multiple of 256; default about four tasks per
        worker, at most 65,536.  The result does not depend on it.
    progress, cancelled : callable, optional
        ``progress(fraction of scenarios done)`` after each block; ``cancelled()`` polled while
        waiting (:class:`concurrent.futures.CancelledError`).
    stats : RevalStats, optional
        Filled with the scenario count and the option cells valued at intrinsic.
    loadings : array_like, shape (m, k), optional
        Draw the shocks ``s`` in a ``k``-dimensional space (``cov`` is then ``k x k``) and move
        the book's factors by ``x = L s`` (e.g. a few history series driving many tenors).
    by_group : bool
        Also return the per-group P&L matrix (``MonteCarloResult.by_group``).

    Returns
    -------
    MonteCarloResult
    """
    a, level = mc_settings(alpha, n_scenarios, ci_level)
    s = as_cov(cov)
    m = book.n_factors
    load_t: FloatArray | None = None
    if loadings is not None:
        lmat = as_float("loadings", loadings)
        check("loadings", lmat.ndim == 2 and lmat.shape[0] == m,
              f"of shape ({m}, k) to match the book's factors")  # fmt: skip
        load_t = np.ascontiguousarray(lmat.T)
        m = lmat.shape[1]
    check("cov", s.shape == (m, m), f"of shape ({m}, {m}) to match the shock dimension")
    chol = cov_cholesky(s)
    if not math.isfinite(vol_shift):
        raise ValueError("vol_shift must be finite")
    if not math.isfinite(horizon_days) or horizon_days < 0:
        raise ValueError("horizon_days must be finite and >= 0")
    ex = executor if executor is not None else LocalExecutor()
    n = int(n_scenarios)
    step = _block_rows(n, ex, block_rows, _MC_BLOCK)

    # Run through the stream once, recording where each block starts.
    rng = np.random.default_rng(seed)
    buf = np.empty((min(step, n), m))
    tasks: list[tuple[int, dict[str, Any]]] = []
    starts = list(range(0, n, step))
    for start in starts:
        _raise_if(cancelled)
        size = min(step, n - start)
        tasks.append((size, dict(rng.bit_generator.state)))
        rng.standard_normal(out=buf[:size])
    del buf

    shared = (book, np.ascontiguousarray(chol.T), float(vol_shift), float(horizon_days), load_t,
              bool(by_group))  # fmt: skip
    groups = np.empty((n, book.n_groups)) if by_group else None
    pnl = np.empty(n)
    done = 0
    nonpos = 0
    with contextlib.closing(ex.imap_unordered(_mc_task, shared, tasks, cancelled)) as results:
        for i, (block, bad) in results:
            size = tasks[i][0]
            if not np.isfinite(block).all():
                raise ValueError("full revaluation returned NaN or infinite P&L")
            if groups is not None:
                groups[starts[i] : starts[i] + size] = block
                block = block.sum(axis=1)
            pnl[starts[i] : starts[i] + size] = block
            nonpos += bad
            done += size
            if progress is not None:
                progress(done / n)
    if stats is not None:
        stats.scenarios += n
        stats.nonpositive += nonpos
    return mc_result(pnl, a, level, groups)


# --------------------------------------------------------------------------- grids


def _grid_task(
    shared: tuple[RiskBook, FloatArray, FloatArray, float, bool], task: tuple[int, int]
) -> tuple[FloatArray, int]:
    """P&L of the flattened grid cells ``a:b`` (cell ``i * n_vol + j``: shift i, vol shift j)."""
    book, x, dv, horizon_days, by_group = shared
    a, b = task
    cells = np.arange(a, b)
    rows, cols = np.divmod(cells, dv.size)
    stats = RevalStats()
    out = revalue(book, x[rows], dv[cols], horizon_days, by_group=by_group, workers=1, stats=stats)
    return out, stats.nonpositive


def revalue_grid(
    book: RiskBook,
    shifts: ArrayLike,
    vol_shifts: ArrayLike = 0.0,
    horizon_days: float = 0.0,
    *,
    by_group: bool = False,
    executor: Executor | None = None,
    block_rows: int | None = None,
    progress: Callable[[float], object] | None = None,
    cancelled: Callable[[], bool] | None = None,
    stats: RevalStats | None = None,
) -> FloatArray:
    """Full-revaluation P&L on a stress/scenario grid: every price shift x every vol shift.

    Parameters
    ----------
    shifts : array_like, shape (k, m) or (m,)
        Additive factor price changes per scenario (as :func:`~app.engine.risk.book.revalue`).
    vol_shifts : float or array_like, shape (v,)
        Absolute vol changes, each applied to every option with every price scenario.
    horizon_days : float
        Calendar days that pass (theta).
    by_group : bool
        Per-group P&L.
    executor, block_rows, progress, cancelled, stats
        As for :func:`monte_carlo_full_reval` (``block_rows`` counts grid cells).

    Returns
    -------
    ndarray, shape (k, v) or (k, v, n_groups)
        ``out[i, j]`` is ``revalue(book, shifts[i], vol_shifts[j], horizon_days)``.
    """
    x = _check_shifts(book, shifts)
    dv = np.atleast_1d(np.asarray(vol_shifts, dtype=float))
    check("vol_shifts", dv.ndim == 1 and dv.size >= 1, "a scalar or a non-empty 1-D array")
    check("vol_shifts", np.isfinite(dv), "finite")
    if not math.isfinite(horizon_days) or horizon_days < 0:
        raise ValueError("horizon_days must be finite and >= 0")
    ex = executor if executor is not None else LocalExecutor()
    k, v = x.shape[0], dv.size
    n = k * v
    step = _block_rows(n, ex, block_rows, 1)
    tasks = [(a, min(a + step, n)) for a in range(0, n, step)]
    shared = (book, x, dv, float(horizon_days), bool(by_group))
    out = np.empty((n, book.n_groups) if by_group else (n,))
    done = 0
    nonpos = 0
    with contextlib.closing(ex.imap_unordered(_grid_task, shared, tasks, cancelled)) as results:
        for i, (block, bad) in results:
            a, b = tasks[i]
            out[a:b] = block
            nonpos += bad
            done += b - a
            if progress is not None:
                progress(done / n)
    if stats is not None:
        stats.scenarios += n
        stats.nonpositive += nonpos
    return out.reshape((k, v, book.n_groups) if by_group else (k, v))
