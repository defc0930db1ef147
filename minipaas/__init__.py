"""minipaas: a small git-push platform-as-a-service for one host (Docker + nginx + SQLite)."""

__version__ = "0.1.0"
