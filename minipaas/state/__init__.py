"""The state layer: the SQLite store, host settings, app settings and config, locks, file modes, names."""
