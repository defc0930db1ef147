"""The addons apps link, Postgres and Redis: their containers, roles, backups and links."""
