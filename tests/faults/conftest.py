"""The fault suite's summary line, printed after the session (also with -q)."""

from __future__ import annotations

import pytest

from faults.tally import summary


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print what the fault tests survived: real counts gathered while they ran."""
    line = summary()
    if line:
        terminalreporter.write_line(line)
