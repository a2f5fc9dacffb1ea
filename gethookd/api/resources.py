"""Falcon resources: parse and check the request, call the gateway, wrap the answer."""

from __future__ import annotations

import falcon

from gethookd.api import validate as v
from gethookd.service import Gateway

EVENT_STATUSES = (
    "received",
    "accepted",
    "queued",
    "delivering",
    "delivered",
    "retry_scheduled",
    "dead_letter",
    "replayed",
)
AUTH_MODES = ("none", "hmac", "basic", "bearer", "api_key", "provider")


def ok(resp: falcon.Response, data: object, status: str = falcon.HTTP_200) -> None:
    resp.media = {"data": data}
    resp.status = status


class Base:
    auth = True

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway


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


class Register(Base):
    auth = False

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = v.json_body(req)
        email = v.string(body, "email", required=True, max_len=254)
        if "@" not in email:
            raise falcon.HTTPBadRequest(description="email must be an email address")
        password = v.string(body, "password", required=True, max_len=1024)
        if len(password) < 8:
            raise falcon.HTTPBadRequest(description="password must be at least 8 characters")
        name = v.string(body, "name") or email.split("@")[0]
        ok(resp, self.gw.register(name, email, password), falcon.HTTP_201)


class Login(Base):
    auth = False

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = v.json_body(req)
        email = v.string(body, "email", required=True, max_len=254)
        password = v.string(body, "password", required=True, max_len=1024)
        ok(resp, self.gw.login(email, password))


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


class Sources(Base):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        ok(resp, self.gw.list_sources(req.context.account_id))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = v.json_body(req)
        source = self.gw.create_source(
            req.context.account_id,
            name=v.string(body, "name", required=True),
            auth_mode=v.choice(body, "auth_mode", AUTH_MODES) or "none",
            provider=v.string(body, "provider", max_len=64),
            verification_config=v.obj(body, "verification_config"),
        )
        ok(resp, source, falcon.HTTP_201)


class Source(Base):
    def on_get(self, req: falcon.Request, resp: falcon.Response, source_id: str) -> None:
        ok(resp, self.gw.get_source(req.context.account_id, v.uuid_value(source_id, "id")))


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
            signing_secret=v.string(body, "signing_secret", max_len=512),
            auth_config=v.obj(body, "auth_config"),
            custom_headers=v.obj(body, "custom_headers"),
            preset=v.string(body, "preset", max_len=64),
        )
        ok(resp, dest, falcon.HTTP_201)


class Destination(Base):
    def on_get(self, req: falcon.Request, resp: falcon.Response, dest_id: str) -> None:
        ok(resp, self.gw.get_destination(req.context.account_id, v.uuid_value(dest_id, "id")))


class Routes(Base):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        ok(resp, self.gw.list_routes(req.context.account_id))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = v.json_body(req)
        policy = v.obj(body, "retry_policy", values=object) or {}
        route = self.gw.create_route(
            req.context.account_id,
            destination_id=v.optional_uuid(body, "destination_id", required=True),
            source_id=v.optional_uuid(body, "source_id"),
            event_type_pattern=v.string(body, "event_type_pattern"),
            max_attempts=v.integer(policy, "max_attempts", low=1, high=100),
            backoff=v.choice(policy, "backoff", ("exponential", "linear", "fixed"))
            or "exponential",
        )
        ok(resp, route, falcon.HTTP_201)


class Ingest(Base):
    auth = False

    def on_post(self, req: falcon.Request, resp: falcon.Response, token: str) -> None:
        limit = self.gw.config.MAX_INGEST_BYTES
        if req.content_length is not None and req.content_length > limit:
            raise falcon.HTTPContentTooLarge(
                description=f"webhook body exceeds MAX_INGEST_BYTES ({limit} bytes)"
            )
        body = req.bounded_stream.read(limit + 1)
        event = self.gw.ingest(token, body, dict(req.headers))
        ok(resp, {"id": event["id"], "status": event["status"]}, falcon.HTTP_202)


class Events(Base):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        page = self.gw.list_events(
            req.context.account_id,
            limit=v.query_int(req, "limit", 25, 1, 200),
            offset=v.query_int(req, "offset", 0, 0, 10_000_000),
            source_id=v.query_uuid(req, "source_id"),
            status=v.query_choice(req, "status", EVENT_STATUSES),
            direction=v.query_choice(req, "direction", ("inbound", "outbound")),
        )
        ok(resp, page)


class Event(Base):
    def on_get(self, req: falcon.Request, resp: falcon.Response, event_id: str) -> None:
        ok(resp, self.gw.get_event(req.context.account_id, v.uuid_value(event_id, "id")))
