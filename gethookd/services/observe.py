"""What the gateway reports about itself: the database's side of /metrics."""

from __future__ import annotations

from gethookd.services.base import Service

STATES = ("active", "paused", "circuit_open", "disabled")


class Observe(Service):
    def metrics_snapshot(self) -> dict:
        """Queue depth, the oldest due delivery and destinations by state, read now.

        Counting is bounded by the partial indexes on waiting deliveries, so a scrape costs
        the size of the backlog, not of the history.
        """
        with self.db.transaction() as cur:
            queue = cur.one("status_queue")
            states = {row["state"]: row["count"] for row in cur.all("metrics_destinations")}
        return {**queue, "destinations": {state: states.get(state, 0) for state in STATES}}
