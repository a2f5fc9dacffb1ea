"""The gateway's services behind one object, as the API and the CLI receive them."""

from __future__ import annotations

from gethookd.services.accounts import Accounts
from gethookd.services.catalog import Catalog
from gethookd.services.events import Events


class Gateway(Accounts, Catalog, Events):
    """Accounts, catalog and events share one config, database and secret box."""
