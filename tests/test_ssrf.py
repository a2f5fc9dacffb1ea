"""The SSRF guard: destination addresses refused at create/update (through the API of a
real daemon with the default policy) and at send (deliver.send with the real delivery
session, against real listeners on loopback), and TLS still verified on a pinned address."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import socket
import ssl
import threading
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import FAST_ENV
from gethookd import config as config_mod
from gethookd import ssrf
from helpers import Api, Daemon, Sink
from sendrunner import send_all

# host spelling -> what the 400 must name
REFUSED = [
    ("169.254.169.254", "169.254.169.254 is a link-local address (cloud metadata)"),
    ("[::ffff:169.254.169.254]", "cloud metadata"),
    ("[fd00:ec2::254]", "fd00:ec2::254 is a unique-local address (cloud metadata)"),
    ("169.254.170.2", "cloud metadata"),
    ("100.100.100.200", "cloud metadata"),
    ("0xa9fea9fe", "0xa9fea9fe (169.254.169.254) is a link-local address"),
    ("2852039166", "2852039166 (169.254.169.254)"),
    ("127.0.0.1", "127.0.0.1 is a loopback address"),
    ("127.1", "127.1 (127.0.0.1) is a loopback address"),
    ("0x7f.1", "0x7f.1 (127.0.0.1) is a loopback"),
    ("2130706433", "2130706433 (127.0.0.1)"),
    ("017700000001", "017700000001 (127.0.0.1)"),
    ("0177.0.0.1", "(127.0.0.1) is a loopback"),
    ("127.0.0.1.", "127.0.0.1 is a loopback"),
    ("[::1]", "::1 is a loopback address"),
    ("[::ffff:127.0.0.1]", "a loopback address (127.0.0.1 inside ::ffff:7f00:1)"),
    ("[::ffff:7f00:1]", "a loopback address"),
    ("[64:ff9b::a00:1]", "a private address (10.0.0.1 inside 64:ff9b::a00:1)"),
    ("[2002:c0a8:101::1]", "a private address (192.168.1.1 inside"),
    ("[2001:0:4136:e378:8000:63bf:3fff:fdd2]", "reserved (non-global)"),
    ("[fe80::1%25eth0]", "fe80::1%eth0 (fe80::1) is a link-local address"),
    ("10.1.2.3", "a private address"),
    ("172.16.0.1", "a private address"),
    ("192.168.0.1", "a private address"),
    ("[fc00::1]", "a unique-local address"),
    ("100.64.0.1", "a shared (CGNAT) address"),
    ("224.0.0.1", "a multicast address"),
    ("[ff02::1]", "a multicast address"),
    ("0.0.0.0", "an unspecified address"),
    ("0", "0 (0.0.0.0) is an unspecified address"),
    ("[::]", "an unspecified address"),
    ("240.0.0.1", "reserved (non-global)"),
    ("192.0.2.1", "reserved (non-global)"),
    ("255.255.255.255", "reserved (non-global)"),
    ("localhost", "localhost resolves to"),
    ("LOCALHOST.", "resolves to"),
]


@pytest.fixture(scope="module")
def strict_daemon(module_db_url, encryption_key, tmp_path_factory):
    """A daemon with the default policy (DATABASE_URL set, no ALLOWED_DESTINATION_NETWORKS)."""
    env = {
        **FAST_ENV,
        "ALLOWED_DESTINATION_NETWORKS": "",  # empty counts as unset: the default
        "DATABASE_URL": module_db_url,
        "ENCRYPTION_KEY": encryption_key,
    }
    daemon = Daemon(env, tmp_path_factory.mktemp("ssrf") / "daemon.log")
    daemon.start()
    yield daemon
    daemon.kill()


@pytest.fixture
def strict_api(strict_daemon) -> Api:
    return Api(strict_daemon.url).register(f"ssrf-{uuid.uuid4().hex[:10]}@example.com")


@pytest.mark.parametrize("host,reason", REFUSED)
def test_forbidden_hosts_refused_at_create_and_update(strict_api, host, reason):
    url = f"http://{host}:8080/hook"
    resp = strict_api.call("POST", "/v1/destinations", {"name": "x", "url": url})
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error.startswith("url host ") and reason in error, error
    assert "ALLOWED_DESTINATION_NETWORKS" in error
    # A public literal is accepted; changing it to the forbidden one is refused the same way.
    dest = strict_api.data(
        "POST", "/v1/destinations", {"name": "x", "url": "https://93.184.216.34/h"}, status=201
    )
    resp = strict_api.call("PATCH", f"/v1/destinations/{dest['id']}", {"url": url})
    assert resp.status_code == 400 and reason in resp.json()["error"], resp.text
    assert strict_api.data("GET", f"/v1/destinations/{dest['id']}")["url"].startswith("https://93")


def test_public_and_unresolvable_names_are_accepted_at_create(strict_api):
    """A name that does not resolve (yet) is accepted: DNS changes, send time decides."""
    for url in ("http://8.8.8.8/x", "https://[2606:4700::1111]/x", "https://hook.invalid/x"):
        strict_api.data("POST", "/v1/destinations", {"name": "ok", "url": url}, status=201)


def test_default_policy_daemon_refuses_loopback_sink(strict_api, strict_daemon):
    sink = Sink()
    try:
        resp = strict_api.call("POST", "/v1/destinations", {"name": "s", "url": sink.url})
        assert resp.status_code == 400 and "loopback" in resp.json()["error"]
        assert sink.requests == []
    finally:
        sink.close()


def test_allowed_networks_open_loopback_but_metadata_needs_listing(config):
    """The suite's FAST_ENV allows 127.0.0.0/8; metadata stays refused unless listed."""
    policy = ssrf.Policy.from_config(config)
    assert policy.reason(ipaddress.ip_address("127.0.0.1")) is None
    assert "cloud metadata" in policy.reason(ipaddress.ip_address("169.254.169.254"))
    listed = ssrf.Policy((ipaddress.ip_network("169.254.169.254/32"),))
    assert listed.reason(ipaddress.ip_address("169.254.169.254")) is None


def test_development_mode_allows_loopback_and_private_not_metadata():
    dev = config_mod.load(None, {"GETHOOKD_DATA_DIR": "/nonexistent"})
    policy = ssrf.Policy.from_config(dev)
    assert policy.development
    for allowed in ("127.0.0.1", "::1", "10.0.0.1", "192.168.1.1", "fd12::1"):
        assert policy.reason(ipaddress.ip_address(allowed)) is None, allowed
    for refused in ("169.254.169.254", "fd00:ec2::254", "169.254.170.2", "100.100.100.200"):
        assert "cloud metadata" in policy.reason(ipaddress.ip_address(refused)), refused
    assert "link-local" in policy.reason(ipaddress.ip_address("169.254.1.1"))
    # DATABASE_URL set (production): nothing non-public by default.
    prod = config_mod.load(None, {"DATABASE_URL": "postgresql://db/x", "ENCRYPTION_KEY": "a" * 64})
    assert not ssrf.Policy.from_config(prod).development


def test_legacy_ipv4_forms_agree_with_inet_aton():
    for host in ("127.1", "0x7f.1", "2130706433", "017700000001", "0x7F.0.0.1", "10.0x10.1"):
        assert ssrf.literal(host) == [ipaddress.IPv4Address(socket.inet_aton(host))], host
    assert ssrf.literal("example.com") is None
    assert ssrf.url_host("http://[fe80::1%25eth0]:80/") == "fe80::1%eth0"
    assert ssrf.url_host("http://0x7F.1./x") == "0x7f.1"


# -- send time ------------------------------------------------------------------------------


class Listener:
    """A bare TCP listener on 127.0.0.1 that counts the connections it accepts."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.sock.setblocking(False)

    def accepted(self) -> int:
        count = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1

    def close(self) -> None:
        self.sock.close()


SEND_SPELLINGS = [
    "127.0.0.1",
    "127.1",
    "0x7f.1",
    "2130706433",
    "017700000001",
    "localhost",
    "[::ffff:127.0.0.1]",
]


def test_loopback_listener_sees_no_connection_when_not_allowed():
    listener = Listener()
    try:
        urls = [f"http://{host}:{listener.port}/hook" for host in SEND_SPELLINGS]
        outcomes = send_all(urls)
        for url, outcome in zip(urls, outcomes, strict=True):
            assert outcome["outcome"] == "network_error", (url, outcome)
            assert outcome["error_message"].startswith("refused: url host "), outcome
            assert "loopback" in outcome["error_message"], outcome
        # With a trailing dot the resolver (urllib3 keeps the dot for DNS) finds nothing.
        dotted = send_all(
            [f"http://127.0.0.1.:{listener.port}/", f"http://0x7f.1.:{listener.port}/"]
        )
        assert [o["outcome"] for o in dotted] == ["network_error"] * 2, dotted
        assert listener.accepted() == 0
    finally:
        listener.close()


def test_names_resolving_to_private_addresses_refused_at_send():
    """localhost and the machine's other /etc/hosts names resolve to loopback: refused
    after resolution, with the address named."""
    names = {"localhost"}
    try:
        with open("/etc/hosts") as hosts:
            for line in hosts:
                fields = line.split("#")[0].split()
                if len(fields) >= 2 and fields[0].startswith("127."):
                    names.update(fields[1:])
    except OSError:
        pass
    listener = Listener()
    try:
        urls = [f"http://{name}:{listener.port}/" for name in sorted(names)]
        for url, outcome in zip(urls, send_all(urls), strict=True):
            assert outcome["outcome"] == "network_error", (url, outcome)
            assert " resolves to 127." in outcome["error_message"], outcome
        assert listener.accepted() == 0
    finally:
        listener.close()


def test_allowed_network_lets_the_send_through():
    sink = Sink()
    try:
        port = sink.url.rsplit(":", 1)[1]
        urls = [f"http://127.1:{port}/a", f"http://localhost:{port}/b"]
        outcomes = send_all(urls, allowed=("127.0.0.0/8", "::1/128"))
        assert [o["outcome"] for o in outcomes] == ["success", "success"], outcomes
        assert [r["path"] for r in sink.requests] == ["/a", "/b"]
        dev = send_all([f"http://127.0.0.1:{port}/c"], development=True)
        assert dev[0]["outcome"] == "success"
    finally:
        sink.close()


# -- TLS on a pinned address --------------------------------------------------------------


def _cert(tmp_path, name: str) -> tuple[str, str, str]:
    """A CA, and a server certificate for `name` signed by it: (ca.pem, cert.pem, key.pem)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gethookd test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = [tmp_path / f"{name}-ca.pem", tmp_path / f"{name}.pem", tmp_path / f"{name}.key"]
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return tuple(str(p) for p in paths)


class TlsServer:
    """An HTTPS server on 127.0.0.1 that records the SNI name each handshake carried."""

    def __init__(self, cert: str, key: str) -> None:
        self.sni: list[str | None] = []
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        context.sni_callback = lambda sock, name, ctx: self.sni.append(name)

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_tls_verifies_the_url_host_on_a_pinned_address(tmp_path):
    ca, cert, key = _cert(tmp_path, "localhost")
    other_ca, other_cert, other_key = _cert(tmp_path, "other.example")
    good, wrong = TlsServer(cert, key), TlsServer(other_cert, other_key)
    try:
        allowed = ("127.0.0.0/8", "::1/128")
        ok = send_all([f"https://localhost:{good.port}/"], allowed=allowed, ca=ca)
        assert ok[0]["outcome"] == "success", ok
        assert good.sni == ["localhost"]  # SNI carries the name, not the pinned IP
        # A certificate for another name, trusted CA or not, is refused on the same path.
        bad = send_all([f"https://localhost:{wrong.port}/"], allowed=allowed, ca=other_ca)
        assert bad[0]["outcome"] == "network_error", bad
        assert "certificate" in bad[0]["error_message"].lower(), bad
        untrusted = send_all([f"https://localhost:{good.port}/"], allowed=allowed)
        assert untrusted[0]["outcome"] == "network_error"
        assert "certificate verify failed" in untrusted[0]["error_message"], untrusted
    finally:
        good.close()
        wrong.close()


def test_startup_log_names_the_openings(caplog, strict_daemon):
    from gethookd.process import daemon

    dev = config_mod.load(None, {"GETHOOKD_DATA_DIR": "/nonexistent"})
    with caplog.at_level("INFO", logger="gethookd"):
        daemon._log_destination_policy(dev)
    assert "development mode (no DATABASE_URL)" in caplog.text
    assert "loopback and private networks are allowed" in caplog.text
    assert "cloud metadata addresses stay refused" in caplog.text
    caplog.clear()
    prod = config_mod.load(
        None,
        {
            "DATABASE_URL": "postgresql://db/x",
            "ENCRYPTION_KEY": "a" * 64,
            "ALLOWED_DESTINATION_NETWORKS": "10.20.0.0/16",
        },
    )
    with caplog.at_level("INFO", logger="gethookd"):
        daemon._log_destination_policy(prod)
    assert "ALLOWED_DESTINATION_NETWORKS: 10.20.0.0/16" in caplog.text
    assert "development mode" not in caplog.text
    assert "development mode" not in strict_daemon.log()
