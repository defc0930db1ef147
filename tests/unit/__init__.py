"""Fast tier: pure logic, renderers as text, access rules; nginx, git and SQLite at most, never the Docker engine."""
