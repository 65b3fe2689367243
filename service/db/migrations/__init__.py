"""Alembic migrations of the service's tables (version table ``hpscape_alembic_version``;
Optuna owns ``alembic_version``)."""
