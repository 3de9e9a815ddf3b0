"""Names and values as a logger takes them: safe folder and key names, numbers only as scalars, escaped text."""

from __future__ import annotations

import html
import math
import os
import posixpath
import re
from typing import Any, Callable

from ..errors import PoptrainError


def safe_name(text: str) -> str:
    """A folder or key name made of letters, digits, '_', '-' and '.' only (store data never picks a path)."""
    return re.sub(r"[^\w.-]", "_", text).strip(".") or "_"


def mlflow_name(text: str) -> str:
    """A name MLflow takes after a prefix such as `metric.`: letters, digits, _ - . space, and / that names no path."""
    name = re.sub(r"[^\w.\- /]", "_", text) or "_"
    if posixpath.normpath("k." + name) != "k." + name:  # 'a/../b', 'x/', 'a//b' resolve to another name
        name = name.replace("/", "_")
    return name


class UniqueNames:
    """Reported names mapped to names a logger takes, one each: a name that cleans to a taken one gets a suffix."""

    def __init__(self, clean: Callable[[str], str], limit: int) -> None:
        self._clean, self._limit = clean, limit
        self._logged: dict[str, str] = {}
        self._taken: set[str] = set()

    def __call__(self, original: str) -> str:
        """The logged name of `original`: the same every call, never another original's."""
        name = self._logged.get(original)
        if name is None:
            base = self._clean(original)[:self._limit]
            name, n = self._clean(base), 1
            while name in self._taken:
                n += 1
                name = self._clean(f"{base[:self._limit - len(str(n)) - 1]}-{n}")
            self._logged[original] = name
            self._taken.add(name)
        return name

    def renamed(self) -> dict[str, str]:
        """Each logged name that differs from its reported one, and the reported one."""
        return {name: original for original, name in self._logged.items() if name != original}


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
