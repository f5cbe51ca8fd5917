"""Which hosts the server connects to on a tenant's behalf (upstream indexes).

An upstream URL is set by a namespace admin — a tenant, not the operator — and fetched by
the server from inside its network, for any reader. Without a rule, a tenant could point it
at ``127.0.0.1:6379``, ``10.0.0.5`` or ``169.254.169.254`` and learn from the answers what
runs there. So the operator decides: by default only *public* addresses are reached, and
``PACKYARD_UPSTREAM_ALLOW_HOSTS`` lists what else may be (host names or globs, IP addresses
or networks, each optionally with a port).

The check is made on the addresses a host name resolves to — every one of them, IPv4 and
IPv6, with IPv4 embedded in IPv6 (``::ffff:127.0.0.1``, 6to4, NAT64) read as the IPv4 it
carries — and the connection is then opened to a checked address, never to the name: the
resolver is asked once, so a name that answers a public address to the check and a private
one to the connect (DNS rebinding) cannot get through. That is done in the HTTP client's
network backend (:class:`CheckedBackend`), the one place every connection of the upstream
client is opened — the first request, each redirect hop and each file URL a page links to —
while TLS and the ``Host`` header keep the name, so certificates are checked as usual.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import logging
import socket
from collections.abc import Iterable
from dataclasses import dataclass

import httpcore
import httpx
from packyard.store.errors import RemoteFailed

log = logging.getLogger("packyard.egress")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

SETTING = "PACKYARD_UPSTREAM_ALLOW_HOSTS"


class HostRefused(RemoteFailed):
    """A host the policy does not allow: refused before any connection is made."""


def embedded_ipv4(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64), else the address itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def is_public(address: IPAddress) -> bool:
    """Globally routable unicast: not loopback, private, link-local, multicast, reserved or unspecified."""
    address = embedded_ipv4(address)
    return address.is_global and not (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


@dataclass(frozen=True)
class AllowEntry:
    """One entry of the allow list: a host glob or a network, and an optional port."""

    host: str | None = None
    network: Network | None = None
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> AllowEntry:
        """``name``, ``*.corp.example``, ``10.0.0.0/8``, ``::1``, each optionally ``:port``
        (an IPv6 address with a port in brackets: ``[::1]:8080``)."""
        spec, port = text.strip(), None
        if spec.startswith("["):
            inner, closed, rest = spec[1:].partition("]")
            if not closed:
                raise ValueError(f"{text!r}: expected [address] or [address]:port")
            spec = inner
            if rest:
                if not rest.startswith(":"):
                    raise ValueError(f"{text!r}: expected [address]:port")
                port = int(rest[1:])
        elif spec.count(":") == 1:
            spec, port_text = spec.split(":")
            port = int(port_text)
        if not spec:
            raise ValueError(f"{text!r} names no host")
        try:
            return cls(network=ipaddress.ip_network(spec, strict=False), port=port)
        except ValueError:
            return cls(host=spec.lower().rstrip("."), port=port)

    def admits(self, host: str, address: IPAddress | None, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            return address is not None and (
                address in self.network or embedded_ipv4(address) in self.network  # type: ignore[operator]
            )
        return fnmatch.fnmatchcase(host.lower().rstrip("."), self.host or "")


@dataclass(frozen=True)
class HostPolicy:
    """Public addresses, plus what the operator allows."""

    allow: tuple[AllowEntry, ...] = ()
    setting: str = SETTING
    """The setting the allow list comes from (named in refusals): upstreams and git remotes have one each."""

    @classmethod
    def parse(cls, text: str | None, setting: str = SETTING) -> HostPolicy:
        """A comma-separated ``PACKYARD_UPSTREAM_ALLOW_HOSTS`` (or ``setting``) value."""
        entries = [part for part in (text or "").split(",") if part.strip()]
        try:
            return cls(tuple(AllowEntry.parse(part) for part in entries), setting)
        except ValueError as exc:
            raise ValueError(f"{setting}: {exc}") from exc

    def admits(self, host: str, address: IPAddress, port: int) -> bool:
        return is_public(address) or any(entry.admits(host, address, port) for entry in self.allow)

    def resolve(self, host: str, port: int) -> list[IPAddress]:
        """The addresses to connect to for ``host:port``, all of them checked, or :class:`HostRefused`.

        Every address the name resolves to must be allowed, not just one: a name answering
        both a public and a private address would otherwise reach the private one on a retry.
        """
        try:
            addresses = [ipaddress.ip_address(host.strip("[]"))]
        except ValueError:
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (socket.gaierror, UnicodeError) as exc:
                log.warning("upstream host %s:%s does not resolve: %s", host, port, exc)
                raise HostRefused("it leads to a host that does not resolve") from exc
            addresses = _unique(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos)
        refused = [a for a in addresses if not self.admits(host, a, port)]
        if refused or not addresses:
            log.warning(
                "refused a connection to %s:%s (%s): not public and not allowed by %s",
                host,
                port,
                ", ".join(map(str, refused)),
                self.setting,
            )
            raise HostRefused(
                "it leads to a host that is not a public address, which the operator does not allow "
                f"({self.setting}); no connection was made"
            )
        return addresses


def _unique(addresses: Iterable[IPAddress]) -> list[IPAddress]:
    return list(dict.fromkeys(addresses))


class CheckedBackend(httpcore.SyncBackend):
    """httpcore's socket backend, connecting only to addresses the policy allows.

    It resolves the name itself, checks every address, and connects to the checked
    addresses (in the resolver's order, like ``socket.create_connection``): nothing else is
    ever dialled, whatever the name resolves to later.
    """

    def __init__(self, policy: HostPolicy) -> None:
        self.policy = policy

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):  # noqa: ANN001, ANN201
        addresses = self.policy.resolve(host, port)
        last: Exception | None = None
        for address in addresses:
            try:
                return super().connect_tcp(str(address), port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                last = exc
        assert last is not None
        raise last

    def connect_unix_socket(self, path, timeout=None, socket_options=None):  # noqa: ANN001, ANN201
        raise HostRefused("the upstream client does not connect to unix sockets")


class CheckedTransport(httpx.HTTPTransport):
    """httpx's own transport with its connection pool on a :class:`CheckedBackend`.

    httpx does not take a network backend, so the pool it builds is replaced by the same
    pool (default limits, TLS context from ``SSL_CERT_FILE``/``SSL_CERT_DIR`` as httpx reads
    them) on the checked backend. There is no proxy: through a proxy the server could not
    see which address it reaches, so the upstream client ignores ``HTTP(S)_PROXY``.
    """

    def __init__(self, policy: HostPolicy) -> None:
        super().__init__(trust_env=False)
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=True),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=CheckedBackend(policy),
        )
