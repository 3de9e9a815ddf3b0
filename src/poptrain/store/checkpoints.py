"""Member checkpoints on any fsspec file system: atomic writes, verified by checksum on load."""

from __future__ import annotations

import hashlib
import io
import pickle
import uuid
from typing import Any

import fsspec

from ..errors import CorruptCheckpoint, StorageError

MAGIC = b"POPTRAIN-CKPT-1\n"


class CheckpointStore:
    """Saves and loads member states under one folder URL (file://, memory://, s3://, ...)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        try:
            self.fs, self.root = fsspec.core.url_to_fs(self.url)
        except (ImportError, ValueError) as exc:
            raise StorageError(f"cannot open checkpoint storage {url!r}: {exc}") from None
        self.fs.makedirs(self.root, exist_ok=True)

    def key_for(self, experiment: str, member: int, step: int) -> str:
        """A fresh, never reused key for a member's checkpoint."""
        return f"{experiment}/m{member:05d}-s{step:06d}-{uuid.uuid4().hex[:12]}.ckpt"

    def path(self, key: str) -> str:
        return f"{self.root}/{key}"

    def save(self, key: str, state: Any) -> str:
        """Write `state` under `key` (temporary name, then rename) and return its sha256."""
        payload = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        checksum = hashlib.sha256(payload).hexdigest()
        final = self.path(key)
        self.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
        temporary = f"{final}.tmp-{uuid.uuid4().hex}"
        with self.fs.open(temporary, "wb") as f:
            f.write(MAGIC + checksum.encode() + b"\n" + payload)
        self.fs.mv(temporary, final)
        return checksum

    def load(self, key: str, checksum: str) -> Any:
        """Read a checkpoint; CorruptCheckpoint if it is missing, truncated or altered.

        A key `FILE#member=I` names member I's part of a population checkpoint (one file for a
        whole batched population): the file is verified whole, then that member's slice returned.
        """
        key, _, member = key.partition("#member=")
        state = self._load(key, checksum)
        return member_part(state, int(member)) if member else state

    def _load(self, key: str, checksum: str) -> Any:
        path = self.path(key)
        try:
            with self.fs.open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise CorruptCheckpoint(f"checkpoint {path} is missing") from None
        header = MAGIC + checksum.encode() + b"\n"
        payload = data[len(header):]
        if not data.startswith(header) or hashlib.sha256(payload).hexdigest() != checksum:
            raise CorruptCheckpoint(f"checkpoint {path} does not match its checksum (truncated or altered)")
        return pickle.load(io.BytesIO(payload))

    def delete(self, key: str) -> None:
        """Remove a checkpoint file; a missing one is not an error."""
        try:
            self.fs.rm(self.path(key.partition("#member=")[0]))
        except FileNotFoundError:
            pass

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self.path(key)))


def member_part(state: Any, member: int, size: int | None = None) -> Any:
    """One member's slice of a population state: leaves with one entry per member are indexed at
    `member`; other leaves (counters, shared settings) are kept whole."""
    if isinstance(state, dict):
        size = state.get("size", size)
        return {k: member_part(v, member, size) for k, v in state.items() if k != "size"}
    sized = getattr(state, "shape", None)
    length = sized[0] if sized else (len(state) if isinstance(state, (list, tuple)) else None)
    return state[member] if length is not None and length == size else state
