"""Member checkpoints on any fsspec file system: atomic writes, verified by checksum on load.

A checkpoint holds data only (see `stateformat`): loading one runs no code. Files written with
pickle (by earlier versions, or for states that need it) load only when the user opts in, by
`allow_pickle=True` or the environment variable POPTRAIN_ALLOW_PICKLE=1; never because of
anything a store holds. Keys come from the store, so every key is checked to name a file inside
the checkpoint root before anything is read or deleted.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import pickle
import posixpath
import re
import uuid
from typing import Any

import fsspec

from ..errors import CorruptCheckpoint, StorageError, UnsafeCheckpoint, UnsupportedState
from ..records import ACTIVE
from ..redact import scrub, shown
from . import stateformat

MAGIC = b"POPTRAIN-CKPT-2\n"  # stateformat: data only
PICKLE_MAGIC = b"POPTRAIN-CKPT-1\n"  # pickle: loads only with the user's opt-in
ALLOW_PICKLE = "POPTRAIN_ALLOW_PICKLE"
PART = re.compile(r"[A-Za-z0-9_.-]{1,255}")
log = logging.getLogger("poptrain")


def pickle_allowed(allow_pickle: bool | None = None) -> bool:
    """The user's choice: the keyword when given, else the environment variable POPTRAIN_ALLOW_PICKLE."""
    if allow_pickle is not None:
        return bool(allow_pickle)
    return os.environ.get(ALLOW_PICKLE, "").strip().lower() in ("1", "true", "yes")


def check_key(key: str) -> str:
    """The file part of a key (`EXPERIMENT/FILE.ckpt`, optionally `#member=I`); ValueError for anything else."""
    file, _, member = key.partition("#member=") if isinstance(key, str) else ("", "", "")
    parts = file.split("/")
    if (len(parts) != 2 or not all(PART.fullmatch(p) and p.strip(".") for p in parts)
            or not parts[1].endswith(".ckpt") or (member and not member.isdigit())):
        raise ValueError(f"checkpoint key {key!r} is not EXPERIMENT/FILE.ckpt inside the checkpoint root")
    return file


def _write_failure(what: str, exc: OSError) -> StorageError:
    """One line naming the file and the fix, for a checkpoint that cannot be written."""
    if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
        fix = "free space there, or point `checkpoints` (--checkpoints) at a disk with room"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "make that folder writable, or point `checkpoints` (--checkpoints) at one you can write"
    else:
        fix = "check that folder, or point `checkpoints` (--checkpoints) at another"
    return StorageError(f"cannot write {what}: {exc.strerror or exc}; {fix}")


class CheckpointStore:
    """Saves and loads member states under one folder URL (file://, memory://, s3://, ...).

    `allow_pickle` (default: the environment variable POPTRAIN_ALLOW_PICKLE) lets this process
    load pickle checkpoints and write states that need pickle: only for stores you trust.
    """

    def __init__(self, url: str, allow_pickle: bool | None = None) -> None:
        self.url = url.rstrip("/")
        self.allow_pickle = allow_pickle
        try:
            self.fs, self.root = fsspec.core.url_to_fs(self.url)
        except (ImportError, ValueError) as exc:
            raise StorageError(f"cannot open checkpoint storage {shown(url)!r}: {scrub(str(exc))}") from None
        self.root = self.root.rstrip("/") or "/"
        local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))
        self.real_root = os.path.realpath(self.root) if local else None
        try:
            self.fs.makedirs(self.root, exist_ok=True)
        except OSError as exc:
            raise _write_failure(f"checkpoints in {self.root}", exc) from None

    def check_writable(self) -> None:
        """Write and remove a small file in the root, so that a folder no worker can write fails up front."""
        probe = f"{self.root.rstrip('/')}/.poptrain-probe-{uuid.uuid4().hex}"
        try:
            with self.fs.open(probe, "wb") as f:
                f.write(b"poptrain")
        except OSError as exc:
            self._remove(probe)
            raise _write_failure(f"checkpoints in {self.root}", exc) from None
        self._remove(probe)

    def key_for(self, experiment: str, member: int, step: int) -> str:
        """A fresh, never reused key for a member's checkpoint."""
        return f"{experiment}/m{member:05d}-s{step:06d}-{uuid.uuid4().hex[:12]}.ckpt"

    def path(self, key: str) -> str:
        """The file a key names; ValueError unless it lies inside the checkpoint root."""
        path = f"{self.root.rstrip('/')}/{check_key(key)}"
        if not self._inside(path):
            raise ValueError(f"checkpoint key {key!r} leads outside the checkpoint root {self.root}")
        return path

    def _inside(self, path: str) -> bool:
        """Whether `path` is under the root, lexically and (on a local disk) after resolving links."""
        root = self.root.rstrip("/")
        if not posixpath.normpath(path).startswith(root + "/"):
            return False
        if self.real_root is not None:
            return os.path.realpath(path).startswith(self.real_root.rstrip(os.sep) + os.sep)
        return True

    def encode(self, state: Any) -> tuple[bytes, bytes]:
        """The file's format marker and payload: data only, or pickle if the state needs it and the user allows it."""
        try:
            return MAGIC, stateformat.encode(state)
        except UnsupportedState:
            if not pickle_allowed(self.allow_pickle):
                raise
            return PICKLE_MAGIC, pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)

    def save(self, key: str, state: Any) -> str:
        """Write `state` under `key` (temporary name, then rename) and return its sha256."""
        magic, payload = self.encode(state)
        checksum = hashlib.sha256(payload).hexdigest()
        final = self.path(key)
        temporary = f"{final}.tmp-{uuid.uuid4().hex}"
        try:
            self.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
            with self.fs.open(temporary, "wb") as f:
                f.write(magic + checksum.encode() + b"\n")
                f.write(payload)
            self.fs.mv(temporary, final)
        except OSError as exc:
            self._remove(temporary)
            raise _write_failure(f"checkpoint {final}", exc) from None
        except BaseException:
            self._remove(temporary)
            raise
        return checksum

    def _remove(self, path: str) -> None:
        try:
            self.fs.rm(path)
        except (OSError, ValueError):  # never written, or the file system refuses even that
            pass

    def load(self, key: str, checksum: str, allow_pickle: bool | None = None) -> Any:
        """Read a checkpoint; CorruptCheckpoint if it is missing, truncated or altered.

        A key `FILE#member=I` names member I's part of a population checkpoint (one file for a
        whole batched population): the file is verified whole, then that member's slice returned.
        `allow_pickle` overrides the store's setting for this call.
        """
        try:
            self.path(key)
        except ValueError as exc:
            raise CorruptCheckpoint(str(exc)) from None
        key, _, member = key.partition("#member=")
        state = self._load(key, checksum, self.allow_pickle if allow_pickle is None else allow_pickle)
        return member_part(state, int(member)) if member else state

    def _load(self, key: str, checksum: str, allow_pickle: bool | None) -> Any:
        path = self.path(key)
        try:
            with self.fs.open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise CorruptCheckpoint(f"checkpoint {path} is missing") from None
        tail = checksum.encode() + b"\n"
        magic = data[:len(MAGIC)]
        payload = data[len(MAGIC) + len(tail):]
        if (magic not in (MAGIC, PICKLE_MAGIC) or data[len(MAGIC):len(MAGIC) + len(tail)] != tail
                or hashlib.sha256(payload).hexdigest() != checksum):
            raise CorruptCheckpoint(f"checkpoint {path} does not match its checksum (truncated or altered)")
        if magic == PICKLE_MAGIC:
            if not pickle_allowed(allow_pickle):
                raise _pickled(path)
            return pickle.loads(payload)
        try:
            return stateformat.decode(payload)
        except stateformat.BadState as exc:
            raise CorruptCheckpoint(f"checkpoint {path} is not a valid checkpoint ({exc})") from None

    def pickled(self, key: str) -> bool:
        """Whether the file a key names was written with pickle (its format marker says so)."""
        try:
            with self.fs.open(self.path(key.partition("#member=")[0]), "rb") as f:
                return f.read(len(PICKLE_MAGIC)) == PICKLE_MAGIC
        except (OSError, ValueError):  # missing or not ours: loading it will say so
            return False

    def delete(self, key: str) -> None:
        """Remove a checkpoint file; a missing one is not an error, a key outside the root deletes nothing."""
        try:
            path = self.path(key.partition("#member=")[0])
        except ValueError as exc:
            log.warning("not deleting checkpoint: %s", exc)
            return
        try:
            self.fs.rm(path)
        except FileNotFoundError:
            pass

    def exists(self, key: str) -> bool:
        try:
            return bool(self.fs.exists(self.path(key)))
        except ValueError:
            return False


def _pickled(path: str) -> UnsafeCheckpoint:
    return UnsafeCheckpoint(
        f"checkpoint {path} was written with pickle (by an older poptrain, or for a state that needs it), and "
        f"unpickling can run any code: if you trust this store, set {ALLOW_PICKLE}=1 (or pass allow_pickle=True) "
        f"to load it")


def refuse_pickled(store: Any, name: str, url: str, sample: int = 16) -> None:
    """Stop a resume whose members would each fail on a pickle checkpoint the user has not allowed.

    Without the opt-in, a store of an earlier poptrain (every checkpoint pickled) would otherwise
    mark every member failed one by one; the newest checkpoints of the first `sample` active
    members tell such a store apart.
    """
    if pickle_allowed():
        return
    files = CheckpointStore(url)
    for member in [m for m in store.members(name) if m.status == ACTIVE][:sample]:
        newest = store.checkpoints(name, member.id)[:1]
        if newest and files.pickled(newest[0].key):
            raise _pickled(files.path(newest[0].key.partition("#member=")[0]))


SHARDS = "poptrain.shards"  # a sharded population's state: the shards' sizes, in order, beside their "states"


def member_part(state: Any, member: int, size: int | None = None) -> Any:
    """One member's slice of a population state: leaves with one entry per member are indexed at
    `member`; other leaves (counters, shared settings) are kept whole. A sharded population's
    state is first narrowed to the shard holding the member."""
    if isinstance(state, dict) and SHARDS in state:
        for shard_size, part in zip(state[SHARDS], state["states"]):
            if member < shard_size:
                return member_part(part, member)
            member -= shard_size
        raise CorruptCheckpoint(f"a sharded population checkpoint has no member {member}")
    if isinstance(state, dict):
        size = state.get("size", size)
        return {k: member_part(v, member, size) for k, v in state.items() if k != "size"}
    sized = getattr(state, "shape", None)
    length = sized[0] if sized else (len(state) if isinstance(state, (list, tuple)) else None)
    return state[member] if length is not None and length == size else state
