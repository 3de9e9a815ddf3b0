"""A file system or database that refuses a write, said as one line naming the place and the fix.

The CLI turns these into `error:` lines instead of tracebacks: a read-only folder, a full disk,
or a SQLite database that cannot be written are the user's to fix, not poptrain's bugs.
"""

from __future__ import annotations

import errno
import os

FULL = (errno.ENOSPC, errno.EDQUOT)
DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)
# what SQLite says when it cannot write, and what the user does about it
SQLITE = {
    "database or disk is full": "free space on its disk, or move the store (--storage) to a disk with room",
    "attempt to write a readonly database": "make the database file and its folder writable, or use another "
                                            "--storage",
    "unable to open database file": "check that its folder exists and is writable, or use another --storage",
    "disk i/o error": "check the disk it is on, or use another --storage",
}


def os_failure(exc: OSError) -> str | None:
    """One line for an OSError on a named file (None for other OSErrors)."""
    path = exc.filename
    if path is None:
        return None
    folder = os.path.dirname(os.path.abspath(str(path)))
    if exc.errno in FULL:
        fix = f"free space on the disk of {folder}, or choose a location on another disk"
    elif exc.errno in DENIED:
        fix = f"make {folder} writable, or choose a location you can write"
    else:
        fix = "check that path, or choose another location"
    return f"cannot use {path}: {exc.strerror or exc}; {fix}"


def database_failure(exc: BaseException, storage: str | None) -> str | None:
    """One line for SQLite refusing a write (None for other database errors)."""
    try:
        from sqlalchemy.exc import OperationalError
    except ImportError:  # pragma: no cover - SQLAlchemy is a dependency
        return None
    if not isinstance(exc, OperationalError):
        return None
    said = str(exc.orig).strip().lower()
    for message, fix in SQLITE.items():
        if said.startswith(message):
            return f"the store {storage or ''} cannot be written: {message}; {fix}, then run again"
    return None


def describe(exc: BaseException, storage: str | None = None) -> str | None:
    """The one-line explanation of a write the system refused, or None if `exc` is something else."""
    if isinstance(exc, OSError):
        return os_failure(exc)
    return database_failure(exc, storage)
