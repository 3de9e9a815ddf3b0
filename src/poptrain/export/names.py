"""Names and values as a logger takes them: safe folder and key names, numbers only as scalars, escaped text."""

from __future__ import annotations

import html
import math
import os
import re
from typing import Any

from ..errors import PoptrainError


def safe_name(text: str) -> str:
    """A folder or key name made of letters, digits, '_', '-' and '.' only (store data never picks a path)."""
    return re.sub(r"[^\w.-]", "_", text).strip(".") or "_"


def number(value: Any) -> float | None:
    """The value as a float if it is a finite number (bools and text are not scalars), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def markdown_text(text: str) -> str:
    """Store data shown as plain text in a Markdown viewer: HTML escaped, Markdown punctuation backslashed."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|~])", r"\\\1", html.escape(text))


def exploit_line(source: int, source_step: int, old: dict[str, Any], new: dict[str, Any]) -> str:
    """One line saying whom a member copied and how its hyperparameters changed."""
    changes = ", ".join(f"{k} {old.get(k)!r} -> {v!r}" for k, v in new.items())
    return f"copied member {source} (at its step {source_step}); {changes}"


def writable_folder(path: str, what: str) -> str:
    """The folder as an absolute path, created if missing; one line naming it if it cannot be written."""
    full = os.path.abspath(os.path.expanduser(path))
    try:
        os.makedirs(full, exist_ok=True)
    except OSError as exc:
        raise PoptrainError(f"cannot write {what} to {path}: {exc.strerror or exc}; pick a folder you can "
                            f"write to") from None
    if not os.access(full, os.W_OK | os.X_OK):
        raise PoptrainError(f"cannot write {what} to {path}: the folder is not writable; pick a folder you can "
                            f"write to")
    return full
