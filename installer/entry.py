"""Frozen-app entry point (PyInstaller runs this file as __main__).

With ``QE_PACKAGE_SELFTEST=1`` the bundle instead imports every ``app`` module and the third-party
modules that are only imported lazily (scipy, openpyxl, psycopg ...), prints ``selftest ok`` and
exits: ``installer/build.py`` uses it to prove the bundle is complete beyond the start-up path.
"""

import os

if os.environ.get("QE_PACKAGE_SELFTEST") == "1":
    import importlib
    import pkgutil

    import app

    LAZY = ("scipy.special", "openpyxl", "openpyxl.styles", "psycopg", "psycopg_binary.pq",
            "sqlalchemy.dialects.postgresql.psycopg", "alembic.ddl.postgresql", "platformdirs",
            "logging.handlers")  # fmt: skip
    names = [m.name for m in pkgutil.walk_packages(app.__path__, "app.")
             if ".migrations" not in m.name and not m.name.endswith("__main__")]  # fmt: skip
    failed = []
    for name in ["app", *names, *LAZY]:
        try:
            importlib.import_module(name)
        except Exception as exc:  # report every broken import, not just the first
            failed.append(f"{name}: {type(exc).__name__}: {exc}")
    print("\n".join(f"selftest FAILED {f}" for f in failed) or f"selftest ok {len(names) + 1} "
          f"app modules, {len(LAZY)} lazily imported modules")  # fmt: skip
    print("modules:", " ".join(names))
    raise SystemExit(1 if failed else 0)

from app.cli import main

raise SystemExit(main())
