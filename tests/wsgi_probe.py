"""A WSGI app for tests/test_http_worker.py: it answers with what the server handed it.

Served by gunicorn with gethookd's HttpWorker; each path shows one side of the contract.
"""

from __future__ import annotations

import json
import time


def app(environ: dict, start_response) -> object:
    path = environ["PATH_INFO"]
    if path == "/reject":  # answers without reading the body
        body = b'{"error": "too large"}'
        start_response("413 Content Too Large", [("Content-Length", str(len(body)))])
        return [body]
    if path == "/stream":  # no Content-Length: the server must frame it
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (b"part %d\n" % i for i in range(3))
    if path == "/inject":  # a header value that would smuggle in a header of its own
        start_response("200 OK", [("X-Note", "a\r\nSet-Cookie: stolen=1"), ("Content-Length", "0")])
        return [b""]
    if path == "/slow":  # still being answered when the worker is told to stop
        time.sleep(1.0)
    if path == "/boom":
        raise RuntimeError("the app failed")
    if path == "/lines":
        lines = list(environ["wsgi.input"])
        return _json(start_response, {"lines": [line.decode() for line in lines]})
    body = environ["wsgi.input"].read()
    seen = {
        "method": environ["REQUEST_METHOD"],
        "path": path,
        "query": environ["QUERY_STRING"],
        "protocol": environ["SERVER_PROTOCOL"],
        "remote": environ["REMOTE_ADDR"],
        "body": body.decode("latin-1"),
        "headers": {k: v for k, v in environ.items() if k.startswith(("HTTP_", "CONTENT_"))},
    }
    return _json(start_response, seen)


def _json(start_response, data: dict) -> list[bytes]:
    body = json.dumps(data).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]
