"""Errors poptrain raises for a user's mistake: each names the thing and the fix."""


class PoptrainError(Exception):
    """A user-facing error: the CLI prints its message as one line and exits non-zero."""


class SpecError(PoptrainError, ValueError):
    """The experiment's spec (space, strategy, field) is invalid."""


class StorageError(PoptrainError):
    """The storage URL cannot be opened, or the experiment is missing from it."""


class CorruptCheckpoint(PoptrainError):
    """A checkpoint's bytes do not match the checksum recorded when it was written."""


class UnsafeCheckpoint(PoptrainError):
    """A checkpoint written with pickle, which the user has not allowed to load (POPTRAIN_ALLOW_PICKLE)."""


class UnsupportedState(PoptrainError, TypeError):
    """A state_dict() holds a value that a checkpoint cannot carry without pickle."""
