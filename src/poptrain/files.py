"""Output files the user names (a report, a replay spec): checked before the work, written in one go.

A path that cannot be written is the user's mistake, told in one line that names the path and the
fix; nothing is opened for writing until there is something to write, so a failure truncates nothing.
"""

from __future__ import annotations

import os

from .errors import PoptrainError


def check_output_file(path: str, what: str) -> None:
    """Refuse, before any work, an output path that is a folder or lies in a folder that does not exist."""
    full = os.path.abspath(os.path.expanduser(path))
    if os.path.isdir(full):
        raise PoptrainError(f"cannot write {what} to {path}: it is a folder; name a file in it, "
                            f"e.g. {os.path.join(path, 'out.html' if 'report' in what else 'out.toml')}")
    folder = os.path.dirname(full)
    if not os.path.isdir(folder):
        raise PoptrainError(f"cannot write {what} to {path}: folder {folder} does not exist; create it "
                            f"(mkdir -p {folder}) or pick another path")


def write_output(path: str, content: str, what: str) -> None:
    """Write `content` to `path`; an OS error (read-only folder, full disk) becomes one line naming the path."""
    check_output_file(path, what)
    try:
        with open(os.path.expanduser(path), "w", encoding="utf-8") as f:
            f.write(content)
    except OSError as exc:
        raise PoptrainError(f"cannot write {what} to {path}: {exc.strerror or exc}; pick a path you can write "
                            f"to") from None
