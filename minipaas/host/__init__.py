"""This host's own setup: `minipaas init` and the instance's systemd units (or cron job)."""
