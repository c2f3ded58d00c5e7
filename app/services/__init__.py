"""Use cases on top of the domain model: validation, trading, import/export."""
