"""Frozen-app entry point (PyInstaller runs this file as __main__)."""

from app.cli import main

raise SystemExit(main())
