"""Owner ids: each token gets an immutable random id, each sweep records the id of the token that submitted it.

Before this, a sweep's owner was only a token name, and revoking a token let a new token with the same name take over
its sweeps. Existing tokens get fresh ids; existing sweeps get the id of the token with their owner's name that
existed when they were submitted (a token created after the sweep is a later holder of a reused name, not its
owner). Sweeps whose token was revoked get an id of their own per owner name that no token holds: only an admin
may change them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_tokens = sa.table("hpscape_tokens", sa.column("id", sa.Integer()), sa.column("name", sa.String()),
                   sa.column("owner_id", sa.String()), sa.column("created_at", sa.DateTime()))
_sweeps = sa.table("hpscape_sweeps", sa.column("owner", sa.String()), sa.column("owner_id", sa.String()),
                   sa.column("created_at", sa.DateTime()))


def _new_owner_id() -> str:
    return secrets.token_hex(8)  # the format of hpscape.service.db.models.new_owner_id


def upgrade() -> None:
    bind = op.get_bind()
    op.add_column("hpscape_tokens", sa.Column("owner_id", sa.String(32), nullable=True))
    for (token_id,) in bind.execute(sa.select(_tokens.c.id)).all():
        bind.execute(_tokens.update().where(_tokens.c.id == token_id).values(owner_id=_new_owner_id()))
    with op.batch_alter_table("hpscape_tokens") as batch:
        batch.alter_column("owner_id", existing_type=sa.String(32), nullable=False)
        batch.create_unique_constraint("uq_hpscape_tokens_owner_id", ["owner_id"])

    op.add_column("hpscape_sweeps", sa.Column("owner_id", sa.String(32), nullable=True))
    op.create_index("ix_hpscape_sweeps_owner_id", "hpscape_sweeps", ["owner_id"])
    holder = (
        sa.select(_tokens.c.owner_id)
        .where(_tokens.c.name == _sweeps.c.owner, _tokens.c.created_at <= _sweeps.c.created_at)
        .scalar_subquery()
    )
    bind.execute(_sweeps.update().values(owner_id=holder))
    orphans = bind.execute(sa.select(_sweeps.c.owner).where(_sweeps.c.owner_id.is_(None)).distinct()).scalars()
    for owner in list(orphans):
        bind.execute(_sweeps.update().where(_sweeps.c.owner == owner, _sweeps.c.owner_id.is_(None))
                     .values(owner_id=_new_owner_id()))


def downgrade() -> None:
    op.drop_index("ix_hpscape_sweeps_owner_id", "hpscape_sweeps")
    with op.batch_alter_table("hpscape_sweeps") as batch:
        batch.drop_column("owner_id")
    with op.batch_alter_table("hpscape_tokens") as batch:
        batch.drop_constraint("uq_hpscape_tokens_owner_id", type_="unique")
        batch.drop_column("owner_id")
