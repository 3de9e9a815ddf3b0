"""The SQL store's hot-path statements, built once with bound parameters.

Building a SQLAlchemy statement costs more than SQLite takes to run it; the worker loop runs
these every interval, so they are constructed at import and only executed with new values.
"""

from __future__ import annotations

from sqlalchemy import (ColumnElement, Float, and_, bindparam, case, cast, delete, exists, false, func, insert, literal, or_,
                        select, text, update)

from ..records import ACTIVE
from . import schema as t

m, r, k, e = t.members.c, t.reports.c, t.checkpoints.c, t.events.c

THIS_MEMBER = and_(m.experiment_id == bindparam("eid"), m.id == bindparam("mid"))
# the database's time now, in seconds since the epoch: leases are measured on it, never on a client's clock
# (SQLite's 'now' has millisecond precision; julianday's double keeps it); elsewhere the caller's `now`
NOW = {"postgresql": cast(func.extract("epoch", func.statement_timestamp()), Float),
       "sqlite": (func.julianday("now") - 2440587.5) * 86400.0, "other": bindparam("now")}
clock = {dialect: select(now) for dialect, now in NOW.items()}
MOST_DUE = (m.step, case((m.worker == bindparam("wid"), 0), else_=1), m.id)


def claimable(now: ColumnElement) -> ColumnElement:
    """Active members free, or held by the claimant, or whose lease ended before `now`."""
    return and_(m.experiment_id == bindparam("eid"), m.status == ACTIVE,
                or_(m.worker.is_(None), m.worker == bindparam("wid"), m.lease_until < now))


member = select(t.members).where(THIS_MEMBER)
MINE = m.worker == bindparam("wid")
PAST_BARRIER = or_(m.pending == false(), m.step <= bindparam("lowest"))
# a claim's choice by (past a barrier, only its own), with the database's time as `db_now`; the lease it then takes
DUE = {dialect: {(barrier, mine): select(t.members, now.label("db_now"))
                 .where(claimable(now), *([PAST_BARRIER] if barrier else []), *([MINE] if mine else []))
                 .order_by(*MOST_DUE).limit(1)
                 for barrier in (False, True) for mine in (False, True)}
       for dialect, now in NOW.items()}
# PostgreSQL's claims: the same choices, each row locked, rows other claims hold locked skipped
LOCKED = {key: query.with_for_update(skip_locked=True) for key, query in DUE["postgresql"].items()}
take = {dialect: update(t.members).where(THIS_MEMBER, claimable(now))
        .values(worker=bindparam("claimant"), lease_until=now + bindparam("lease")) for dialect, now in NOW.items()}
lowest_active_step = select(func.min(m.step)).where(m.experiment_id == bindparam("eid"), m.status == ACTIVE)
held = select(func.count()).where(m.experiment_id == bindparam("eid"), m.worker == bindparam("wid"),
                                  m.status == ACTIVE)
renew = {dialect: update(t.members).where(m.experiment_id == bindparam("eid"), m.worker == bindparam("wid"))
         .values(lease_until=now + bindparam("lease")) for dialect, now in NOW.items()}
release = (update(t.members).where(THIS_MEMBER, m.worker == bindparam("wid"))
           .values(worker=None, lease_until=0.0))

drop_report = delete(t.reports).where(r.experiment_id == bindparam("eid"), r.member == bindparam("mid"),
                                      r.step == bindparam("at_step"))
add_report = insert(t.reports)
HELD_BY_ME = and_(THIS_MEMBER, m.worker == bindparam("wid"))
# a report already there from this very call (its time is its own): a retry after its commit's answer was lost
REPORTED = exists().where(r.experiment_id == bindparam("eid"), r.member == bindparam("mid"),
                          r.step == bindparam("at_step"), r.time == bindparam("at"))
reported = select(r.member).where(r.experiment_id == bindparam("eid"), r.member.in_(bindparam("mids", expanding=True)),
                                  r.step == bindparam("at_step"), r.time == bindparam("at"))


def revision(dialect: str, eid: object = None) -> ColumnElement:
    """What a write that changes a member's score or status stamps on its row.

    PostgreSQL: the writing transaction's id; a reader fetches rows stamped at or after the
    oldest transaction still running at its previous read. SQLite (writers take turns): one more
    than the experiment's highest stamp. Elsewhere 0, and readers read every row.
    """
    if dialect == "postgresql":
        return func.txid_current()
    if dialect == "sqlite":
        latest = t.members.alias("latest")
        experiment = bindparam("eid") if eid is None else literal(eid)
        return (select(func.coalesce(func.max(latest.c.revision), 0) + 1)
                .where(latest.c.experiment_id == experiment).scalar_subquery())
    return literal(0)


advance = {dialect: update(t.members).where(HELD_BY_ME, ~REPORTED)
           .values(step=bindparam("at_step"), last_score=bindparam("score"), hparams=bindparam("trained_with"),
                   version=m.version + 1, revision=revision(dialect))
           for dialect in ("postgresql", "sqlite", "other")}
# record_exploits' events already there: (member, step, time) names an event
events_at = select(e.member, e.step, e.time).where(e.experiment_id == bindparam("eid"),
                                                   e.member.in_(bindparam("mids", expanding=True)),
                                                   e.step.in_(bindparam("steps", expanding=True)))
exploit = update(t.members).where(HELD_BY_ME).values(hparams=bindparam("new_hparams"), version=m.version + 1)
add_event = insert(t.events)
# taken before an event gets its id (PostgreSQL: FOR NO KEY UPDATE, which inserts' foreign-key checks do not wait
# for): concurrent exploits then commit in id order, so a reader that saw id n has seen every id below it
lock_experiment = select(t.experiments.c.id).where(t.experiments.c.id == bindparam("eid")).with_for_update(key_share=True)
# the oldest transaction still running: every change a later read can see that this one cannot is stamped at or after it
running_horizon = text("SELECT txid_snapshot_xmin(txid_current_snapshot())")
changed_scores = (select(m.id, m.last_score, m.status, m.step, m.revision)
                  .where(m.experiment_id == bindparam("eid"), m.revision >= bindparam("since")))
scores_at = (select(r.member, r.score)
             .join(t.members, and_(m.experiment_id == r.experiment_id, m.id == r.member))
             .where(r.experiment_id == bindparam("eid"), r.step == bindparam("at_step"), m.status != "failed")
             .order_by(r.member))

THESE_MEMBERS_CHECKPOINTS = and_(k.experiment_id == bindparam("eid"), k.member.in_(bindparam("mids", expanding=True)))
recorded_keys = select(k.key).where(THESE_MEMBERS_CHECKPOINTS, k.key.in_(bindparam("keys", expanding=True)))
last_seqs = select(k.member, func.max(k.seq)).where(THESE_MEMBERS_CHECKPOINTS).group_by(k.member)
add_checkpoint = insert(t.checkpoints)
mark_current = update(t.members).where(THIS_MEMBER, m.version == bindparam("ver")).values(ckpt_version=bindparam("ver"))
mark_ready = (update(t.members).where(HELD_BY_ME)
              .values(last_ready=bindparam("ready_step"), pending=bindparam("is_pending")))
newest_first = (select(k.member, k.seq, k.key, k.pinned_until).where(THESE_MEMBERS_CHECKPOINTS)
                .order_by(k.member, k.seq.desc()))
drop_checkpoint = delete(t.checkpoints).where(k.experiment_id == bindparam("eid"), k.member == bindparam("mid"),
                                              k.seq == bindparam("at_seq"))
