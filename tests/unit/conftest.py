"""Fixtures of the fast tier's own: `home`, a dashboard home in SQLite (tests/helpers/dashboard.py), which the
dashboard's test modules ask for by name."""

from tests.helpers.dashboard import home  # noqa: F401 (the fixture, found by name)
