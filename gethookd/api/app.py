"""The falcon app factory: routes, middleware and the one place errors become HTTP."""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid

import falcon
import falcon.media
import psycopg2

from gethookd.api import resources as r
from gethookd.api.console import Console
from gethookd.errors import DomainError
from gethookd.service import Gateway
from gethookd.services.console_sessions import SESSION_COOKIE, csrf_matches

log = logging.getLogger("gethookd.api")


def _default(value: object) -> object:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def to_json(value: object) -> str:
    return json.dumps(value, default=_default)


_UNSAFE = frozenset(("POST", "PUT", "PATCH", "DELETE"))


class Auth:
    """Resolves the Bearer key, or else the console's session cookie, to an account on every
    request (revocation and sign-out are immediate).

    `Authorization: hk_...` (no scheme) is taken as `Bearer hk_...`. With the cookie, a
    state-changing method also needs the session's X-CSRF-Token. A resource's
    `public_methods` need neither (signing in).
    """

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    def process_resource(self, req: falcon.Request, resp, resource, params) -> None:
        if resource is None or not getattr(resource, "auth", True) or req.method == "OPTIONS":
            return
        if req.method in getattr(resource, "public_methods", ()):
            return
        header = (req.get_header("Authorization") or "").strip()
        cookie = req.get_cookie_values(SESSION_COOKIE)
        if not header and cookie and cookie[0]:
            self._session(req, cookie[0])
            return
        if header.startswith("hk_") and " " not in header:
            # A bare key, as GetHook's generated SDKs send it (api_key with no prefix).
            header = f"Bearer {header}"
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise falcon.HTTPUnauthorized(
                description="missing API key: send Authorization: Bearer <api key>"
            )
        req.context.account_id = self.gw.authenticate(key.strip())

    def _session(self, req: falcon.Request, token: str) -> None:
        session = self.gw.console_session(token)
        if req.method in _UNSAFE and not csrf_matches(token, req.get_header("X-CSRF-Token")):
            raise falcon.HTTPForbidden(
                description="missing or wrong X-CSRF-Token: send the csrf_token of the "
                "console session with every change"
            )
        req.context.account_id = session["account"]["id"]
        req.context.session = session
        req.context.session_token = token


class QueryCheck:
    """An unknown query parameter is an error, so `?stauts=` is not silently ignored.

    A resource lists what it takes in `query_params`; None takes anything (ingest URLs).
    """

    def process_resource(self, req: falcon.Request, resp, resource, params) -> None:
        if resource is None or req.method == "OPTIONS":
            return
        allowed = getattr(resource, "query_params", ())
        if allowed is None:
            return
        unknown = sorted(set(req.params) - set(allowed))
        if unknown:
            hint = f"; allowed: {', '.join(allowed)}" if allowed else ""
            raise falcon.HTTPBadRequest(
                description=f"unknown query parameter(s): {', '.join(unknown)}{hint}"
            )


class Cors:
    def __init__(self, origin: str) -> None:
        self.origin = origin

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if req.method == "OPTIONS" and req.get_header("Access-Control-Request-Method"):
            resp.set_header("Access-Control-Allow-Origin", self.origin)
            resp.set_header("Access-Control-Allow-Methods", "GET, POST, PATCH, DELETE, OPTIONS")
            resp.set_header(
                "Access-Control-Allow-Headers",
                req.get_header("Access-Control-Request-Headers") or "Authorization, Content-Type",
            )
            resp.set_header("Access-Control-Max-Age", "600")
            resp.status = falcon.HTTP_204
            resp.complete = True

    def process_response(self, req, resp: falcon.Response, resource, req_succeeded) -> None:
        resp.set_header("Access-Control-Allow-Origin", self.origin)
        if self.origin != "*":
            resp.append_header("Vary", "Origin")


def _domain_error(req, resp: falcon.Response, exc: DomainError, params) -> None:
    resp.status = falcon.code_to_http_status(exc.status)
    resp.media = {"error": exc.message}


def _http_error(req, resp: falcon.Response, exc: falcon.HTTPError, params) -> None:
    resp.status = exc.status
    resp.media = {"error": exc.description or exc.title}
    for name, value in (exc.headers or {}).items():
        resp.set_header(name, value)


def _database_down(req, resp: falcon.Response, exc: Exception, params) -> None:
    log.error("database error on %s %s: %s", req.method, req.path, str(exc).strip())
    resp.status = falcon.HTTP_503
    resp.media = {"error": "the database is unavailable; try again shortly"}
    resp.set_header("Retry-After", "5")


def _unexpected(req, resp: falcon.Response, exc: Exception, params) -> None:
    log.exception("unhandled error on %s %s", req.method, req.path)
    resp.status = falcon.HTTP_500
    resp.media = {"error": "internal error; the gateway log has the details"}


ROUTES = {
    "/openapi.json": r.OpenApi,
    "/docs": r.Docs,
    "/healthz": r.Health,
    "/readyz": r.Ready,
    "/metrics": r.Metrics,
    "/v1/auth/register": r.Register,
    "/v1/auth/login": r.Login,
    "/v1/accounts": r.Accounts,
    "/v1/api-keys": r.ApiKeys,
    "/v1/api-keys/{key_id}": r.ApiKey,
    "/v1/provider-presets": r.ProviderPresets,
    "/v1/sources": r.Sources,
    "/v1/sources/{source_id}": r.Source,
    "/v1/destination-presets": r.DestinationPresets,
    "/v1/destinations": r.Destinations,
    "/v1/destinations/{dest_id}": r.Destination,
    "/v1/destinations/{dest_id}/rotate-secret": r.RotateSecret,
    "/v1/routes": r.Routes,
    "/v1/routes/{route_id}": r.Route,
    "/ingest/{token}": r.Ingest,
    "/v1/events": r.Events,
    "/v1/events/replay": r.BulkReplay,
    "/v1/event-replays/{job_id}": r.ReplayJob,
    "/v1/events/{event_id}": r.Event,
    "/v1/events/{event_id}/replay": r.Replay,
    "/v1/outbound-events": r.OutboundEvents,
    "/v1/outbound-events/{event_id}": r.OutboundEvent,
    "/v1/outbound-events/{event_id}/replay": r.OutboundReplay,
    "/v1/stats": r.Stats,
    "/v1/console/session": r.ConsoleSession,
    "/v1/destination-stats": r.DestinationStats,
    "/v1/source-stats": r.SourceStats,
    "/v1/platform-stats": r.PlatformStats,
    "/v1/brand-settings": r.BrandSettings,
    "/v1/custom-domains": r.CustomDomains,
    # The console (not in /openapi.json): a static page app calling the routes above.
    "/console": Console,
    "/console/{path:path}": Console,
}


def create_app(gateway: Gateway) -> falcon.App:
    app = falcon.App(middleware=[Cors(gateway.config.CORS_ORIGIN), Auth(gateway), QueryCheck()])
    handler = falcon.media.JSONHandler(dumps=to_json)
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = handler
    app.req_options.strip_url_path_trailing_slash = True
    app.req_options.keep_blank_qs_values = True

    for path, resource in ROUTES.items():
        app.add_route(path, resource(gateway))

    # Most specific last: falcon picks the handler of the nearest class.
    app.add_error_handler(Exception, _unexpected)
    app.add_error_handler(falcon.HTTPError, _http_error)
    app.add_error_handler(DomainError, _domain_error)
    app.add_error_handler(psycopg2.OperationalError, _database_down)
    return app
