"""The SQL tables of a population store (SQLAlchemy Core)."""

from __future__ import annotations

from sqlalchemy import (Boolean, Column, Float, ForeignKey, Index, Integer, MetaData, String, Table, Text,
                        UniqueConstraint)

SCHEMA_VERSION = 1

metadata = MetaData()

meta = Table(
    "poptrain_meta", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

experiments = Table(
    "experiments", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("spec", Text, nullable=False),
    Column("created", Float, nullable=False),
)

members = Table(
    "members", metadata,
    Column("experiment_id", Integer, ForeignKey("experiments.id"), primary_key=True),
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seed", Integer, nullable=False),
    Column("hparams", Text, nullable=False),
    Column("initial_hparams", Text, nullable=False),
    Column("step", Integer, nullable=False, default=0),
    Column("last_ready", Integer, nullable=False, default=0),
    Column("pending", Boolean, nullable=False, default=False),
    Column("status", String(16), nullable=False, default="active"),
    Column("worker", String(128)),
    Column("lease_until", Float, nullable=False, default=0.0),
    Column("version", Integer, nullable=False, default=0),
    Column("ckpt_version", Integer, nullable=False, default=-1),
    Column("last_score", Float),
    Column("failures", Integer, nullable=False, default=0),
    Column("error", Text),
)

reports = Table(
    "reports", metadata,
    Column("experiment_id", Integer, ForeignKey("experiments.id"), primary_key=True),
    Column("member", Integer, primary_key=True, autoincrement=False),
    Column("step", Integer, primary_key=True, autoincrement=False),
    Column("score", Float),
    Column("metrics", Text, nullable=False),
    Column("hparams", Text, nullable=False),
    Column("time", Float, nullable=False),
)

events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("experiment_id", Integer, ForeignKey("experiments.id"), nullable=False),
    Column("member", Integer, nullable=False),
    Column("step", Integer, nullable=False),
    Column("source", Integer, nullable=False),
    Column("source_step", Integer, nullable=False),
    Column("old_hparams", Text, nullable=False),
    Column("new_hparams", Text, nullable=False),
    Column("source_hparams", Text, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("time", Float, nullable=False),
    Index("ix_events_member", "experiment_id", "member"),
)

checkpoints = Table(
    "checkpoints", metadata,
    Column("experiment_id", Integer, ForeignKey("experiments.id"), primary_key=True),
    Column("member", Integer, primary_key=True, autoincrement=False),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("step", Integer, nullable=False),
    Column("key", Text, nullable=False),
    Column("checksum", String(64), nullable=False),
    Column("hparams", Text, nullable=False),
    Column("last_ready", Integer, nullable=False),
    Column("pending", Boolean, nullable=False),
    Column("created", Float, nullable=False),
    Column("pinned_until", Float, nullable=False, default=0.0),
    UniqueConstraint("experiment_id", "member", "seq"),
)
