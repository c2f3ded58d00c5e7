"""Risk engine: historical, parametric, delta-gamma and Monte Carlo VaR/ES, and backtests.

Pure numerics (numpy/scipy).  Conventions (P&L in, losses positive out, the empirical
quantile, horizon scaling) are documented in :mod:`app.engine.risk.var` and
``docs/engine-risk.md``.
"""

from __future__ import annotations

from app.engine.risk.backtest import (
    BacktestResult,
    basel_traffic_light,
    christoffersen_ind,
    kupiec_pof,
    rolling_var_backtest,
    transition_counts,
)
from app.engine.risk.scaleout import (
    DaskExecutor,
    Executor,
    LocalExecutor,
    make_executor,
    monte_carlo_full_reval,
    revalue_grid,
)
from app.engine.risk.var import (
    MonteCarloResult,
    component_es,
    component_var_parametric,
    delta_gamma_cornish_fisher_es,
    delta_gamma_cornish_fisher_var,
    delta_gamma_cumulants,
    ewma_cov,
    incremental_var,
    marginal_var_parametric,
    monte_carlo_var_es,
    parametric_var_es,
    tail_count,
    var_es,
)

__all__ = [
    "BacktestResult",
    "DaskExecutor",
    "Executor",
    "LocalExecutor",
    "MonteCarloResult",
    "basel_traffic_light",
    "christoffersen_ind",
    "component_es",
    "component_var_parametric",
    "delta_gamma_cornish_fisher_es",
    "delta_gamma_cornish_fisher_var",
    "delta_gamma_cumulants",
    "ewma_cov",
    "incremental_var",
    "kupiec_pof",
    "make_executor",
    "marginal_var_parametric",
    "monte_carlo_full_reval",
    "monte_carlo_var_es",
    "parametric_var_es",
    "revalue_grid",
    "rolling_var_backtest",
    "tail_count",
    "transition_counts",
    "var_es",
]
