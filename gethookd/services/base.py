"""State every service shares: configuration, database, and the box for secrets at rest."""

from __future__ import annotations

from gethookd import crypto
from gethookd.config import Config
from gethookd.db import Database


class Service:
    def __init__(self, config: Config, database: Database) -> None:
        self.config = config
        self.db = database
        self.box = crypto.SecretBox(config.ENCRYPTION_KEY, config.ENCRYPTION_KEY_PREVIOUS)
