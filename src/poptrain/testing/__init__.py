"""Test suites for code written outside poptrain: a store passes `StoreSuite` (needs pytest)."""

import pytest

# Rewrite the suites' asserts so that a failure shows the values compared, as in the user's own tests.
pytest.register_assert_rewrite("poptrain.testing.store_suite")

from .store_suite import StoreSuite  # noqa: E402

__all__ = ["StoreSuite"]
