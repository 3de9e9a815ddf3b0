"""Experiment specs as TOML files: reading and writing the format `poptrain run SPEC.toml` reads."""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any

from .errors import SpecError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The TOML file as a table; SpecError naming the path if it is missing or malformed."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise SpecError(f"spec file {os.fspath(path)} does not exist") from None
    except IsADirectoryError:
        raise SpecError(f"spec file {os.fspath(path)} is a directory, not a TOML file") from None
    except OSError as exc:
        raise SpecError(f"cannot read spec file {os.fspath(path)}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:  # its message carries the line and column
        raise SpecError(f"{os.fspath(path)} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"{os.fspath(path)} is not a UTF-8 text file: {exc}") from None
    except RecursionError:  # the TOML parser recurses once per level of nesting
        raise SpecError(f"{os.fspath(path)} nests its values too deeply to read: a spec nests at most "
                        f"{MAX_NESTING} levels") from None
    if not isinstance(data, dict):
        raise SpecError(f"{os.fspath(path)} must hold a TOML table of experiment fields")
    check_nesting(data, os.fspath(path))
    return data


MAX_NESTING = 16  # lists and tables inside one another: a real spec needs four or five


def check_nesting(data: Any, where: str) -> None:
    """Refuse, in one line, a spec whose lists and tables nest deeper than MAX_NESTING (walked without recursion)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_NESTING:
            raise SpecError(f"{where} nests lists and tables more than {MAX_NESTING} levels deep: flatten it")
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


def spec_paths(data: dict[str, Any], folder: str, path: str) -> list[str]:
    """The import search paths: the TOML's folder first, then its `paths` (relative ones from that folder)."""
    listed = data.get("paths", [])
    if not isinstance(listed, list) or not all(isinstance(p, str) for p in listed):
        raise SpecError(f"{path}: paths must be a list of folder names, not {listed!r}")
    paths = [folder] + [os.path.normpath(os.path.join(folder, p)) for p in listed]
    return list(dict.fromkeys(paths))


def _toml_value(value: Any) -> str:
    """One TOML value: strings, numbers, booleans, lists and inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # TOML basic strings take JSON's escapes
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None) + "}"
    raise SpecError(f"cannot write {value!r} to TOML")


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key, ensure_ascii=False)


def dump_spec(spec: dict[str, Any]) -> str:
    """A spec as TOML that `load_spec` reads back (None fields are left out; no exploit is "none")."""
    lines, tables = [], []
    for key, value in spec.items():
        if key == "exploit" and value is None:
            lines.append('exploit = "none"')
        elif value is None:
            continue
        elif key == "schedule":
            for entry in value:
                tables.append(f"\n[[schedule]]\nstep = {entry['step']}\nhparams = {_toml_value(entry['hparams'])}")
        elif isinstance(value, dict):
            body = "\n".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None)
            tables.append(f"\n[{key}]\n{body}")
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n" + "\n".join(tables) + "\n"
