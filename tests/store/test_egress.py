"""The upstream host policy on its own: which addresses are public, what an allow entry admits.

Only literal addresses and ``localhost`` (``/etc/hosts``) are resolved here: no test sends
anything anywhere. The policy in a real server is tested in ``tests/upstream/test_egress.py``.
"""

from __future__ import annotations

import ipaddress

import pytest
from packyard.store.egress import HostPolicy, HostRefused, is_public

NOT_PUBLIC = [
    "127.0.0.1",
    "127.255.0.9",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.0.1",
    "169.254.169.254",
    "100.64.0.1",
    "0.0.0.0",
    "224.0.0.1",
    "240.0.0.1",
    "255.255.255.255",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
]
PUBLIC = ["93.184.216.34", "151.101.0.223", "2a04:4e42::223", "::ffff:151.101.0.223"]


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_not_public(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


def test_default_policy_refuses_every_non_public_literal_and_localhost() -> None:
    policy = HostPolicy.parse("")
    for host in [*NOT_PUBLIC, "localhost"]:
        with pytest.raises(HostRefused):
            policy.resolve(host, 80)
    assert policy.resolve("93.184.216.34", 443) == [ipaddress.ip_address("93.184.216.34")]


def test_allow_entries_admit_networks_names_and_ports() -> None:
    policy = HostPolicy.parse("127.0.0.1:3141, 10.0.0.0/8, [::1]:8080, *.corp.example")
    assert policy.resolve("127.0.0.1", 3141)
    with pytest.raises(HostRefused):
        policy.resolve("127.0.0.1", 3142)
    assert policy.resolve("10.200.0.1", 80)
    assert policy.resolve("::ffff:10.0.0.1", 80)  # the IPv4 it carries is allowed
    assert policy.resolve("::1", 8080)
    with pytest.raises(HostRefused):
        policy.resolve("::1", 80)
    assert policy.admits("pypi.corp.example", ipaddress.ip_address("10.9.9.9"), 443)
    assert policy.admits("PYPI.Corp.Example.", ipaddress.ip_address("192.168.1.1"), 443)
    assert not policy.admits("corp.example.evil.com", ipaddress.ip_address("192.168.1.1"), 443)


@pytest.mark.parametrize("bad", ["127.0.0.1:http", "[::1", "[::1]x", ":80"])
def test_bad_allow_entries_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="PACKYARD_UPSTREAM_ALLOW_HOSTS"):
        HostPolicy.parse(bad)
