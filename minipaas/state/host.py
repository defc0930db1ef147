"""The host minipaas runs on: its settings and its state database, opened once per process."""

from __future__ import annotations

import functools
import sqlite3
from dataclasses import dataclass, field

from minipaas.errors import MinipaasError
from minipaas.state import settings as settings_mod
from minipaas.state import store
from minipaas.state.settings import Settings


@dataclass
class Host:
    settings: Settings
    _db: sqlite3.Connection | None = field(default=None, repr=False)

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            if not self.settings.home.is_dir():
                raise MinipaasError(
                    f"{self.settings.home} does not exist: run `minipaas init` (or install.sh) first"
                )
            self._db = store.connect(self.settings.db_path, wait=self.settings.db_wait)
        return self._db


@functools.cache
def current() -> Host:
    return Host(settings_mod.load())
