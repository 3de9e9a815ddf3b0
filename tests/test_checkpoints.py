"""Checkpoints: atomic writes through fsspec, checksums verified on load."""

from __future__ import annotations

import os

import numpy as np
import pytest

from poptrain.errors import CorruptCheckpoint, StorageError
from poptrain.store import CheckpointStore, default_checkpoints


def test_round_trip_and_no_temporary_files_left(tmp_path):
    store = CheckpointStore(f"file://{tmp_path}/ck")
    key = store.key_for("exp", 3, 12)
    state = {"w": np.arange(5.0), "step": 12}
    checksum = store.save(key, state)
    loaded = store.load(key, checksum)
    assert np.array_equal(loaded["w"], state["w"]) and loaded["step"] == 12
    files = os.listdir(tmp_path / "ck" / "exp")
    assert files == [key.split("/")[1]]  # the temporary name was renamed away
    assert key != store.key_for("exp", 3, 12)  # keys are never reused


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_damaged_checkpoint_is_reported(tmp_path, damage):
    store = CheckpointStore(str(tmp_path / "ck"))
    key = store.key_for("exp", 0, 1)
    checksum = store.save(key, {"w": list(range(1000))})
    path = store.path(key)
    if damage == "truncate":
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
    elif damage == "flip":
        data = bytearray(open(path, "rb").read())
        data[-10] ^= 0xFF
        open(path, "wb").write(bytes(data))
    else:
        os.remove(path)
    with pytest.raises(CorruptCheckpoint, match=os.path.basename(path)):
        store.load(key, checksum)


def test_memory_filesystem_and_delete(tmp_path):
    store = CheckpointStore("memory://poptrain-test-ck")
    key = store.key_for("e", 1, 2)
    checksum = store.save(key, [1, 2, 3])
    assert store.load(key, checksum) == [1, 2, 3]
    store.delete(key)
    store.delete(key)  # deleting twice is fine
    assert not store.exists(key)


def test_default_location_is_beside_the_sqlite_file(tmp_path):
    assert default_checkpoints(f"sqlite:///{tmp_path}/runs/x.db", "e") == f"{tmp_path}/runs/x.checkpoints"


def test_a_shared_store_without_checkpoints_is_refused_unless_one_host_or_the_environment(tmp_path, monkeypatch):
    import poptrain
    from poptrain.errors import SpecError
    from trainables import Quadratic

    monkeypatch.delenv("POPTRAIN_CHECKPOINTS", raising=False)
    monkeypatch.chdir(tmp_path)
    url = "postgresql+psycopg://pbt:secret@dbhost/pbt"  # never connected to: the spec is refused before

    def spec(**kw):
        return poptrain.Experiment(name="e", trainable=Quadratic, space={"lr": poptrain.LogUniform(0.01, 0.3)},
                                   storage=url, **kw)

    with pytest.raises(SpecError) as refused:
        spec()
    line = str(refused.value)
    assert "\n" not in line and "secret" not in line and "dbhost" in line
    assert 'checkpoints = "s3://' in line and "POPTRAIN_CHECKPOINTS" in line and 'checkpoints = "local"' in line
    assert not (tmp_path / "poptrain-checkpoints").exists()
    one_host = spec(checkpoints="local")  # the user's word that the store and every worker share this host
    assert one_host.checkpoints == one_host.to_spec()["checkpoints"] == str(tmp_path / "poptrain-checkpoints")
    shared = spec(checkpoints="s3://bucket/e")
    assert shared.baseline().checkpoints == "s3://bucket/e"  # the baseline keeps the place every host reaches
    monkeypatch.setenv("POPTRAIN_CHECKPOINTS", "s3://bucket/from-env")
    assert spec().checkpoints == "s3://bucket/from-env"
    assert spec(checkpoints="local").checkpoints == str(tmp_path / "poptrain-checkpoints")  # the spec's word wins
    assert shared.checkpoints == "s3://bucket/e"


def test_unknown_protocol_is_a_storage_error():
    with pytest.raises(StorageError, match="nosuchfs"):
        CheckpointStore("nosuchfs://bucket/x")
