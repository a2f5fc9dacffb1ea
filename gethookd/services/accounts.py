"""Accounts, API keys, logins, branding and custom domains."""

from __future__ import annotations

import secrets
import uuid

import psycopg2.errors

from gethookd import crypto
from gethookd.db import Cursor
from gethookd.errors import Conflict, NotFound, Unauthorized
from gethookd.services.base import Service


class Accounts(Service):
    def register(self, name: str, email: str | None, password: str | None) -> dict:
        """A new account and its first API key (shown once)."""
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
                f"an account with email {email} already exists; log in with POST "
                "/v1/auth/login (email and password) to get a new API key"
            ) from None
        return {"account": account, "api_key": key}

    def login(self, email: str, password: str) -> dict:
        with self.db.transaction() as cur:
            account = self.check_login(cur, email, password)
            key = self._new_key(cur, account["id"], "login")
        return {"account": account, "api_key": key}

    def check_login(self, cur: Cursor, email: str, password: str) -> dict:
        """The account whose email and password these are (the API login and the console's)."""
        account = cur.one("account_by_email", {"email": email})
        stored = account.pop("password_hash") if account else None
        if account is None or not crypto.check_password(password, stored):
            raise Unauthorized("wrong email or password")
        return account

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

    # -- branding ------------------------------------------------------------------------

    def brand_settings(self, account_id: uuid.UUID) -> dict:
        with self.db.transaction() as cur:
            row = cur.one("get_brand_settings", {"account_id": account_id})
            return row or cur.one("ensure_brand_settings", {"account_id": account_id})

    def update_brand_settings(self, account_id: uuid.UUID, changes: dict) -> dict:
        """Only the fields present in `changes` change; None clears a field."""
        fields = ("company_name", "logo_url", "primary_color", "support_email", "docs_title")
        params: dict = {"account_id": account_id}
        for name in fields:
            params[name] = changes.get(name)
            params[f"set_{name}"] = name in changes
        with self.db.transaction() as cur:
            return cur.one("update_brand_settings", params)

    def create_custom_domain(self, account_id: uuid.UUID, domain: str, kind: str) -> dict:
        try:
            with self.db.transaction() as cur:
                return cur.one(
                    "insert_custom_domain",
                    {
                        "account_id": account_id,
                        "domain": domain,
                        "type": kind,
                        "verification_token": "gethookd-verify-" + secrets.token_hex(16),
                    },
                )
        except psycopg2.errors.UniqueViolation:
            raise Conflict(f"domain {domain} is already registered") from None

    def list_custom_domains(self, account_id: uuid.UUID) -> list[dict]:
        with self.db.transaction() as cur:
            return cur.all("list_custom_domains", {"account_id": account_id})
