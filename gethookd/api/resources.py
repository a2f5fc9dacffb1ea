"""Falcon resources: check the request, call the gateway, wrap the answer in the envelope."""

from __future__ import annotations

import dataclasses
import hmac
import re
from importlib import resources

import falcon

from gethookd import crypto, presets
from gethookd.api import openapi
from gethookd.api import validate as v
from gethookd.errors import Invalid, RateLimited, Unauthorized
from gethookd.service import Gateway
from gethookd.services.console_sessions import SESSION_COOKIE
from gethookd.services.event_filter import FILTER_FIELDS, EventFilter
from gethookd.services.replay import Replays
from gethookd.services.replay import public as replay_public
from gethookd.verify.base import PUBLIC_URL
from gethookd.vocabulary import (
    BACKOFFS,
    DOMAIN_TYPE_ALIASES,
    DOMAIN_TYPES,
    SOURCE_AUTH_MODES,
)

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_COLOR = re.compile(r"^#[0-9A-Fa-f]{6}$")
_DOMAIN = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)


def ok(resp: falcon.Response, data: object, status: str = falcon.HTTP_200) -> None:
    resp.media = {"data": data}
    resp.status = status


def email(body: dict, name: str, *, required: bool = False) -> str | None:
    value = v.string(body, name, required=required, max_len=254)
    if value is not None and not _EMAIL.fullmatch(value):
        raise Invalid(f"{name} must be an email address")
    return value


class Base:
    auth = True

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway


# -- health -------------------------------------------------------------------------------


class Health(Base):
    auth = False

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        ok(resp, {"status": "ok"})


class Ready(Base):
    auth = False

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self.gw.ready():
            ok(resp, {"status": "ready"})
        else:
            resp.media = {"error": "database unavailable"}
            resp.status = falcon.HTTP_503


class Metrics(Base):
    """Prometheus text format, every process added up; optionally behind METRICS_TOKEN."""

    auth = False

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        token = self.gw.config.METRICS_TOKEN
        if token:
            scheme, _, given = (req.get_header("Authorization") or "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), token):
                raise falcon.HTTPUnauthorized(
                    description="/metrics needs Authorization: Bearer <METRICS_TOKEN>"
                )
        from gethookd import metrics

        body, content_type = metrics.render(self.gw.metrics_snapshot())
        resp.data = body
        resp.content_type = content_type


class OpenApi(Base):
    auth = False

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = openapi.document(self.gw.config.BASE_URL)


class Docs(Base):
    auth = False
    PAGE = resources.files("gethookd.api").joinpath("docs.html").read_bytes()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if req.env.get("PATH_INFO", "").endswith("/"):
            # The page loads "openapi.json" relative to itself: from /docs/ that would be
            # /docs/openapi.json. Relative, so a path prefix added by a proxy survives.
            raise falcon.HTTPMovedPermanently("../docs")
        resp.content_type = falcon.MEDIA_HTML
        resp.data = self.PAGE


# -- accounts and keys --------------------------------------------------------------------


SIGNUP_CLOSED = (
    "sign-up is closed on this gateway (SIGNUP=closed); an operator creates accounts "
    "with `gethookd accounts create`"
)


def _signup_open(gw: Gateway, resp: falcon.Response) -> bool:
    """Whether anyone may create an account over HTTP; if not, the 403 is already set."""
    if gw.config.SIGNUP == "open":
        return True
    resp.status = falcon.HTTP_403
    resp.media = {"error": SIGNUP_CLOSED}
    return False


class Register(Base):
    auth = False

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        if not _signup_open(self.gw, resp):
            return
        body = v.json_body(req)
        address = email(body, "email", required=True)
        password = v.string(body, "password", required=True, max_len=1024, strip=False)
        if len(password) < 8:
            raise Invalid("password must be at least 8 characters")
        name = v.string(body, "name") or address.split("@")[0]
        ok(resp, self.gw.register(name, address, password), falcon.HTTP_201)


class Login(Base):
    auth = False

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = v.json_body(req)
        address = v.string(body, "email", required=True, max_len=254)
        password = v.string(body, "password", required=True, max_len=1024, strip=False)
        ok(resp, self.gw.login(address, password))


class Accounts(Base):
    auth = False

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        if not _signup_open(self.gw, resp):
            return
        body = v.json_body(req)
        name = v.string(body, "name", required=True)
        ok(resp, self.gw.register(name, None, None), falcon.HTTP_201)


class ApiKeys(Base):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        ok(resp, self.gw.list_api_keys(req.context.account_id))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = v.json_body(req, optional=True)
        name = v.string(body, "name") or "api key"
        ok(resp, self.gw.create_api_key(req.context.account_id, name), falcon.HTTP_201)


class ApiKey(Base):
    def on_delete(self, req: falcon.Request, resp: falcon.Response, key_id: str) -> None:
        self.gw.revoke_api_key(req.context.account_id, v.uuid_value(key_id, "id"))
        resp.status = falcon.HTTP_204


# -- presets ------------------------------------------------------------------------------


class ProviderPresets(Base):
    auth = False  # public catalogue: GetHook's SDKs send no key for it

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        ok(resp, list(presets.PROVIDER_PRESETS))


class DestinationPresets(Base):
    auth = False  # public catalogue: GetHook's SDKs send no key for it

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        ok(resp, list(presets.DESTINATION_PRESETS))


# -- sources ------------------------------------------------------------------------------


class Sources(Base):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        ok(resp, self.gw.list_sources(req.context.account_id))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = v.json_body(req)
        source = self.gw.create_source(
            req.context.account_id,
            name=v.string(body, "name", required=True),
            auth_mode=v.choice(body, "auth_mode", SOURCE_AUTH_MODES) or "none",
            provider=v.string(body, "provider", max_len=64),
            # Strings, or a number for tolerance_seconds; the service checks each per scheme.
            verification_config=v.obj(body, "verification_config", values=object),
        )
        ok(resp, source, falcon.HTTP_201)


class Source(Base):
    def on_get(self, req: falcon.Request, resp: falcon.Response, source_id: str) -> None:
        ok(resp, self.gw.get_source(req.context.account_id, v.uuid_value(source_id, "id")))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, source_id: str) -> None:
        self.gw.delete_source(req.context.account_id, v.uuid_value(source_id, "id"))
        resp.status = falcon.HTTP_204


# -- destinations -------------------------------------------------------------------------


def _signing_secret(body: dict, name: str = "signing_secret") -> str | None:
    secret = v.string(body, name, max_len=512, strip=False)
    if secret is not None and len(secret) < 16:
        raise Invalid(f"{name} must be at least 16 characters")
    if secret is not None and secret.startswith("whsec_"):
        try:
            crypto.signing_key(secret)
        except ValueError:
            raise Invalid(f"{name}: after whsec_ must come base64") from None
    return secret


class Destinations(Base):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        ok(resp, self.gw.list_destinations(req.context.account_id))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = v.json_body(req)
        dest = self.gw.create_destination(
            req.context.account_id,
            name=v.string(body, "name", required=True),
            url=v.http_url(body, "url", required=True),
            timeout_seconds=v.integer(body, "timeout_seconds", low=1, high=300) or 30,
            signing_secret=_signing_secret(body),
            auth_config=v.auth_config(body),
            custom_headers=v.headers_obj(body, "custom_headers"),
            preset=v.string(body, "preset", max_len=64),
        )
        ok(resp, dest, falcon.HTTP_201)


class Destination(Base):
    PATCHABLE = ("name", "url", "timeout_seconds", "active", "auth_config", "custom_headers")

    def on_get(self, req: falcon.Request, resp: falcon.Response, dest_id: str) -> None:
        ok(resp, self.gw.get_destination(req.context.account_id, v.uuid_value(dest_id, "id")))

    def on_patch(self, req: falcon.Request, resp: falcon.Response, dest_id: str) -> None:
        dest = v.uuid_value(dest_id, "id")
        body = v.json_body(req)
        v.reject_unknown(body, self.PATCHABLE)
        changes: dict = {}
        if "name" in body:
            changes["name"] = v.string(body, "name", required=True)
        if "url" in body:
            changes["url"] = v.http_url(body, "url", required=True)
        if "timeout_seconds" in body:
            changes["timeout_seconds"] = v.integer(body, "timeout_seconds", low=1, high=300)
            if changes["timeout_seconds"] is None:
                raise Invalid("timeout_seconds must be a whole number between 1 and 300")
        if "active" in body:
            changes["active"] = v.boolean(body, "active")
            if changes["active"] is None:
                raise Invalid("active must be true or false")
        if "auth_config" in body:
            changes["auth_config"] = v.auth_config(body)
        if "custom_headers" in body:
            changes["custom_headers"] = v.headers_obj(body, "custom_headers")
        ok(resp, self.gw.update_destination(req.context.account_id, dest, changes))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, dest_id: str) -> None:
        self.gw.delete_destination(req.context.account_id, v.uuid_value(dest_id, "id"))
        resp.status = falcon.HTTP_204


class RotateSecret(Base):
    def on_post(self, req: falcon.Request, resp: falcon.Response, dest_id: str) -> None:
        dest = v.uuid_value(dest_id, "id")
        body = v.json_body(req, optional=True)
        # Clients name the optional new secret either way.
        secret = _signing_secret(body) or _signing_secret(body, "secret")
        ok(resp, self.gw.rotate_secret(req.context.account_id, dest, secret))


# -- routes -------------------------------------------------------------------------------


def _retry_policy(body: dict) -> tuple[int | None, str | None]:
    policy = v.obj(body, "retry_policy", values=object) or {}
    v.reject_unknown(policy, ("max_attempts", "backoff"))
    return (
        v.integer(policy, "max_attempts", low=1, high=100),
        v.choice(policy, "backoff", BACKOFFS),
    )


class Routes(Base):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        ok(resp, self.gw.list_routes(req.context.account_id))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = v.json_body(req)
        max_attempts, backoff = _retry_policy(body)
        route = self.gw.create_route(
            req.context.account_id,
            destination_id=v.optional_uuid(body, "destination_id", required=True),
            source_id=v.optional_uuid(body, "source_id"),
            event_type_pattern=v.string(body, "event_type_pattern"),
            max_attempts=max_attempts,
            backoff=backoff or "exponential",
        )
        ok(resp, route, falcon.HTTP_201)


class Route(Base):
    def on_patch(self, req: falcon.Request, resp: falcon.Response, route_id: str) -> None:
        route = v.uuid_value(route_id, "id")
        body = v.json_body(req)
        v.reject_unknown(body, ("active", "event_type_pattern", "retry_policy"))
        changes: dict = {}
        if "active" in body:
            changes["active"] = v.boolean(body, "active")
            if changes["active"] is None:
                raise Invalid("active must be true or false")
        if "event_type_pattern" in body:
            changes["event_type_pattern"] = v.string(body, "event_type_pattern")
        if "retry_policy" in body:
            max_attempts, backoff = _retry_policy(body)
            changes["retry_policy"] = {"max_attempts": max_attempts, "backoff": backoff}
        ok(resp, self.gw.update_route(req.context.account_id, route, changes))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, route_id: str) -> None:
        self.gw.delete_route(req.context.account_id, v.uuid_value(route_id, "id"))
        resp.status = falcon.HTTP_204


# -- events -------------------------------------------------------------------------------


class Ingest(Base):
    auth = False
    query_params = None  # providers may add their own

    def on_post(self, req: falcon.Request, resp: falcon.Response, token: str) -> None:
        limit = self.gw.config.MAX_INGEST_BYTES
        if req.content_length is not None and req.content_length > limit:
            raise falcon.HTTPContentTooLarge(
                description=f"webhook body exceeds MAX_INGEST_BYTES ({limit} bytes)"
            )
        body = req.bounded_stream.read(limit + 1)
        headers = dict(req.headers)
        # The public URL the provider posted to (Twilio signs it): the source's ingest_url
        # as BASE_URL builds it, with the query string as sent.
        query = f"?{req.query_string}" if req.query_string else ""
        headers[PUBLIC_URL] = f"{self.gw.config.BASE_URL}/ingest/{token}{query}"
        event = self.gw.ingest(token, body, headers)
        if event.get("duplicate"):  # the provider's id was seen: the first event, nothing new
            ok(resp, {"id": event["id"], "status": event["status"], "duplicate": True})
            return
        # The hot path's answer, as to_json writes it, without its walk (a UUID and a status
        # word: nothing to escape).
        resp.status = falcon.HTTP_202
        resp.content_type = falcon.MEDIA_JSON
        resp.data = f'{{"data": {{"id": "{event["id"]}", "status": "{event["status"]}"}}}}'.encode()


def _page(req: falcon.Request) -> dict:
    return {
        "limit": v.query_int(req, "limit", 25, 1, 200),
        "offset": v.query_int(req, "offset", 0, 0, 10_000_000),
    }


def _event_list(req: falcon.Request, only: tuple[str, ...]) -> dict:
    """The list's paging and filter arguments (see services/event_filter.py)."""
    page = _page(req)
    cursor = v.query_value(req, "cursor")  # with an offset too: rows skipped after it
    include_total = v.query_value(req, "include_total")
    if include_total not in (None, "true", "false"):
        raise Invalid("query parameter include_total must be true or false")
    return {
        **page,
        "cursor": cursor,
        "include_total": include_total != "false",
        "event_filter": EventFilter.parse(lambda name: v.query_value(req, name), only),
    }


_LIST_PARAMS = ("limit", "offset", "cursor", "include_total")


class Events(Base):
    query_params = (*_LIST_PARAMS, *FILTER_FIELDS)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        ok(resp, self.gw.list_events(req.context.account_id, **_event_list(req, FILTER_FIELDS)))


class Event(Base):
    direction: str | None = None

    def on_get(self, req: falcon.Request, resp: falcon.Response, event_id: str) -> None:
        event = v.uuid_value(event_id, "id")
        ok(resp, self.gw.get_event(req.context.account_id, event, self.direction))


class Replay(Base):
    direction: str | None = None

    def on_post(self, req: falcon.Request, resp: falcon.Response, event_id: str) -> None:
        event = v.uuid_value(event_id, "id")
        ok(resp, self.gw.replay(req.context.account_id, event, self.direction), falcon.HTTP_202)


class BulkReplay(Base):
    """POST /v1/events/replay: a replay job over every event the filters match."""

    FIELDS = (*FILTER_FIELDS, "dry_run", "to_destination_id", "rate")

    def __init__(self, gateway: Gateway) -> None:
        super().__init__(gateway)
        self.replays = Replays(gateway.config, gateway.db)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = v.json_body(req)
        v.reject_unknown(body, self.FIELDS)
        event_filter = EventFilter.parse(body.get)
        dry_run = v.boolean(body, "dry_run")
        to_destination_id = v.optional_uuid(body, "to_destination_id")
        rate = v.integer(body, "rate", low=1, high=1_000_000)
        account = req.context.account_id
        if dry_run:
            matched = self.replays.matching(account, event_filter, to_destination_id)
            ok(resp, {"dry_run": True, "matched": matched, "filter": event_filter.to_json()})
            return
        job = self.replays.create(account, event_filter, to_destination_id, rate=rate)
        ok(resp, replay_public(job), falcon.HTTP_202)


class ReplayJob(Base):
    def __init__(self, gateway: Gateway) -> None:
        super().__init__(gateway)
        self.replays = Replays(gateway.config, gateway.db)

    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        job = self.replays.get(req.context.account_id, v.uuid_value(job_id, "id"))
        ok(resp, replay_public(job))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        job = self.replays.cancel(req.context.account_id, v.uuid_value(job_id, "id"))
        ok(resp, replay_public(job))


class OutboundEvents(Base):
    FILTERS = ("destination_id", "status", "event_type", "since", "until")
    query_params = (*_LIST_PARAMS, *FILTERS)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        args = _event_list(req, self.FILTERS)
        args["event_filter"] = dataclasses.replace(args["event_filter"], direction="outbound")
        ok(resp, self.gw.list_events(req.context.account_id, **args))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = v.json_body(req)
        payload = body.get("payload")
        if payload is None:
            raise Invalid("payload is required (a string, e.g. a JSON document)")
        if not isinstance(payload, str):
            raise Invalid("payload must be a string; send JSON as a serialised string")
        if len(payload.encode()) > self.gw.config.MAX_INGEST_BYTES:
            raise falcon.HTTPContentTooLarge(
                description=f"payload exceeds MAX_INGEST_BYTES ({self.gw.config.MAX_INGEST_BYTES})"
            )
        event, _created = self.gw.publish(
            req.context.account_id,
            payload,
            event_type=v.string(body, "event_type"),
            external_event_id=v.string(body, "external_event_id", max_len=255),
        )
        # A repeated external_event_id answers as the first publish did (idempotent).
        ok(resp, {"id": event["id"], "status": event["status"]}, falcon.HTTP_201)


class OutboundEvent(Event):
    direction = "outbound"


class OutboundReplay(Replay):
    direction = "outbound"


# -- stats and settings -------------------------------------------------------------------


class Stats(Base):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        ok(resp, self.gw.stats(req.context.account_id))


# -- console session ----------------------------------------------------------------------


def _cookie(req: falcon.Request, gw: Gateway, value: str, max_age: int) -> str:
    """The session cookie: HttpOnly, SameSite=Strict, and Secure when served over HTTPS."""
    forwarded = (req.get_header("X-Forwarded-Proto") or "").split(",")[0].strip().lower()
    https = forwarded == "https" or (gw.config.BASE_URL or "").startswith("https://")
    secure = "; Secure" if https else ""
    return f"{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"


class ConsoleSession(Base):
    """The console's sign-in (POST, open), its session (GET) and sign-out (DELETE)."""

    public_methods = ("POST",)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        media = (req.content_type or "").split(";")[0].strip().lower()
        if media != falcon.MEDIA_JSON:
            # A cross-site HTML form can post text/plain that parses as JSON, signing the
            # browser in to the attacker's account (login CSRF); it cannot send this type.
            raise falcon.HTTPUnsupportedMediaType(
                description="sign in with Content-Type: application/json"
            )
        body = v.json_body(req)
        v.reject_unknown(body, ("email", "password", "api_key"))
        if "api_key" in body:
            if "email" in body or "password" in body:
                raise Invalid("send either email and password, or api_key")
            creds = {"api_key": v.string(body, "api_key", required=True, max_len=256)}
        else:
            creds = {
                "email": v.string(body, "email", required=True, max_len=254),
                "password": v.string(body, "password", required=True, max_len=1024, strip=False),
            }
        try:
            token, session = self.gw.sign_in(req.remote_addr or "unknown", **creds)
        except RateLimited as exc:
            raise falcon.HTTPTooManyRequests(
                description=exc.message, retry_after=exc.retry_after
            ) from None
        ttl = int(self.gw.config.CONSOLE_SESSION_TTL)
        resp.append_header("Set-Cookie", _cookie(req, self.gw, token, ttl))
        resp.set_header("Cache-Control", "no-store")
        ok(resp, session, falcon.HTTP_201)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.set_header("Cache-Control", "no-store")
        ok(resp, _session(req))

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        _session(req)
        self.gw.sign_out(req.context.session_token)
        resp.append_header("Set-Cookie", _cookie(req, self.gw, "", 0))
        resp.status = falcon.HTTP_204


def _session(req: falcon.Request) -> dict:
    session = getattr(req.context, "session", None)
    if session is None:  # authenticated by API key: there is no console session
        raise Unauthorized("no console session: sign in with POST /v1/console/session")
    return session


class DestinationStats(Base):
    query_params = ("hours",)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        hours = v.query_int(req, "hours", 24, 1, 720)
        ok(resp, self.gw.destination_stats(req.context.account_id, hours))


class SourceStats(Base):
    query_params = ("hours",)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        hours = v.query_int(req, "hours", 24, 1, 720)
        ok(resp, self.gw.source_stats(req.context.account_id, hours))


class PlatformStats(Base):
    auth = False

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        ok(resp, self.gw.platform_stats())


class BrandSettings(Base):
    FIELDS = ("company_name", "logo_url", "primary_color", "support_email", "docs_title")

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        ok(resp, self.gw.brand_settings(req.context.account_id))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = v.json_body(req)
        v.reject_unknown(body, self.FIELDS)
        changes = {}
        for name in ("company_name", "docs_title"):
            if name in body:
                changes[name] = v.string(body, name)
        if "logo_url" in body:
            changes["logo_url"] = v.http_url(body, "logo_url")
        if "support_email" in body:
            changes["support_email"] = email(body, "support_email")
        if "primary_color" in body:
            color = v.string(body, "primary_color", max_len=7)
            if color is not None and not _COLOR.fullmatch(color):
                raise Invalid("primary_color must be a hex colour such as #4F46E5")
            changes["primary_color"] = color
        ok(resp, self.gw.update_brand_settings(req.context.account_id, changes))


class CustomDomains(Base):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        ok(resp, self.gw.list_custom_domains(req.context.account_id))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = v.json_body(req)
        domain = v.string(body, "domain", required=True, max_len=253)
        if not _DOMAIN.fullmatch(domain):
            raise Invalid("domain must be a host name such as hooks.example.com")
        kind = v.choice(body, "type", (*DOMAIN_TYPES, *DOMAIN_TYPE_ALIASES)) or "ingest"
        kind = DOMAIN_TYPE_ALIASES.get(kind, kind)  # the GetHook SDK's names
        ok(
            resp,
            self.gw.create_custom_domain(req.context.account_id, domain.lower(), kind),
            falcon.HTTP_201,
        )
