"""Checkpoints in an object store: a real S3 API served on 127.0.0.1 (moto's server), not a mock object."""

from __future__ import annotations

import os

import pytest

import poptrain
from checks import assert_consistent_lineage
from poptrain.errors import CorruptCheckpoint
from poptrain.store import CheckpointStore
from trainables import Quadratic

TESTS = os.path.dirname(os.path.abspath(__file__))


def test_checkpoints_round_trip_and_detect_damage_on_s3(s3):
    store = CheckpointStore(f"{s3}/unit")
    key = store.key_for("e", 1, 3)
    checksum = store.save(key, {"w": list(range(100))})
    assert store.load(key, checksum) == {"w": list(range(100))}
    data = store.fs.cat_file(store.path(key))
    store.fs.pipe_file(store.path(key), data[: len(data) // 2])  # a truncated object
    with pytest.raises(CorruptCheckpoint, match="does not match its checksum"):
        store.load(key, checksum)


def test_a_local_run_checkpoints_to_s3_and_every_copy_reads_a_verified_source(s3, tmp_path):
    exp = poptrain.Experiment(name="q", trainable=Quadratic, space={"lr": poptrain.LogUniform(0.01, 0.3)},
                              metric="score", population=4, steps=12, ready=poptrain.Every(3), seed=5,
                              storage=f"sqlite:///{tmp_path}/s.db", checkpoints=f"{s3}/run", paths=[TESTS],
                              keep_checkpoints=100)
    result = exp.run(engine="local", workers=2)
    assert_consistent_lineage(result, 12)
    assert result.best().load_state()["trained"] > 0
