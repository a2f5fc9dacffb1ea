"""Sources, destinations and the routes between them; secrets sealed at rest, masked out."""

from __future__ import annotations

import datetime
import json
import secrets
import uuid
from typing import Any

from gethookd import crypto, queue, ssrf, verify
from gethookd.errors import Invalid, NotFound
from gethookd.services.base import Service


def open_verification_config(box: crypto.SecretBox, row: dict) -> dict:
    """A source's decrypted verification_config ({} when it has none)."""
    enc = row.get("verification_config_enc")
    if not enc:
        return {}
    return json.loads(box.decrypt(enc, crypto.aad("sources.verification_config", row["id"])))


class Catalog(Service):
    # -- sources -------------------------------------------------------------------------

    def create_source(
        self,
        account_id: uuid.UUID,
        name: str,
        auth_mode: str = "none",
        provider: str | None = None,
        verification_config: dict | None = None,
    ) -> dict:
        """The config is checked for the scheme that will verify this source's webhooks."""
        try:
            verification_config = verify.check_config(auth_mode, provider, verification_config)
        except verify.ConfigError as exc:
            raise Invalid(str(exc)) from None
        source_id = uuid.uuid4()  # known before the insert: the sealed config is bound to it
        enc = None
        if verification_config:
            enc = self.box.encrypt(
                json.dumps(verification_config),
                crypto.aad("sources.verification_config", source_id),
            )
        with self.db.transaction() as cur:
            source = cur.one(
                "insert_source",
                {
                    "id": source_id,
                    "account_id": account_id,
                    "name": name,
                    "path_token": secrets.token_urlsafe(18),
                    "auth_mode": auth_mode,
                    "provider": provider,
                    "verification_config_enc": enc,
                },
            )
            cur.run("notify_catalog")  # API processes may have cached this token as unknown
        return self.source_view(source)

    def list_sources(self, account_id: uuid.UUID) -> list[dict]:
        with self.db.transaction() as cur:
            rows = cur.all("list_sources", {"account_id": account_id})
        return [self.source_view(s) for s in rows]

    def get_source(self, account_id: uuid.UUID, source_id: uuid.UUID) -> dict:
        with self.db.transaction() as cur:
            source = cur.one("get_source", {"id": source_id, "account_id": account_id})
        if source is None:
            raise NotFound(f"source {source_id} not found")
        return self.source_view(source)

    def delete_source(self, account_id: uuid.UUID, source_id: uuid.UUID) -> None:
        with self.db.transaction() as cur:
            if cur.one("delete_source", {"id": source_id, "account_id": account_id}) is None:
                raise NotFound(f"source {source_id} not found")
            cur.run("notify_catalog")  # its ingest URL stops at once in every API process

    def source_view(self, row: dict) -> dict:
        config = open_verification_config(self.box, row)
        row.pop("verification_config_enc", None)
        if config:
            shown = verify.shown_fields(row["auth_mode"], row["provider"])
            row["verification_config"] = {
                k: str(v) if k in shown else crypto.mask(str(v)) for k, v in config.items()
            }
        row["ingest_url"] = f"{self.config.BASE_URL}/ingest/{row['path_token']}"
        return row

    # -- destinations --------------------------------------------------------------------

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
        """The signing secret is shown in full here and on rotation, never again."""
        self.check_url(url)
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
                    "signing_secret_enc": self._seal_secret(dest_id, secret),
                    "auth_config_enc": self._seal_auth(dest_id, auth_config),
                    "custom_headers": custom_headers,
                    "preset": preset,
                },
            )
        return {**self.destination_view(row), "signing_secret": secret}

    def list_destinations(self, account_id: uuid.UUID) -> list[dict]:
        with self.db.transaction() as cur:
            rows = cur.all("list_destinations", {"account_id": account_id})
        return [self.destination_view(r) for r in rows]

    def get_destination(self, account_id: uuid.UUID, dest_id: uuid.UUID) -> dict:
        with self.db.transaction() as cur:
            row = cur.one("get_destination", {"id": dest_id, "account_id": account_id})
        if row is None:
            raise NotFound(f"destination {dest_id} not found")
        return self.destination_view(row)

    def update_destination(self, account_id: uuid.UUID, dest_id: uuid.UUID, changes: dict) -> dict:
        """PATCH: only the fields present change; auth_config/custom_headers may be cleared."""
        if changes.get("url") is not None:
            self.check_url(changes["url"])
        params: dict[str, Any] = {"id": dest_id, "account_id": account_id}
        for name in ("name", "url", "timeout_seconds", "active", "custom_headers"):
            params[name] = changes.get(name)
            params[f"set_{name}"] = name in changes
        params["set_auth_config"] = "auth_config" in changes
        params["auth_config_enc"] = self._seal_auth(dest_id, changes.get("auth_config"))
        with self.db.transaction() as cur:
            row = cur.one("update_destination", params)
            if row is not None and "active" in changes:
                # Paused: the delivery processes move its waiting deliveries out of the
                # claim's path; resumed (which also re-enables a disabled destination and
                # closes its circuit): they release its held deliveries. Both in the
                # background, in chunks, keeping the deliveries' times.
                if row["active"]:
                    queue.resume_destination(cur)
                else:
                    queue.hold_destination(cur, dest_id)
        if row is None:
            raise NotFound(f"destination {dest_id} not found")
        return self.destination_view(row)

    def rotate_secret(
        self, account_id: uuid.UUID, dest_id: uuid.UUID, secret: str | None = None
    ) -> dict:
        """The new secret signs from now on; the one it replaces keeps signing too (a second
        signature) for SECRET_ROTATION_GRACE, so receivers can switch without a gap."""
        secret = secret or crypto.new_signing_secret()
        grace = self.config.SECRET_ROTATION_GRACE
        with self.db.transaction() as cur:
            current = cur.one("lock_destination_secret", {"id": dest_id, "account_id": account_id})
            if current is None:
                raise NotFound(f"destination {dest_id} not found")
            previous_enc = None
            if current["signing_secret_enc"]:
                previous = self.box.decrypt(
                    current["signing_secret_enc"],
                    crypto.aad("destinations.signing_secret", dest_id),
                )
                previous_enc = self.box.encrypt(
                    previous, crypto.aad("destinations.previous_signing_secret", dest_id)
                )
            row = cur.one(
                "set_destination_secret",
                {
                    "id": dest_id,
                    "account_id": account_id,
                    "enc": self._seal_secret(dest_id, secret),
                    "previous_enc": previous_enc,
                    "grace_seconds": grace if previous_enc else 0.0,
                },
            )
        return {
            "destination_id": row["id"],
            "signing_secret": secret,
            "previous_secret_expires_at": row["previous_secret_expires_at"],
        }

    def check_url(self, url: str) -> None:
        """The SSRF policy at create/update: a 400 naming the address and what it is."""
        try:
            ssrf.Policy.from_config(self.config).check_url(url)
        except ssrf.Refused as exc:
            raise Invalid(f"url {exc}") from None

    def delete_destination(self, account_id: uuid.UUID, dest_id: uuid.UUID) -> None:
        with self.db.transaction() as cur:
            if cur.one("delete_destination", {"id": dest_id, "account_id": account_id}) is None:
                raise NotFound(f"destination {dest_id} not found")
            cur.run("notify_catalog")  # its routes went with it

    def _seal_secret(self, dest_id: uuid.UUID, secret: str) -> str:
        return self.box.encrypt(secret, crypto.aad("destinations.signing_secret", dest_id))

    def _seal_auth(self, dest_id: uuid.UUID, auth_config: dict | None) -> str | None:
        if not auth_config:
            return None
        return self.box.encrypt(
            json.dumps(auth_config), crypto.aad("destinations.auth_config", dest_id)
        )

    def destination_view(self, row: dict) -> dict:
        secret_enc = row.pop("signing_secret_enc", None)
        row.pop("previous_signing_secret_enc", None)
        expires = row.get("previous_secret_expires_at")
        if expires is not None and expires <= datetime.datetime.now(datetime.UTC):
            row["previous_secret_expires_at"] = None  # the overlap is over
        auth_enc = row.pop("auth_config_enc", None)
        row.pop("updated_at", None)
        row.pop("circuit_probe_id", None)  # internal bookkeeping of the circuit
        row.pop("circuit_opens", None)
        row.pop("holding_since", None)  # the background hold's bookkeeping
        row.pop("holding_after", None)
        if secret_enc:
            secret = self.box.decrypt(
                secret_enc, crypto.aad("destinations.signing_secret", row["id"])
            )
            row["signing_secret"] = crypto.mask(secret)
        if auth_enc:
            auth = json.loads(
                self.box.decrypt(auth_enc, crypto.aad("destinations.auth_config", row["id"]))
            )
            row["auth_config"] = {
                k: (v if k in ("type", "header", "username") else crypto.mask(str(v)))
                for k, v in auth.items()
            }
        return row

    # -- routes --------------------------------------------------------------------------

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
            cur.run("notify_catalog")
        return route_view(row)

    def list_routes(self, account_id: uuid.UUID) -> list[dict]:
        with self.db.transaction() as cur:
            return [route_view(r) for r in cur.all("list_routes", {"account_id": account_id})]

    def update_route(self, account_id: uuid.UUID, route_id: uuid.UUID, changes: dict) -> dict:
        policy = changes.get("retry_policy") or {}
        params = {
            "id": route_id,
            "account_id": account_id,
            "set_active": "active" in changes,
            "active": changes.get("active"),
            "set_pattern": "event_type_pattern" in changes,
            "event_type_pattern": changes.get("event_type_pattern"),
            "max_attempts": policy.get("max_attempts"),
            "backoff": policy.get("backoff"),
        }
        with self.db.transaction() as cur:
            row = cur.one("update_route", params)
            cur.run("notify_catalog")
        if row is None:
            raise NotFound(f"route {route_id} not found")
        return route_view(row)

    def delete_route(self, account_id: uuid.UUID, route_id: uuid.UUID) -> None:
        with self.db.transaction() as cur:
            if cur.one("delete_route", {"id": route_id, "account_id": account_id}) is None:
                raise NotFound(f"route {route_id} not found")
            cur.run("notify_catalog")


def route_view(row: dict) -> dict:
    row["retry_policy"] = {"max_attempts": row.pop("max_attempts"), "backoff": row.pop("backoff")}
    return row
