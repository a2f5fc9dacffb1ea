"""The operator console: a static single-page app at /console that calls the /v1 API.

Files are read once from the gethookd.console package; any /console path that is not an
asset answers index.html, so client-side routes such as /console/events/<id> load. Assets are
served under /console/assets/<version>/, the version being a hash of their contents: browsers
keep them for a year and an upgrade changes every URL (ES modules import each other by
relative path, so they all stay within one version).
"""

from __future__ import annotations

import hashlib
from importlib import resources

import falcon

from gethookd.service import Gateway

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
}


def _load() -> tuple[str, bytes, dict[str, tuple[bytes, str]]]:
    """Version, index.html and a name -> (bytes, content type) map; only these are served."""
    root = resources.files("gethookd.console")
    assets: dict[str, tuple[bytes, str]] = {}
    for item in sorted(root.joinpath("assets").iterdir(), key=lambda i: i.name):
        suffix = "." + item.name.rpartition(".")[2]
        if item.is_file() and suffix in TYPES:
            assets[item.name] = (item.read_bytes(), TYPES[suffix])
    digest = hashlib.sha256()
    for name, (data, _type) in assets.items():
        digest.update(name.encode() + b"\0" + data)
    version = digest.hexdigest()[:12]
    index = root.joinpath("index.html").read_bytes()
    index = index.replace(b"/console/assets/", f"/console/assets/{version}/".encode())
    return version, index, assets


class Console:
    """GET /console and /console/{path}: assets by name, index.html for everything else."""

    auth = False
    query_params = None  # client-side routes may carry their own query (filters)

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        self.version, self.index, self.assets = _load()

    def on_get(self, req: falcon.Request, resp: falcon.Response, path: str = "") -> None:
        for name, value in SECURITY_HEADERS.items():
            resp.set_header(name, value)
        if path.startswith("assets/"):
            version, _, name = path[len("assets/") :].rpartition("/")
            found = self.assets.get(name)
            if found is None:
                raise falcon.HTTPNotFound(description=f"no console asset {path!r}")
            resp.data, resp.content_type = found
            if version == self.version:
                resp.set_header("Cache-Control", "public, max-age=31536000, immutable")
            else:  # an older page asking, or no version: the current file, not to be kept
                resp.set_header("Cache-Control", "no-cache")
            return
        resp.data = self.index
        resp.content_type = falcon.MEDIA_HTML
        resp.set_header("Cache-Control", "no-store")
