"""Alembic environment: runs on the connection `hpscape.service.db.migrate` passes in
(never reads alembic.ini or env)."""

from __future__ import annotations

from alembic import context

from hpscape.service.db.migrate import VERSION_TABLE
from hpscape.service.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `hpscape db upgrade` (service.db.migrate.upgrade), not bare alembic")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    # Optuna's tables share this database: autogenerate must only ever see ours.
    include_name=lambda name, type_, _parent: type_ != "table" or name.startswith("hpscape_"),
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
