"""Tensors in checkpoints: plain CPU tensors as raw bytes (dtype and shape in the header), others through torch's
weights-only archive, files of the earlier layout still read, and a malformed raw entry refused as corrupt."""

from __future__ import annotations

import hashlib
import io
import json

import pytest
import torch

from poptrain.errors import CorruptCheckpoint
from poptrain.store import CheckpointStore
from poptrain.store import stateformat
from poptrain.store.checkpoints import MAGIC

PLAIN = {"float32": torch.randn(3, 4), "scalar": torch.tensor(2.5, dtype=torch.float64), "empty": torch.zeros(0, 5),
         "strided": torch.randn(4, 6)[:, ::2], "bfloat16": torch.randn(7).to(torch.bfloat16),
         "float16": torch.randn(2, 2).half(), "bool": torch.tensor([True, False, True]),
         "complex": torch.randn(3, dtype=torch.complex64), "int64": torch.arange(-3, 3),
         "uint8": torch.arange(250, 256, dtype=torch.uint8), "int8": torch.tensor([-128, 127], dtype=torch.int8),
         "expanded": torch.tensor([1.5]).expand(4), "expanded-one": torch.tensor(2.0).expand(1),
         "expanded-rows": torch.randn(1, 3).expand(2, 3), "transposed": torch.randn(3, 5).t(),
         "one-of-a-column": torch.randn(4, 5)[:1, 2]}  # one element whose stride is the row's length


def header(payload: bytes) -> dict:
    size = int.from_bytes(payload[:stateformat.SIZE], "big")
    return json.loads(payload[stateformat.SIZE:stateformat.SIZE + size])


def test_plain_tensors_are_raw_and_round_trip_exactly():
    payload = stateformat.encode(PLAIN)
    written = header(payload)
    assert written["tensors"] is None and len(written["raw"]) == len(PLAIN)  # no torch archive at all
    loaded = stateformat.decode(payload)
    for name, tensor in PLAIN.items():
        assert loaded[name].dtype == tensor.dtype and loaded[name].shape == tensor.shape, name
        assert torch.equal(loaded[name], tensor), name
        assert loaded[name].is_contiguous()


def test_a_loaded_tensor_owns_its_memory():
    payload = stateformat.encode({"w": torch.ones(4)})
    first = stateformat.decode(payload)["w"]
    first += 1  # writable, and writing it changes neither the bytes nor a second load
    assert torch.equal(stateformat.decode(payload)["w"], torch.ones(4))
    assert first.untyped_storage().nbytes() == 16  # its own storage, not the whole file's


def test_other_tensors_keep_what_raw_bytes_would_lose():
    state = {"param": torch.nn.Parameter(torch.randn(3)), "grad": torch.randn(2, requires_grad=True),
             "plain": torch.randn(2)}
    payload = stateformat.encode(state)
    written = header(payload)
    assert written["tensors"] is not None and len(written["raw"]) == 1
    loaded = stateformat.decode(payload)
    assert type(loaded["param"]) is torch.nn.Parameter and loaded["grad"].requires_grad
    assert all(torch.equal(loaded[k].detach(), state[k].detach()) for k in state)


def test_files_of_the_earlier_layout_still_load(tmp_path):
    """Before raw sections, every tensor went into torch's archive: such a checkpoint loads unchanged."""
    tensors = [torch.randn(3, 3), torch.arange(4)]
    archive = io.BytesIO()
    torch.save(tensors, archive)
    section = archive.getvalue()
    head = json.dumps({"tree": {"dict": [["w", {"tensor": 0}], ["steps", {"tensor": 1}], ["lr", 0.1]]},
                       "tensors": [0, len(section)], "arrays": []}).encode()
    payload = len(head).to_bytes(stateformat.SIZE, "big") + head + section
    checksum = hashlib.sha256(payload).hexdigest()
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "old.ckpt").write_bytes(MAGIC + checksum.encode() + b"\n" + payload)
    loaded = CheckpointStore(str(tmp_path)).load("e/old.ckpt", checksum)
    assert torch.equal(loaded["w"], tensors[0]) and torch.equal(loaded["steps"], tensors[1]) and loaded["lr"] == 0.1


@pytest.mark.parametrize("entry", [["object", [2], 0, 8], ["float32", [3], 0, 8], ["float32", [-2], 0, 8],
                                   ["float32", [2], 4, 8], ["float32", "2", 0, 8], ["__class__", [2], 0, 8]],
                         ids=["unknown-dtype", "size-mismatch", "negative-shape", "outside-file", "shape-not-list",
                              "attribute-name"])
def test_a_malformed_raw_entry_is_a_corrupt_checkpoint(tmp_path, entry):
    body = bytes(8)
    head = json.dumps({"tree": {"raw": 0}, "tensors": None, "arrays": [], "raw": [entry]}).encode()
    payload = len(head).to_bytes(stateformat.SIZE, "big") + head + body
    checksum = hashlib.sha256(payload).hexdigest()
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "bad.ckpt").write_bytes(MAGIC + checksum.encode() + b"\n" + payload)
    with pytest.raises(CorruptCheckpoint, match="not a valid checkpoint"):
        CheckpointStore(str(tmp_path)).load("e/bad.ckpt", checksum)
