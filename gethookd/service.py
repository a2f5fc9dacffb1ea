"""What the gateway does, independent of HTTP: accounts, catalog, ingest, events.

The API and the CLI call this; it calls the store (named SQL) and crypto.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import secrets
import uuid
from typing import Any

import psycopg2.errors

from gethookd import crypto
from gethookd.config import Config
from gethookd.db import Cursor, Database
from gethookd.errors import Conflict, NotFound, TooLarge, Unauthorized

# Headers that name the event type, by provider; first match wins.
_EVENT_TYPE_HEADERS = (
    "x-event-type",
    "x-github-event",
    "x-shopify-topic",
    "x-gitlab-event",
    "x-gethook-event-type",
)
# Request headers never stored with an event (hop-by-hop or our own credentials).
_DROP_HEADERS = {"authorization", "cookie", "connection", "transfer-encoding", "content-length"}


class Gateway:
    def __init__(self, config: Config, database: Database) -> None:
        self.config = config
        self.db = database
        self.box = crypto.SecretBox(config.ENCRYPTION_KEY)

    # -- accounts and keys -------------------------------------------------------------

    def register(self, name: str, email: str | None, password: str | None) -> dict:
        password_hash = crypto.hash_password(password) if password else None
        try:
            with self.db.transaction() as cur:
                account = cur.one(
                    "insert_account",
                    {"name": name, "email": email, "password_hash": password_hash},
                )
                key = self._new_key(cur, account["id"], "default")
        except psycopg2.errors.UniqueViolation:
            raise Conflict(
                f"an account with email {email} already exists; log in instead"
            ) from None
        return {"account": account, "api_key": key}

    def login(self, email: str, password: str) -> dict:
        with self.db.transaction() as cur:
            account = cur.one("account_by_email", {"email": email})
            if account is None or not crypto.check_password(password, account.pop("password_hash")):
                raise Unauthorized("wrong email or password")
            key = self._new_key(cur, account["id"], "login")
        return {"account": account, "api_key": key}

    def authenticate(self, api_key: str) -> uuid.UUID:
        """Checked against the database on every request, so a revocation is immediate."""
        with self.db.transaction() as cur:
            row = cur.one("authenticate", {"key_hash": crypto.hash_api_key(api_key)})
        if row is None:
            raise Unauthorized("invalid or revoked API key")
        return row["account_id"]

    def create_api_key(self, account_id: uuid.UUID, name: str) -> dict:
        with self.db.transaction() as cur:
            return self._new_key(cur, account_id, name)

    def list_api_keys(self, account_id: uuid.UUID) -> list[dict]:
        with self.db.transaction() as cur:
            return cur.all("list_api_keys", {"account_id": account_id})

    def revoke_api_key(self, account_id: uuid.UUID, key_id: uuid.UUID) -> None:
        with self.db.transaction() as cur:
            if cur.one("revoke_api_key", {"id": key_id, "account_id": account_id}) is None:
                raise NotFound(f"API key {key_id} not found")

    def _new_key(self, cur: Cursor, account_id: uuid.UUID, name: str) -> dict:
        key = crypto.new_api_key()
        row = cur.one(
            "insert_api_key",
            {
                "account_id": account_id,
                "name": name,
                "key_prefix": key[:11],
                "key_hash": crypto.hash_api_key(key),
            },
        )
        return {**row, "key": key}

    # -- sources, destinations, routes ---------------------------------------------------

    def create_source(
        self,
        account_id: uuid.UUID,
        name: str,
        auth_mode: str = "none",
        provider: str | None = None,
        verification_config: dict | None = None,
    ) -> dict:
        with self.db.transaction() as cur:
            source = cur.one(
                "insert_source",
                {
                    "account_id": account_id,
                    "name": name,
                    "path_token": secrets.token_urlsafe(18),
                    "auth_mode": auth_mode,
                    "provider": provider,
                },
            )
            if verification_config:
                enc = self.box.encrypt(
                    json.dumps(verification_config), f"sources.verification_config:{source['id']}"
                )
                source = cur.one("set_source_verification", {"id": source["id"], "enc": enc})
        return self._source_view(source)

    def list_sources(self, account_id: uuid.UUID) -> list[dict]:
        with self.db.transaction() as cur:
            return [
                self._source_view(s) for s in cur.all("list_sources", {"account_id": account_id})
            ]

    def get_source(self, account_id: uuid.UUID, source_id: uuid.UUID) -> dict:
        with self.db.transaction() as cur:
            source = cur.one("get_source", {"id": source_id, "account_id": account_id})
        if source is None:
            raise NotFound(f"source {source_id} not found")
        return self._source_view(source)

    def _source_view(self, row: dict) -> dict:
        enc = row.pop("verification_config_enc", None)
        if enc:
            config = json.loads(self.box.decrypt(enc, f"sources.verification_config:{row['id']}"))
            row["verification_config"] = {k: crypto.mask(str(v)) for k, v in config.items()}
        row["ingest_url"] = f"{self.config.BASE_URL}/ingest/{row['path_token']}"
        return row

    def create_destination(
        self,
        account_id: uuid.UUID,
        name: str,
        url: str,
        timeout_seconds: int = 30,
        signing_secret: str | None = None,
        auth_config: dict | None = None,
        custom_headers: dict | None = None,
        preset: str | None = None,
    ) -> dict:
        dest_id = uuid.uuid4()
        secret = signing_secret or crypto.new_signing_secret()
        with self.db.transaction() as cur:
            row = cur.one(
                "insert_destination",
                {
                    "id": dest_id,
                    "account_id": account_id,
                    "name": name,
                    "url": url,
                    "timeout_seconds": timeout_seconds,
                    "signing_secret_enc": self.box.encrypt(
                        secret, f"destinations.signing_secret:{dest_id}"
                    ),
                    "auth_config_enc": self.box.encrypt(
                        json.dumps(auth_config), f"destinations.auth_config:{dest_id}"
                    )
                    if auth_config
                    else None,
                    "custom_headers": custom_headers,
                    "preset": preset,
                },
            )
        view = self._destination_view(row)
        view["signing_secret"] = secret  # shown in full once, on creation
        return view

    def list_destinations(self, account_id: uuid.UUID) -> list[dict]:
        with self.db.transaction() as cur:
            rows = cur.all("list_destinations", {"account_id": account_id})
        return [self._destination_view(r) for r in rows]

    def get_destination(self, account_id: uuid.UUID, dest_id: uuid.UUID) -> dict:
        with self.db.transaction() as cur:
            row = cur.one("get_destination", {"id": dest_id, "account_id": account_id})
        if row is None:
            raise NotFound(f"destination {dest_id} not found")
        return self._destination_view(row)

    def _destination_view(self, row: dict) -> dict:
        secret_enc = row.pop("signing_secret_enc", None)
        auth_enc = row.pop("auth_config_enc", None)
        row.pop("updated_at", None)
        if secret_enc:
            secret = self.box.decrypt(secret_enc, f"destinations.signing_secret:{row['id']}")
            row["signing_secret"] = crypto.mask(secret)
        if auth_enc:
            auth = json.loads(self.box.decrypt(auth_enc, f"destinations.auth_config:{row['id']}"))
            row["auth_config"] = {
                k: (v if k in ("type", "header") else crypto.mask(str(v))) for k, v in auth.items()
            }
        return row

    def create_route(
        self,
        account_id: uuid.UUID,
        destination_id: uuid.UUID,
        source_id: uuid.UUID | None = None,
        event_type_pattern: str | None = None,
        max_attempts: int | None = None,
        backoff: str = "exponential",
    ) -> dict:
        with self.db.transaction() as cur:
            if cur.one("get_destination", {"id": destination_id, "account_id": account_id}) is None:
                raise NotFound(f"destination {destination_id} not found")
            if source_id is not None and (
                cur.one("get_source", {"id": source_id, "account_id": account_id}) is None
            ):
                raise NotFound(f"source {source_id} not found")
            row = cur.one(
                "insert_route",
                {
                    "account_id": account_id,
                    "source_id": source_id,
                    "destination_id": destination_id,
                    "event_type_pattern": event_type_pattern,
                    "max_attempts": max_attempts or self.config.DEFAULT_MAX_ATTEMPTS,
                    "backoff": backoff,
                },
            )
        return route_view(row)

    def list_routes(self, account_id: uuid.UUID) -> list[dict]:
        with self.db.transaction() as cur:
            return [route_view(r) for r in cur.all("list_routes", {"account_id": account_id})]

    # -- ingest and events ---------------------------------------------------------------

    def ingest(self, token: str, body: bytes, headers: dict[str, str]) -> dict:
        """Store the event and queue its deliveries in one transaction, committed before 202."""
        if len(body) > self.config.MAX_INGEST_BYTES:
            raise TooLarge(
                f"webhook body exceeds MAX_INGEST_BYTES ({self.config.MAX_INGEST_BYTES})"
            )
        lower = {k.lower(): v for k, v in headers.items()}
        with self.db.transaction() as cur:
            source = cur.one("source_by_token", {"token": token})
            if source is None or source["status"] != "active":
                raise NotFound("no active source has this ingest URL; check the path token")
            event_type = _event_type(lower, body)
            routes = cur.all("routes_for_source", {"source_id": source["id"]})
            return self._store_event(
                cur,
                account_id=source["account_id"],
                direction="inbound",
                source_id=source["id"],
                event_type=event_type,
                external_event_id=None,
                headers={k: v for k, v in lower.items() if k not in _DROP_HEADERS},
                body=body,
                content_type=lower.get("content-type"),
                routes=routes,
                created_by=f"source:{source['id']}",
            )

    def _store_event(self, cur: Cursor, *, routes: list[dict], **event: Any) -> dict:
        targets: dict[Any, dict] = {}
        for route in routes:
            if not _matches(route["event_type_pattern"], event["event_type"]):
                continue
            dest = route["destination_id"]
            best = targets.get(dest)
            if best is None or route["max_attempts"] > best["max_attempts"]:
                targets[dest] = route
        row = cur.one(
            "insert_event",
            {
                **event,
                "status": "queued" if targets else "accepted",
                "payload_hash": "sha256:" + hashlib.sha256(event["body"]).hexdigest(),
                "replay_of": event.get("replay_of"),
            },
        )
        for dest, route in targets.items():
            cur.run(
                "insert_delivery",
                {
                    "event_id": row["id"],
                    "destination_id": dest,
                    "account_id": event["account_id"],
                    "max_attempts": route["max_attempts"],
                    "backoff": route["backoff"],
                },
            )
        if targets:
            cur.run("notify_deliveries")
        return row

    def list_events(
        self,
        account_id: uuid.UUID,
        limit: int,
        offset: int,
        source_id: uuid.UUID | None = None,
        status: str | None = None,
        direction: str | None = None,
    ) -> dict:
        params = {
            "account_id": account_id,
            "limit": limit,
            "offset": offset,
            "source_id": source_id,
            "status": status,
            "direction": direction,
        }
        with self.db.transaction() as cur:
            items = cur.all("list_events", params)
            total = cur.one("count_events", params)["total"]
        return {"items": [event_view(e) for e in items], "total": total}

    def get_event(self, account_id: uuid.UUID, event_id: uuid.UUID) -> dict:
        with self.db.transaction() as cur:
            event = cur.one("get_event", {"id": event_id, "account_id": account_id})
            if event is None:
                raise NotFound(f"event {event_id} not found")
            attempts = cur.all("list_attempts", {"event_id": event_id})
        return {"event": event_view(event), "attempts": attempts}

    def ready(self) -> bool:
        try:
            with self.db.transaction() as cur:
                cur.raw.execute("SELECT 1")
            return True
        except psycopg2.Error:
            return False


def _matches(pattern: str | None, event_type: str | None) -> bool:
    if not pattern or pattern == "*":
        return True
    return event_type is not None and fnmatch.fnmatchcase(event_type, pattern)


def _event_type(headers: dict[str, str], body: bytes) -> str | None:
    for name in _EVENT_TYPE_HEADERS:
        if headers.get(name):
            return headers[name][:200]
    if body[:1] == b"{" and "json" in headers.get("content-type", ""):
        try:
            value = json.loads(body).get("type")
        except (ValueError, AttributeError):
            return None
        if isinstance(value, str):
            return value[:200]
    return None


def route_view(row: dict) -> dict:
    row["retry_policy"] = {"max_attempts": row.pop("max_attempts"), "backoff": row.pop("backoff")}
    return row


def event_view(row: dict) -> dict:
    row["body"] = bytes(row["body"]).decode("utf-8", errors="replace")
    row.pop("content_type", None)
    row["replay_of"] = row.get("replay_of")
    return row
