"""Test suites for code written outside poptrain: a store passes `StoreSuite`, a strategy `StrategySuite` (need pytest).

`StrategySuite` also needs hypothesis, so it is imported on first use: a store's tests do not need it.
"""

from typing import Any

import pytest

# Rewrite the suites' asserts so that a failure shows the values compared, as in the user's own tests.
pytest.register_assert_rewrite("poptrain.testing.store_suite", "poptrain.testing.strategy_suite")

from .store_suite import StoreSuite  # noqa: E402

__all__ = ["StoreSuite", "StrategySuite"]


def __getattr__(name: str) -> Any:
    """StrategySuite, imported on first use (it needs hypothesis)."""
    if name == "StrategySuite":
        from .strategy_suite import StrategySuite

        return StrategySuite
    raise AttributeError(f"module 'poptrain.testing' has no attribute {name!r}")
