"""Scale-out of full revaluation: local threads and a Dask LocalCluster give the same figures."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import CancelledError
from pathlib import Path

import numpy as np
import pytest

from app.engine.risk import (
    DaskExecutor,
    LocalExecutor,
    make_executor,
    monte_carlo_full_reval,
    monte_carlo_var_es,
    revalue_grid,
)
from app.engine.risk.book import RevalStats, revalue
from tests.test_risk_book import synthetic_book

ROOT = Path(__file__).resolve().parents[1]


def _cov(m: int, sd: float = 4.0) -> np.ndarray:
    i = np.arange(m)
    return sd * sd * np.exp(-np.abs(i[:, None] - i[None, :]) / 8.0)


@pytest.fixture(scope="module")
def dask_executor() -> Iterator[DaskExecutor]:
    distributed = pytest.importorskip("distributed")
    # In-process workers (threads): starts in well under a second; data still goes through
    # scatter and the scheduler, and the kernels release the GIL.
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
    ) as cluster, distributed.Client(cluster) as client:  # fmt: skip
        yield DaskExecutor(client)


def test_importing_the_risk_engine_does_not_import_dask() -> None:
    code = (
        "import sys, app.engine.risk, app.engine.risk.scaleout\n"
        "assert 'distributed' not in sys.modules and 'dask' not in sys.modules\n"
        "assert 'numba' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)


def test_mc_equals_monte_carlo_var_es_stream_for_any_block_size() -> None:
    book = synthetic_book(80, 10, seed=2)
    cov = _cov(book.n_factors)
    ref = monte_carlo_var_es(
        lambda x: revalue(book, x, 0.02, 5.0), cov, 0.99, 3_000, seed=11, chunk=1_000
    )
    for block in (None, 256, 700, 5_000):
        res = monte_carlo_full_reval(
            book, cov, 0.99, 3_000, 11, horizon_days=5.0, vol_shift=0.02,
            executor=LocalExecutor(2), block_rows=block,
        )  # fmt: skip
        np.testing.assert_allclose(res.pnl, ref.pnl, rtol=1e-12, atol=1e-9)
        assert res.var == pytest.approx(ref.var, rel=1e-12)
        assert res.es == pytest.approx(ref.es, rel=1e-12)
        assert res.var_ci == pytest.approx(ref.var_ci, rel=1e-12)
        assert res.n_scenarios == 3_000 and res.ci_level == ref.ci_level


def test_mc_on_dask_equals_local_bitwise(dask_executor: DaskExecutor) -> None:
    book = synthetic_book(120, 12, n_groups=2, seed=3)
    cov = _cov(book.n_factors, 20.0)  # large moves: some forwards below zero
    st_l, st_d = RevalStats(), RevalStats()
    loc = monte_carlo_full_reval(
        book, cov, 0.975, 4_000, 5, executor=LocalExecutor(2), block_rows=512, stats=st_l
    )
    seen: list[float] = []
    das = monte_carlo_full_reval(
        book, cov, 0.975, 4_000, 5, executor=dask_executor, block_rows=512, stats=st_d,
        progress=seen.append,
    )  # fmt: skip
    np.testing.assert_array_equal(das.pnl, loc.pnl)
    assert (das.var, das.es, das.var_ci) == (loc.var, loc.es, loc.var_ci)
    assert st_d.nonpositive == st_l.nonpositive > 0 and st_d.scenarios == 4_000
    assert len(seen) == 8 and seen == sorted(seen) and seen[-1] == 1.0


def test_grid_on_dask_equals_local_and_revalue(dask_executor: DaskExecutor) -> None:
    book = synthetic_book(60, 8, n_groups=3, seed=4)
    shifts = np.random.default_rng(1).normal(0.0, 6.0, (23, book.n_factors))
    vols = np.array([-0.1, 0.0, 0.05, 0.2])
    loc = revalue_grid(book, shifts, vols, 3.0, by_group=True, executor=LocalExecutor(2),
                       block_rows=10)  # fmt: skip
    das = revalue_grid(book, shifts, vols, 3.0, by_group=True, executor=dask_executor,
                       block_rows=10)  # fmt: skip
    assert loc.shape == (23, 4, 3)
    np.testing.assert_array_equal(das, loc)
    for j, v in enumerate(vols):
        np.testing.assert_allclose(
            loc[:, j], revalue(book, shifts, v, 3.0, by_group=True), rtol=1e-12, atol=1e-9
        )
    tot = revalue_grid(book, shifts[0], vols, executor=LocalExecutor(1))
    assert tot.shape == (1, 4)


def test_cancellation_local_and_dask(dask_executor: DaskExecutor) -> None:
    book = synthetic_book(60, 8, seed=6)
    cov = _cov(book.n_factors)
    for ex in (LocalExecutor(2), dask_executor):
        calls = []

        def cancelled(calls: list[int] = calls) -> bool:
            calls.append(1)
            return len(calls) > 2

        with pytest.raises(CancelledError):
            monte_carlo_full_reval(book, cov, 0.99, 20_000, 1, executor=ex, block_rows=256,
                                   cancelled=cancelled)  # fmt: skip
        with pytest.raises(CancelledError):
            revalue_grid(book, np.zeros((50, book.n_factors)), executor=ex, block_rows=1,
                         cancelled=lambda: True)  # fmt: skip
    # The cluster is still usable afterwards.
    res = monte_carlo_full_reval(book, cov, 0.99, 600, 1, executor=dask_executor)
    assert res.n_scenarios == 600


def test_local_executor_stops_queued_tasks_on_cancel() -> None:
    started = []
    lock = threading.Lock()
    stop = threading.Event()

    def fn(shared: int, task: int) -> int:
        with lock:
            started.append(task)
        if task:  # hold the pool's one thread until the cancellation is requested
            stop.wait(10.0)
        return shared + task

    it = LocalExecutor(1).imap_unordered(fn, 1, list(range(200)), stop.is_set)
    assert next(it) == (0, 1)
    stop.set()
    with pytest.raises(CancelledError):
        list(it)
    assert len(started) <= 3  # the running task finishes; queued ones never start


def test_bad_input_and_make_executor() -> None:
    book = synthetic_book(10, 4, seed=7)
    with pytest.raises(ValueError, match="cov"):
        monte_carlo_full_reval(book, np.eye(3), 0.99, 100, 1)
    with pytest.raises(ValueError, match="cov"):
        monte_carlo_full_reval(book, -np.eye(4), 0.99, 100, 1)
    with pytest.raises(ValueError, match="alpha"):
        monte_carlo_full_reval(book, np.eye(4), 1.5, 100, 1)
    with pytest.raises(ValueError, match="n_scenarios"):
        monte_carlo_full_reval(book, np.eye(4), 0.99, 0, 1)
    with pytest.raises(ValueError, match="vol_shifts"):
        revalue_grid(book, np.zeros(4), [np.nan])
    assert isinstance(make_executor(None, 3), LocalExecutor)
    assert make_executor(None, 3).workers == 3
    assert isinstance(make_executor("tcp://127.0.0.1:1"), DaskExecutor)  # connects lazily
    with pytest.raises(ValueError):
        LocalExecutor(0)


def test_mc_on_worker_processes_equals_local() -> None:
    """Real serialisation: the book, the tasks and the results cross process boundaries."""
    distributed = pytest.importorskip("distributed")
    book = synthetic_book(40, 6, seed=8)
    cov = _cov(book.n_factors)
    loc = monte_carlo_full_reval(book, cov, 0.99, 2_000, 3, executor=LocalExecutor(2))
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster, distributed.Client(cluster) as client:  # fmt: skip
        das = monte_carlo_full_reval(book, cov, 0.99, 2_000, 3, executor=DaskExecutor(client))
    np.testing.assert_array_equal(das.pnl, loc.pnl)
