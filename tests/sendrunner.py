"""Send webhooks with deliver.send and the delivery session (deliver.new_session) in a
child Python that monkey-patches itself first, as a delivery process does (send relies on
gevent.Timeout); this pytest process is never patched."""

from __future__ import annotations

import json
import subprocess
import sys

RUNNER = r"""
from gevent import monkey

monkey.patch_all()

import dataclasses, ipaddress, json, sys
from gethookd import deliver, ssrf

job = json.load(sys.stdin)
policy = ssrf.Policy(
    tuple(ipaddress.ip_network(n) for n in job["allowed"]), job["development"]
)
session = deliver.new_session(policy)
if job["ca"]:
    session.verify = job["ca"]
out = []
for url in job["urls"]:
    req = deliver.Request(
        url=url, body=b'{"a":1}', content_type="application/json", event_id="evt_1",
        event_type=None, attempt_number=1, timeout=5.0,
    )
    out.append(dataclasses.asdict(deliver.send(req, session)))
print(json.dumps(out))
"""


def send_all(
    urls: list[str],
    allowed: tuple[str, ...] = (),
    development: bool = False,
    ca: str | None = None,
) -> list[dict]:
    """One outcome (as a dict) per URL, sent in order through one session."""
    job = {"urls": urls, "allowed": list(allowed), "development": development, "ca": ca}
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)
