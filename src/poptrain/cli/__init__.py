"""The `poptrain` command: run, create, worker, status, best, resume, report, dashboard, replay and export.

Each command is a thin layer over the library's API: `parser` holds the flags, `commands` the
commands, `show` what they print, `options` what the flags carry.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Sequence

from ..errors import PoptrainError
from ..failures import describe as describe_failure
from ..redact import scrub, shown

from .options import Target, engine_options
from .parser import parser
from .show import one_line

__all__ = ["engine_options", "main", "parser"]


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time, one line per record."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass

    def format(self, record: logging.LogRecord) -> str:
        return scrub(" | ".join(line for line in super().format(record).splitlines() if line.strip()))


_handler = StderrHandler()
_handler.setFormatter(logging.Formatter("poptrain: %(levelname)s: %(message)s"))


def setup_logging(quiet: bool) -> None:
    """Warnings of the `poptrain` logger on stderr, one line each; with --quiet, errors only."""
    log = logging.getLogger("poptrain")
    if _handler not in log.handlers:
        log.addHandler(_handler)
    level = logging.ERROR if quiet else logging.WARNING
    log.setLevel(level)
    _handler.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for a user's mistake, 130 on Ctrl-C)."""
    args = parser().parse_args(argv)
    setup_logging(args.quiet)
    target = Target(getattr(args, "storage", None), getattr(args, "experiment", None))
    try:
        args.func(args, target)
    except PoptrainError as exc:
        print(f"error: {one_line(scrub(str(exc)))}", file=sys.stderr)
        return 2
    except Exception as exc:  # a read-only folder or a full disk is the user's to fix: one line, not a traceback
        message = describe_failure(exc, shown(target.storage))
        if message is None:
            raise
        print(f"error: {one_line(scrub(message))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if target.storage and target.name:
            print(f"interrupted: continue with `poptrain resume --storage {shown(target.storage)} "
                  f"--experiment {target.name}`", file=sys.stderr)
        else:
            print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
