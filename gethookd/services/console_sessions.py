"""Console sessions: sign-in (password or API key), the cookie's session, CSRF and sign-out.

The cookie value is 256 random bits; only its SHA-256 is stored, as for API keys. The CSRF
token is an HMAC of the cookie value, so it is never stored and a database dump yields
neither. Failed sign-ins are counted in the database, per email and per client address, so
the limit holds across every API process.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets

from gethookd import crypto
from gethookd.errors import RateLimited, Unauthorized
from gethookd.services.base import Service

SESSION_COOKIE = "gethookd_session"
SIGNIN_WINDOW_SECONDS = 15 * 60
SIGNIN_MAX_FAILURES = 10
_CSRF_LABEL = b"gethookd console csrf"


def csrf_token(session_token: str) -> str:
    """The CSRF token that goes with a session (derived, never stored)."""
    return hmac.new(session_token.encode(), _CSRF_LABEL, hashlib.sha256).hexdigest()


def csrf_matches(session_token: str, given: str | None) -> bool:
    """In constant time; as bytes, since a header may hold any latin-1 character."""
    if not given:
        return False
    return hmac.compare_digest(csrf_token(session_token).encode(), given.encode())


class ConsoleSessions(Service):
    def sign_in(
        self,
        address: str,
        *,
        email: str | None = None,
        password: str | None = None,
        api_key: str | None = None,
    ) -> tuple[str, dict]:
        """A new session for the account these credentials prove: (cookie value, session).

        Refused with RateLimited before the credentials are even checked once the email or
        the address has SIGNIN_MAX_FAILURES failures within SIGNIN_WINDOW_SECONDS.
        """
        email = email.strip().lower() if email is not None else None
        self._check_rate(email, address)
        try:
            with self.db.transaction() as cur:
                if api_key is not None:
                    row = cur.one("authenticate", {"key_hash": crypto.hash_api_key(api_key)})
                    if row is None:
                        raise Unauthorized("invalid or revoked API key")
                    account_id = row["account_id"]
                else:
                    account_id = self.check_login(cur, email or "", password or "")["id"]
                token = secrets.token_urlsafe(32)
                created = cur.one(
                    "console_insert_session",
                    {
                        "token_hash": crypto.hash_api_key(token),
                        "account_id": account_id,
                        "ttl": self.config.CONSOLE_SESSION_TTL,
                    },
                )
                account = cur.one("console_account", {"account_id": account_id})
                cur.run("console_delete_expired_sessions")
        except Unauthorized:
            with self.db.transaction() as cur:
                cur.run("console_record_failure", {"email": email, "address": address})
                cur.run("console_delete_old_failures", {"window": SIGNIN_WINDOW_SECONDS})
            raise
        return token, _view(account, token, created["expires_at"])

    def _check_rate(self, email: str | None, address: str) -> None:
        with self.db.transaction() as cur:
            seen = cur.one(
                "console_recent_failures",
                {
                    "email": email,
                    "address": address,
                    "window": SIGNIN_WINDOW_SECONDS,
                    "limit": SIGNIN_MAX_FAILURES,
                },
            )
        waits = []
        if email is not None and seen["by_email"] >= SIGNIN_MAX_FAILURES:
            waits.append(seen["email_clears_in"])
        if seen["by_address"] >= SIGNIN_MAX_FAILURES:
            waits.append(seen["address_clears_in"])
        if waits:
            retry_after = max(1, math.ceil(max(w or 0 for w in waits)))
            raise RateLimited(
                f"too many failed sign-ins; try again in {retry_after} seconds", retry_after
            )

    def console_session(self, token: str) -> dict:
        """The live session this cookie value names, with its CSRF token; else Unauthorized."""
        with self.db.transaction() as cur:
            row = cur.one("console_session", {"token_hash": crypto.hash_api_key(token)})
        if row is None:
            raise Unauthorized("the console session has expired or was signed out; sign in")
        account = {"id": row["account_id"], "name": row["account_name"]}
        return _view(account, token, row["expires_at"])

    def sign_out(self, token: str) -> None:
        """Deletes the session row: the cookie is useless from now on, wherever it is kept."""
        with self.db.transaction() as cur:
            cur.run("console_delete_session", {"token_hash": crypto.hash_api_key(token)})


def _view(account: dict, token: str, expires_at: object) -> dict:
    return {
        "account": {"id": account["id"], "name": account["name"]},
        "csrf_token": csrf_token(token),
        "expires_at": expires_at,
    }
