"""Reports written to files (HTML, Excel, PDF): no Qt, so the command line and the GUI's worker
threads write the same documents.

Layering (pyproject.toml import-linter contracts): ``app.reports`` sits below ``app.views`` and
above ``app.services`` and ``app.feed``; it imports no Qt.

* :mod:`app.reports.risk` -- the VaR/ES report of one :class:`~app.services.risk.RiskResult`
  (:func:`~app.reports.risk.write_report`);
* :mod:`app.reports.headless` -- ``quantaenergi risk report``: the local store, the recorded
  settlement curves and the bundled price history, without a feed or a window.
"""
