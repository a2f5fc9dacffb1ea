"""The operator console: a static single-page app at /console that calls the /v1 API.

Files are read once at import from the gethookd.console package; any /console path that is
not an asset answers index.html, so client-side routes such as /console/events/<id> load.
"""

from __future__ import annotations

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


def _load() -> tuple[bytes, dict[str, tuple[bytes, str]]]:
    """index.html and a name -> (bytes, content type) map; only known files are ever served."""
    root = resources.files("gethookd.console")
    index = root.joinpath("index.html").read_bytes()
    assets: dict[str, tuple[bytes, str]] = {}
    for item in root.joinpath("assets").iterdir():
        suffix = "." + item.name.rpartition(".")[2]
        if item.is_file() and suffix in TYPES:
            assets[item.name] = (item.read_bytes(), TYPES[suffix])
    return index, assets


class Console:
    """GET /console and /console/{path}: assets by name, index.html for everything else."""

    auth = False
    query_params = None  # client-side routes may carry their own query (filters)

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        self.index, self.assets = _load()

    def on_get(self, req: falcon.Request, resp: falcon.Response, path: str = "") -> None:
        for name, value in SECURITY_HEADERS.items():
            resp.set_header(name, value)
        if path.startswith("assets/"):
            found = self.assets.get(path[len("assets/") :])
            if found is None:
                raise falcon.HTTPNotFound(description=f"no console asset {path!r}")
            resp.data, resp.content_type = found
            # Revalidated on each load, so an upgrade is seen at once; they are small.
            resp.set_header("Cache-Control", "no-cache")
            return
        resp.data = self.index
        resp.content_type = falcon.MEDIA_HTML
        resp.set_header("Cache-Control", "no-store")
