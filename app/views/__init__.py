"""Qt presentation layer: main window, docks, table models, dialogs, job runner."""
