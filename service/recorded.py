"""Sweeps recorded outside the server (`hpscape run`, `make demo`) as read-only rows, so the controller lists them.

Such a sweep is only Optuna studies named ``NAME/VARIANT`` (or ``NAME/VARIANT/AXIS=VALUE``) carrying the spec in the
study user attr ``sweep_spec``; it has no row in ``hpscape_sweeps``. `import_recorded_sweeps` gives each one a row
with status ``recorded``: owner ``""`` and no owner id (only an admin could change it), never queued, so the
dispatcher never launches or takes it over. Its landscapes, views and status are read from the studies like any
sweep's, live while it still runs elsewhere.

The studies are read through the service's own session (the tables share one database): two small queries, the
names of every study and the spec of new sweeps only, so a scan costs little when nothing is new.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

from pydantic import ValidationError
from sqlalchemy import Integer, String, Text, column, select, table
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hpscape.landscapes import SPEC_ATTR, SweepSpec, parse_study_name
from hpscape.service.db.engine import begin_write
from hpscape.service.db.models import RECORDED, SweepRow, utcnow
from hpscape.service.sweeps import new_sweep_id

__all__ = ["RECORDED_OWNER", "import_recorded_sweeps", "recorded_sweep_names"]

log = logging.getLogger("hpscape.service")

RECORDED_OWNER = ""  # no token has an empty name: no one but an admin may act on these rows
_MAX_RECORD_NAME = 220  # SweepRow.record_name's column width

# Optuna's tables, as far as this module reads them (stable since Optuna 2).
_STUDIES = table("studies", column("study_id", Integer), column("study_name", String))
_STUDY_ATTRS = table("study_user_attributes", column("study_id", Integer), column("key", String),
                     column("value_json", Text))


def recorded_sweep_names(session: Session) -> dict[str, list[int]]:
    """Sweep name -> its study ids (oldest first), for every study named like one of hpscape's."""
    sweeps: dict[str, list[int]] = {}
    for study_id, name in session.execute(select(_STUDIES.c.study_id, _STUDIES.c.study_name)
                                          .order_by(_STUDIES.c.study_id)):
        try:
            sweep, _variant, _facet = parse_study_name(name)
        except ValueError:  # another tool's study, or a facet of an axis this version does not know
            continue
        sweeps.setdefault(sweep, []).append(study_id)
    return sweeps


def _stored_spec(session: Session, study_ids: Iterable[int]) -> SweepSpec | None:
    raw = session.scalars(
        select(_STUDY_ATTRS.c.value_json)
        .where(_STUDY_ATTRS.c.study_id.in_(list(study_ids)), _STUDY_ATTRS.c.key == SPEC_ATTR)
        .order_by(_STUDY_ATTRS.c.study_id).limit(1)
    ).first()
    if raw is None:
        return None
    try:
        return SweepSpec.model_validate(json.loads(raw))
    except (ValueError, ValidationError):  # not JSON, or a spec a newer version wrote
        return None


def import_recorded_sweeps(session: Session) -> list[SweepRow]:
    """A ``recorded`` row for each sweep in the studies that has none yet (and a spec this version reads); returns
    the rows added. Safe to run in several controllers at once: record names are unique, the loser skips."""
    studies = recorded_sweep_names(session)
    known = set(session.scalars(select(SweepRow.record_name)))
    new = [(name, ids) for name, ids in studies.items() if name not in known and len(name) <= _MAX_RECORD_NAME]
    specs = [(name, spec) for name, ids in new if (spec := _stored_spec(session, ids)) is not None]
    session.commit()  # end the reads: each insert below is a short write transaction of its own
    added = []
    for name, spec in specs:
        begin_write(session)
        row = SweepRow(
            id=new_sweep_id(), name=spec.name, record_name=name,
            spec=spec.model_dump(mode="json", exclude_none=True), total_trials=spec.total_trials(),
            status=RECORDED, owner=RECORDED_OWNER, owner_id=None, created_at=utcnow(), launches=0,
        )
        session.add(row)
        try:
            session.commit()
        except IntegrityError:  # another controller imported it meanwhile (or the id collided: the next scan)
            session.rollback()
            continue
        added.append(row)
    if added:
        log.info("listed %d sweep(s) recorded outside the server: %s", len(added),
                 ", ".join(row.record_name for row in added))
    return added
