"""Pure numerics (numpy/scipy only): no Qt, no database, no I/O."""
