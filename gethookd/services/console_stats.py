"""The console's figures per destination and per source over the last hours."""

from __future__ import annotations

import uuid

from gethookd.services.base import Service


class ConsoleStats(Service):
    def destination_stats(self, account_id: uuid.UUID, hours: int) -> list[dict]:
        """Success rate, latency and last error of each destination (None where no attempt)."""
        with self.db.transaction() as cur:
            rows = cur.all("console_destination_stats", {"account_id": account_id, "hours": hours})
        return [_destination(row) for row in rows]

    def source_stats(self, account_id: uuid.UUID, hours: int) -> list[dict]:
        with self.db.transaction() as cur:
            return cur.all("console_source_stats", {"account_id": account_id, "hours": hours})


def _destination(row: dict) -> dict:
    attempts = row["attempts"]
    error = None
    if row["error_at"] is not None:
        error = {
            "at": row["error_at"],
            "status_code": row["error_status_code"],
            "message": row["error_message"],
        }
    return {
        "destination_id": row["destination_id"],
        "attempts": attempts,
        "succeeded": row["succeeded"],
        "failed": row["failed"],
        "success_rate_pct": round(100.0 * row["succeeded"] / attempts, 2) if attempts else None,
        "latency_p50_ms": row["latency_p50_ms"],
        "latency_p95_ms": row["latency_p95_ms"],
        "last_error": error,
    }
