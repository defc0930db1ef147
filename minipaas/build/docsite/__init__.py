"""Markdown docs sites: a repository of `.md` files rendered to a folder nginx serves."""
