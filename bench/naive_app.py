"""The naive ingest baseline of bench/ingest.py: one INSERT + COMMIT per request.

A falcon app on psycopg2, one connection per gunicorn thread, served with the shape the
issue names (2 gthread workers x 4 threads). NAIVE_DATABASE_URL names the database; the
table naive_events is created by bench/ingest.py.

`ceiling` is the other reference: the HTTP stack alone (gunicorn's gevent workers and
falcon, as gethookd's API runs them), reading the body and answering 202 with an event's
JSON, no database at all. No ingest served this way can be faster on the same machine.
"""

from __future__ import annotations

import json
import os
import threading

import falcon
import psycopg2

_local = threading.local()


def _conn():
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = _local.conn = psycopg2.connect(os.environ["NAIVE_DATABASE_URL"])
    return conn


class Ingest:
    def on_post(self, req: falcon.Request, resp: falcon.Response, token: str) -> None:
        body = req.bounded_stream.read()
        conn = _conn()
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO naive_events (token, headers, body) VALUES (%s, %s, %s) RETURNING id",
                (token, json.dumps(dict(req.headers)), body),
            )
            event_id = cur.fetchone()[0]
        conn.commit()
        resp.status = falcon.HTTP_202
        resp.media = {"id": event_id, "status": "accepted"}


class Ceiling:
    def on_post(self, req: falcon.Request, resp: falcon.Response, token: str) -> None:
        req.bounded_stream.read()
        resp.status = falcon.HTTP_202
        resp.media = {"id": "8d7f1c1e-5b0a-4c52-9a51-2f6f0c1d9b3e", "status": "queued"}


app = falcon.App()
app.add_route("/ingest/{token}", Ingest())
ceiling = falcon.App()
ceiling.add_route("/ingest/{token}", Ceiling())
