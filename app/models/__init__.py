"""Domain and persistence model: ORM entities, enums, store, repository, migrations.

No Qt here (checked by the import-linter contracts run by ``make test``).
"""
