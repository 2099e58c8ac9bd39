"""UrlGuard: which URLs the farm may call (webhooks, uploads, media inputs)."""

from __future__ import annotations

import asyncio
import doctest
import re

import pytest

import farm.io.urlguard
from farm.domain.errors import ForbiddenURLError, error_info
from farm.io.urlguard import UrlGuard


def fake_dns(table: dict[str, list[str]]):
    """A resolver answering from ``table``; unknown names fail like getaddrinfo does."""

    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError(f"[Errno -2] Name or service not known: {host}")
        return table[host]

    return resolve


@pytest.mark.parametrize(
    "url, reason",
    [
        ("http://127.0.0.1/hook", "loopback"),
        ("http://127.8.9.10:8080/hook", "loopback"),
        ("http://[::1]/hook", "loopback"),
        ("http://0.0.0.0/hook", "unspecified"),
        ("http://[::]/hook", "unspecified"),
        ("http://10.1.2.3/hook", "private"),
        ("http://172.16.0.1/hook", "private"),
        ("http://192.168.1.1/hook", "private"),
        ("http://[fd00::1]/hook", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[fe80::1]/hook", "link-local"),
        ("http://224.0.1.1/hook", "multicast"),
        ("http://240.0.0.1/hook", "reserved"),
        ("http://100.64.0.1/hook", "not a global address"),
        ("http://[::ffff:127.0.0.1]/hook", "embeds 127.0.0.1"),
        ("http://[::ffff:10.0.0.1]/hook", "embeds 10.0.0.1"),
        ("http://[64:ff9b::a00:1]/hook", "embeds 10.0.0.1"),
        ("http://[2002:7f00:1::]/hook", "embeds 127.0.0.1"),
    ],
)
def test_refuses_non_global_addresses(url, reason):
    with pytest.raises(ForbiddenURLError) as caught:
        UrlGuard().check(url, "webhookURL")
    message = str(caught.value)
    assert message.startswith("webhookURL: ")
    assert reason in message


def test_accepts_global_addresses_and_names():
    guard = UrlGuard(
        resolver=fake_dns({"hooks.example.com": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]})
    )
    guard.check("https://hooks.example.com/a?b=c", "webhookURL")
    guard.check("http://8.8.8.8:8080/x", "uploadEndpoint")
    guard.check("https://[2606:4700:4700::1111]/x", "uploadEndpoint")
    assert guard.resolve("https://hooks.example.com/", "webhookURL") == [
        "93.184.215.14",
        "2606:2800:21f:cb07:6820:80da:af6b:8b2c",
    ]


def test_a_name_with_one_private_address_is_refused():
    # Every answer counts: the HTTP client may pick any of them.
    guard = UrlGuard(resolver=fake_dns({"mixed.example.com": ["93.184.215.14", "10.0.0.7"]}))
    with pytest.raises(
        ForbiddenURLError, match=r"uploadEndpoint: host mixed.example.com resolves to 10.0.0.7, which is private"
    ):
        guard.check("https://mixed.example.com/put", "uploadEndpoint")


def test_refuses_other_schemes_and_broken_urls():
    guard = UrlGuard(resolver=fake_dns({}))
    for url, reason in [
        ("file:///etc/passwd", "scheme 'file'"),
        ("gopher://example.com/", "scheme 'gopher'"),
        ("ftp://8.8.8.8/", "scheme 'ftp'"),
        ("example.com/hook", "scheme '(none)'"),
        ("http:///nohost", "no host"),
        ("http://8.8.8.8:99999/", "malformed"),
        ("", "empty"),
        ("https://no-such-host.invalid/", "does not resolve"),
    ]:
        with pytest.raises(ForbiddenURLError, match=re.escape(reason)):
            guard.check(url, "mediaURL")


def test_localhost_name_is_resolved_and_refused():
    # Real getaddrinfo: "localhost" answers loopback addresses.
    with pytest.raises(ForbiddenURLError, match="host localhost resolves to .*, which is loopback"):
        UrlGuard().check("http://localhost:9/hook", "webhookURL")


def test_allow_list_by_ip_name_and_cidr():
    dns = fake_dns({"localhost": ["127.0.0.1", "::1"], "storage.internal": ["10.20.30.40"]})
    UrlGuard(["127.0.0.1"], resolver=dns).check("http://127.0.0.1:8000/hook", "webhookURL")
    UrlGuard(["::1"], resolver=dns).check("http://[::1]:8000/hook", "webhookURL")
    UrlGuard(["localhost"], resolver=dns).check("http://LOCALHOST:8000/hook", "webhookURL")
    UrlGuard(["10.0.0.0/8"], resolver=dns).check("http://storage.internal/put", "uploadEndpoint")
    UrlGuard(["storage.internal"], resolver=dns).check("http://storage.internal/put", "uploadEndpoint")
    # An allowed IP does not open its neighbours, nor the names that resolve to other addresses.
    with pytest.raises(ForbiddenURLError):
        UrlGuard(["127.0.0.1"], resolver=dns).check("http://127.0.0.2/", "webhookURL")
    with pytest.raises(ForbiddenURLError, match="::1"):
        UrlGuard(["127.0.0.1"], resolver=dns).check("http://localhost/", "webhookURL")
    with pytest.raises(ForbiddenURLError):
        UrlGuard(["10.0.0.0/8"], resolver=dns).check("http://192.168.0.1/", "webhookURL")


def test_allow_must_be_a_list():
    with pytest.raises(TypeError):
        UrlGuard("127.0.0.1")


def test_check_async_runs_the_same_rules():
    guard = UrlGuard(["127.0.0.1"])
    asyncio.run(guard.check_async("http://127.0.0.1:1/", "webhookURL"))
    assert asyncio.run(guard.resolve_async("http://127.0.0.1:1/", "webhookURL")) == ["127.0.0.1"]
    with pytest.raises(ForbiddenURLError):
        asyncio.run(UrlGuard().check_async("http://127.0.0.1:1/", "webhookURL"))


def test_refusal_maps_to_invalid_argument():
    with pytest.raises(ForbiddenURLError) as caught:
        UrlGuard().check("http://127.0.0.1/", "webhookURL")
    info = error_info(caught.value)
    assert (info.grpc_status, info.code, info.retryable) == ("INVALID_ARGUMENT", "forbiddenURL", False)


def test_docstring_examples():
    assert doctest.testmod(farm.io.urlguard).failed == 0
