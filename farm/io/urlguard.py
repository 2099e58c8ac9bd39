"""Refuses URLs that would make the farm call into its own network (SSRF).

Webhooks, upload endpoints and media inputs are URLs chosen by API clients; the farm calls them
from inside the cluster. ``UrlGuard`` lets a URL through only when it is ``http``/``https`` and
EVERY address its host resolves to is a global one, so a client cannot point the farm at
``127.0.0.1``, ``169.254.169.254`` (cloud metadata), ``10.x`` services or a name that resolves to
any of them. Operators (and tests) open holes with an allow-list of host names, IPs and CIDRs.

DNS rebinding: ``check`` resolves the name, and the HTTP client that later connects resolves it
again; a hostile DNS server can answer a global address to the first lookup and a private one to
the second. Callers close that gap by connecting only to the addresses ``resolve`` vetted (pin
them): ``farm.io.delivery`` does this for uploads and webhooks. A caller that uses ``check`` alone
and then lets its client resolve again still has the gap. Redirects are a second path around the
guard: callers must not follow them (or must check every hop).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from farm.domain.errors import ForbiddenURLError

__all__ = ["UrlGuard", "Resolver"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: ``(host, port) -> addresses``; the default uses ``socket.getaddrinfo``.
Resolver = Callable[[str, int], list[str]]

_DEFAULT_PORTS = {"http": 80, "https": 443}
#: RFC 6052 NAT64 prefix: ``64:ff9b::a.b.c.d`` reaches IPv4 ``a.b.c.d`` through a translator,
#: and Python counts the whole prefix as global, so the embedded address must be checked too.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    # The scope id of a link-local IPv6 answer ("fe80::1%eth0") is not part of the address.
    return list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))


def _refusal(address: IPAddress) -> str | None:
    """Why ``address`` may not be called, or None if it is a global unicast address."""
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv6 form of an IPv4 address is as dangerous as the IPv4 address itself.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            reason = _refusal(embedded)
            return f"embeds {embedded}, which {reason}" if reason else None
    for attribute, reason in (
        ("is_unspecified", "is unspecified"),
        ("is_loopback", "is loopback"),
        ("is_link_local", "is link-local"),
        ("is_multicast", "is multicast"),
        # Before is_private: Python counts 240.0.0.0/4 as private too, "reserved" says more.
        ("is_reserved", "is reserved"),
        ("is_private", "is private"),
    ):
        if getattr(address, attribute):
            return reason
    if not address.is_global:
        # Shared address space (100.64/10, carrier-grade NAT) and similar: not private, not global.
        return "is not a global address"
    return None


class UrlGuard:
    """Lets a URL through only if it is http(s) and every address of its host is global.

    ``allow`` lists exceptions: host names (``"localhost"``), IP addresses (``"127.0.0.1"``) and
    networks (``"10.0.0.0/8"``). An allowed host name is let through whatever it resolves to; an
    address is let through if it is in an allowed network.

        >>> guard = UrlGuard(allow=["127.0.0.1"])
        >>> guard.check("http://127.0.0.1:8000/hook", "webhookURL")   # allowed
        >>> UrlGuard().check("http://127.0.0.1/hook", "webhookURL")
        Traceback (most recent call last):
        ...
        farm.domain.errors.ForbiddenURLError: webhookURL: host 127.0.0.1 is loopback (not in the allow-list)

    ``resolver`` replaces ``socket.getaddrinfo`` (tests use it to fake DNS answers).
    """

    def __init__(self, allow: Sequence[str] = (), *, resolver: Resolver | None = None):
        if isinstance(allow, str):
            raise TypeError("allow must be a sequence of host names, IPs and CIDRs, not one string")
        self._allowed_hosts: set[str] = set()
        self._allowed_networks: list[IPNetwork] = []
        for entry in allow:
            entry = entry.strip()
            try:
                self._allowed_networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                self._allowed_hosts.add(entry.lower().rstrip("."))
        self._resolver = resolver or _system_resolver

    def resolve(self, url: str, field: str) -> list[str]:
        """Vet ``url`` and return the addresses its host resolves to, for the caller to pin.

        Connecting only to these addresses (not resolving the name again) is what closes the
        DNS-rebinding gap. Raises ``ForbiddenURLError`` naming ``field`` and the reason.
        """
        host, port = self._parse(url, field)
        literal = self._literal(host)
        if literal is not None:
            addresses = [str(literal)]
        else:
            try:
                addresses = self._resolver(host, port)
            except (OSError, UnicodeError) as error:
                raise ForbiddenURLError(f"{field}: host {host} does not resolve ({error})") from None
            if not addresses:
                raise ForbiddenURLError(f"{field}: host {host} does not resolve")
        if host in self._allowed_hosts:
            return addresses
        for text in addresses:
            address = ipaddress.ip_address(text)
            if any(address in network for network in self._allowed_networks):
                continue
            reason = _refusal(address)
            if reason is not None:
                shown = f"host {host}" if literal is not None else f"host {host} resolves to {address}, which"
                raise ForbiddenURLError(f"{field}: {shown} {reason} (not in the allow-list)")
        return addresses

    def check(self, url: str, field: str) -> None:
        """Raise ``ForbiddenURLError`` (naming ``field`` and the reason) unless ``url`` may be called."""
        self.resolve(url, field)

    async def resolve_async(self, url: str, field: str) -> list[str]:
        """``resolve`` in a worker thread, so a slow DNS answer does not block the event loop."""
        return await asyncio.to_thread(self.resolve, url, field)

    async def check_async(self, url: str, field: str) -> None:
        """``check`` in a worker thread, so a slow DNS answer does not block the event loop."""
        await self.resolve_async(url, field)

    def _parse(self, url: str, field: str) -> tuple[str, int]:
        if not isinstance(url, str) or not url:
            raise ForbiddenURLError(f"{field}: URL is empty")
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as error:
            raise ForbiddenURLError(f"{field}: URL is malformed ({error})") from None
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise ForbiddenURLError(f"{field}: scheme {scheme or '(none)'!r} is refused; use http or https")
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise ForbiddenURLError(f"{field}: URL has no host")
        return host, port or _DEFAULT_PORTS[scheme]

    @staticmethod
    def _literal(host: str) -> IPAddress | None:
        try:
            return ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return None
