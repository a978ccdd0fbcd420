"""Parsing what other hosts write to etcd into typed values."""

import ipaddress

import pytest

from ovsgre.definitions import KEY_MAX
from ovsgre.cluster.records import (Malformed, parse_host,
                                    parse_key, parse_peer_ip, printable)
from ovsgre.dataplane.tunnels import build_flows

HOSTS = "/ovsgre/hosts/"


def test_printable_escapes_control_characters_and_bounds_length():
    assert printable("peer\x1b[31mred\n") == "peer\\x1b[31mred\\x0a"
    assert printable("a" * 500).endswith("…") and len(printable("a" * 500)) \
        == 81
    assert printable(["x"]) == "['x']"


@pytest.mark.parametrize("value", ["7", "7.5", 7.5, True, False, 0, -1,
                                   KEY_MAX + 1, None, [7],
                                   "7,actions=drop\n#"])
def test_bad_keys_are_malformed(value):
    with pytest.raises(Malformed) as err:
        parse_key(value)
    assert str(err.value).isprintable()


def test_good_key():
    assert parse_key(7) == 7 and parse_key(KEY_MAX) == KEY_MAX


@pytest.mark.parametrize("value", [
    "peer-a", "-f", "198.18.0.1,198.18.0.2", "198.18.0.1\nforged line",
    ["198.18.0.1"], 3323068417, None, "", "0.0.0.0", "127.0.0.1",
    "224.0.0.5", "255.255.255.255", "169.254.1.1", "2001:db8::1",
])
def test_bad_peer_addresses_are_malformed(value):
    with pytest.raises(Malformed) as err:
        parse_peer_ip(value)
    assert str(err.value).isprintable()


def test_host_record_parses_to_typed_values():
    host = parse_host(HOSTS + "198.18.0.2",
                      {"ip": "198.18.0.2", "hostname": "h\x1b]0;pwned\x07",
                       "version": "1.0"}, HOSTS)
    assert host.ip == ipaddress.IPv4Address("198.18.0.2")
    assert host.hostname == "h\\x1b]0;pwned\\x07"


def test_host_record_must_match_its_key():
    with pytest.raises(Malformed):
        parse_host(HOSTS + "198.18.0.3", {"ip": "198.18.0.2"}, HOSTS)
    with pytest.raises(Malformed):
        parse_host(HOSTS + "198.18.0.2", "198.18.0.2", HOSTS)


def test_flow_table_leaves_out_what_is_not_an_integer_in_range():
    flows = build_flows(1, {"198.18.0.2": 2}, {
        10: 5, 11: "7,actions=drop", 12: 7.5, 13: True, 4095: 9, 14: 0})
    import re
    text = "\n".join(flows)
    assert re.findall(r"tun_id=(\S+?),", text) == ["5"]
    assert re.findall(r"dl_vlan=(\d+)", text) == ["10"]
    assert "7.5" not in text and "actions=drop\ntable=0,priority=100" not in text
    assert len(text.splitlines()) == len(flows)
