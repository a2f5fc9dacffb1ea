"""The gateway's services behind one object, as the API and the CLI receive them."""

from __future__ import annotations

from gethookd.services.accounts import Accounts
from gethookd.services.catalog import Catalog
from gethookd.services.console_sessions import ConsoleSessions
from gethookd.services.console_stats import ConsoleStats
from gethookd.services.events import Events
from gethookd.services.observe import Observe


class Gateway(Accounts, Catalog, ConsoleSessions, ConsoleStats, Events, Observe):
    """Accounts, catalog, events and self-observation share one config, database and secret box."""
