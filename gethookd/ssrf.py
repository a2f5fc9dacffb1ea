"""Which addresses a webhook may be sent to (SSRF guard), and a session that keeps to it.

Anyone with an account registers destination URLs and reads back up to 64 KiB of each
answer, so a URL must never reach the gateway's own network: loopback, private,
link-local (cloud metadata), unique-local, shared (CGNAT), multicast, reserved or any
other non-global address is refused, in every spelling the HTTP client would accept.

The host is read the way urllib3 reads it and resolved with the same getaddrinfo the
client would use (so `127.1`, `0x7f.1`, `2130706433` and `017700000001` are 127.0.0.1
here as there). At send time the connection class resolves, checks every address and
connects to exactly a checked one, while TLS still uses the URL's host name for SNI and
certificate checks: there is no window between the check and the connection for DNS to
change its answer. No database here.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util import parse_url

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Refused in every mode unless a network in ALLOWED_DESTINATION_NETWORKS contains them.
METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)
# What the embedded development mode (no DATABASE_URL) opens by default.
DEVELOPMENT_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)
_PRIVATE_V4 = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
# What inet_aton accepts: decimal, 0x hex and 0 octal parts, one to four of them.
_LEGACY_V4 = re.compile(r"^[0-9A-Fa-fXx.]+$")
RESOLVE_TIMEOUT = 3.0  # seconds a create/update waits for DNS before accepting the name
_resolver = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="ssrf-resolve")


class Refused(Exception):
    """The destination's host is, or resolves to, an address the policy refuses."""


def _contains(networks: Iterable[Network], ip: IPAddress) -> bool:
    return any(ip.version == net.version and ip in net for net in networks)


def embedded(ip: IPAddress) -> IPAddress | None:
    """The IPv4 address an IPv6 one carries to the network: IPv4-mapped (the kernel
    connects to it), NAT64 (the translator does) and 6to4 (the relay does)."""
    if ip.version != 6:
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour  # Teredo (2001::/32) is non-global as a whole: refused below


def category(ip: IPAddress) -> str | None:
    """Why this one address is not a public destination, or None if it is global."""
    if ip in METADATA:
        return (_category(ip) or "an address") + " (cloud metadata)"
    return _category(ip)


def _category(ip: IPAddress) -> str | None:
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if _contains(_PRIVATE_V4, ip):
        return "a private address"
    if _contains((_UNIQUE_LOCAL,), ip):
        return "a unique-local address"
    if _contains((_SHARED,), ip):
        return "a shared (CGNAT) address"
    if _contains((_NAT64_LOCAL,), ip):
        return "a local-use NAT64 address"
    if ip.version == 6 and (ip.ipv4_mapped is not None or ip in _NAT64):
        return None  # judged by the IPv4 address it carries (see embedded())
    if ip.version == 6 and ip.is_site_local:
        return "a reserved (non-global) address"
    if ip.is_reserved or ip.is_private or not ip.is_global:
        return "a reserved (non-global) address"
    return None


@dataclass(frozen=True)
class Policy:
    """allowed: ALLOWED_DESTINATION_NETWORKS (opens anything, metadata included);
    development: the embedded mode, which opens DEVELOPMENT_NETWORKS but never metadata."""

    allowed: tuple[Network, ...] = ()
    development: bool = False

    @classmethod
    def from_config(cls, config: object) -> Policy:
        allowed = getattr(config, "ALLOWED_DESTINATION_NETWORKS", None) or ()
        return cls(tuple(allowed), development_mode(config))

    def reason(self, ip: IPAddress) -> str | None:
        """None if a request may go to `ip`; otherwise what it is."""
        if _contains(self.allowed, ip):
            return None
        candidates = [ip]
        inner = embedded(ip)
        if inner is not None:
            candidates.append(inner)
        for address in candidates:
            if _contains(self.allowed, address):
                continue
            why = category(address)
            if why is None:
                continue
            if address in METADATA:
                return why
            if self.development and _contains(DEVELOPMENT_NETWORKS, address):
                continue
            if address is not ip:
                why = f"{why} ({address} inside {ip})"
            return why
        return None

    def check_addresses(self, host: str, addresses: list[IPAddress]) -> None:
        """Raise Refused if any address the host stands for is refused."""
        for ip in addresses:
            why = self.reason(ip)
            if why is None:
                continue
            if _same(host, ip):
                raise Refused(f"host {host} is {why}; {_HINT}")
            if literal(host) is not None:  # another spelling of the same address
                raise Refused(f"host {host} ({ip}) is {why}; {_HINT}")
            raise Refused(f"host {host} resolves to {ip}, {why}; {_HINT}")

    def check_url(self, url: str, resolve_timeout: float = RESOLVE_TIMEOUT) -> None:
        """At create/update: literal addresses are checked; names are resolved and every
        address checked. A name that does not resolve (yet) passes: DNS can change, and
        the send-time check is the one that counts."""
        host = url_host(url)
        addresses = literal(host)
        if addresses is None:
            future = _resolver.submit(resolve, host)
            try:
                addresses = future.result(timeout=resolve_timeout)
            except (OSError, UnicodeError, concurrent.futures.TimeoutError):
                return
        self.check_addresses(host, addresses)

    def pinned(self, host: str, port: int) -> list[tuple]:
        """getaddrinfo results for host, all checked (Refused if any is refused)."""
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = [_ip(info[4][0]) for info in infos]
        self.check_addresses(host, addresses)
        return infos


_HINT = "destinations must be public addresses (ALLOWED_DESTINATION_NETWORKS opens more)"


def development_mode(config: object) -> bool:
    """True when the operator set no DATABASE_URL (the embedded PostgreSQL): even after the
    daemon fills in the embedded server's URL, the source still says `default`."""
    source = getattr(config, "source", None) or {}
    return source.get("DATABASE_URL") == "default"


def _same(host: str, ip: IPAddress) -> bool:
    try:
        return _ip(host) == ip and "%" not in host
    except ValueError:
        return False


def _ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text.split("%", 1)[0])  # a zone id does not change the class


def url_host(url: str) -> str:
    """The host exactly as requests/urllib3 will connect to it: parsed by urllib3,
    IDNA-encoded as requests does, brackets and trailing dots removed."""
    host = parse_url(url).host or ""
    if not host.isascii():
        import idna

        host = idna.encode(host, uts46=True).decode("utf-8")
    if host.startswith("["):
        host = host[1:-1]
    return host.rstrip(".")


def literal(host: str) -> list[IPAddress] | None:
    """The address a literal host names (IPv6, possibly with a zone, or IPv4 in any form
    inet_aton takes), or None for a DNS name."""
    if ":" in host:
        try:
            return [_ip(host)]
        except ValueError:
            return None
    if _LEGACY_V4.fullmatch(host):
        try:
            return [ipaddress.IPv4Address(socket.inet_aton(host))]
        except OSError:
            return None
    return None


def resolve(host: str) -> list[IPAddress]:
    return [_ip(info[4][0]) for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)]


# -- the sender's side: connect to exactly the checked address ---------------------------


class _PinnedMixin:
    policy: Policy

    def _new_conn(self) -> socket.socket:
        """As urllib3's, but resolution goes through the policy and the socket connects to
        one of the checked addresses (TLS, done by the caller, still uses self.host)."""
        host = self._dns_host
        if host.startswith("["):
            host = host.strip("[]")
        try:
            infos = self.policy.pinned(host, self.port)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        error: OSError | None = None
        for family, kind, proto, _name, address in infos:
            sock = socket.socket(family, kind, proto)
            try:
                for opt in self.socket_options or ():
                    sock.setsockopt(*opt)
                if self.timeout is not None:
                    sock.settimeout(self.timeout)
                if self.source_address:
                    sock.bind(self.source_address)
                sock.connect(address)
                return sock
            except TimeoutError as exc:
                sock.close()
                raise ConnectTimeoutError(
                    self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})"
                ) from exc
            except OSError as exc:
                sock.close()
                error = exc
        raise NewConnectionError(self, f"Failed to establish a new connection: {error}")


def pinned_pool_classes(
    policy: Policy, mixins: tuple[type, ...] = ()
) -> dict[str, type[HTTPConnectionPool]]:
    """urllib3 pool classes, by scheme, whose connections resolve through `policy` and pin
    the checked address (`mixins` go first in the connections' bases)."""
    namespace = {"policy": policy}
    http_conn = type("PinnedHTTPConnection", (*mixins, _PinnedMixin, HTTPConnection), namespace)
    https_conn = type("PinnedHTTPSConnection", (*mixins, _PinnedMixin, HTTPSConnection), namespace)
    return {
        "http": type("PinnedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn}),
        "https": type("PinnedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn}),
    }
