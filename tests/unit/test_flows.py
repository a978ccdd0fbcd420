"""The tunnel bridge's flow table (build_flows) and tunnel port names.

The table must send what comes from the integration bridge to every
tunnel once, and what comes from a tunnel only to the integration bridge
(split horizon: a full mesh stays loop-free).
"""

import re

import pytest

from ovsgre.dataplane.tunnels import (LEARN, MULTICAST, UNICAST, build_flows,
                                      tunnel_port_name)

PATCH = 1
TUNNELS = {"192.0.2.12": 7, "192.0.2.11": 5, "192.0.2.13": 9}
NETWORKS = {3: 4242, 1: 100, 2: 7}


def parse(flow):
    """'table=3,priority=1,tun_id=7,actions=...' -> (match dict, actions)."""
    match, actions = flow.split(",actions=", 1)
    fields = dict(part.split("=", 1) for part in match.split(","))
    return fields, actions


def split_actions(actions):
    """Top-level actions; a learn(...) stays one item."""
    out, depth, cur = [], 0, ""
    for ch in actions:
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        cur += ch
    out.append(cur)
    return out


def outputs(actions):
    """Ports a flow outputs to itself (not those of learned flows)."""
    return [int(a.split(":", 1)[1]) for a in split_actions(actions)
            if re.fullmatch(r"output:\d+", a)]


def flows_of(flows, table, **match):
    found = []
    for f in flows:
        fields, actions = parse(f)
        if fields["table"] != str(table):
            continue
        if all(fields.get(k) == str(v) for k, v in match.items()):
            found.append((fields, actions))
    return found


@pytest.fixture
def flows():
    return build_flows(PATCH, TUNNELS, NETWORKS)


def test_table0_classifies_by_in_port(flows):
    table0 = flows_of(flows, 0)
    assert ({"table": "0", "priority": "1", "in_port": "1"},
            "goto_table:1") in table0
    for port in TUNNELS.values():
        assert ({"table": "0", "priority": "1", "in_port": str(port)},
                "goto_table:3") in table0
    assert ({"table": "0", "priority": "0"}, "drop") in table0
    assert len(table0) == 1 + len(TUNNELS) + 1


def test_static_tables(flows):
    assert flows_of(flows, 1) == [
        ({"table": "1", "priority": "1", "dl_dst": UNICAST}, "goto_table:2"),
        ({"table": "1", "priority": "1", "dl_dst": MULTICAST},
         "goto_table:4"),
        ({"table": "1", "priority": "0"}, "drop")]
    assert flows_of(flows, 2) == [({"table": "2", "priority": "0"},
                                   "goto_table:4")]
    assert ({"table": "3", "priority": "0"}, "drop") in flows_of(flows, 3)
    assert ({"table": "4", "priority": "0"}, "drop") in flows_of(flows, 4)


def test_from_tunnel_split_horizon(flows):
    table3 = flows_of(flows, 3, priority=1)
    assert len(table3) == len(NETWORKS)
    for vlan, key in NETWORKS.items():
        (fields, actions), = flows_of(flows, 3, priority=1, tun_id=key)
        acts = split_actions(actions)
        assert acts[0] == f"mod_vlan_vid:{vlan}"
        assert LEARN in acts
        assert acts.index(f"mod_vlan_vid:{vlan}") < acts.index(LEARN)
        # only to the integration bridge, never back into a tunnel
        assert outputs(actions) == [PATCH]
        assert acts[-1] == f"output:{PATCH}"
        assert not set(outputs(actions)) & set(TUNNELS.values())
        assert "in_port" not in fields


def test_learn_action_learns_per_vlan_and_mac():
    assert LEARN.startswith("learn(table=2,")
    for part in ("NXM_OF_VLAN_TCI[0..11]",
                 "NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[]",
                 "load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[]",
                 "output:OXM_OF_IN_PORT[]"):
        assert part in LEARN
    assert LEARN.count("(") == LEARN.count(")") == 1


def test_to_tunnels_floods_each_tunnel_once(flows):
    table4 = flows_of(flows, 4, priority=1)
    assert len(table4) == len(NETWORKS)
    for vlan, key in NETWORKS.items():
        (fields, actions), = flows_of(flows, 4, priority=1, dl_vlan=vlan)
        acts = split_actions(actions)
        assert acts[:2] == ["strip_vlan", f"set_field:{key}->tun_id"]
        outs = outputs(actions)
        assert sorted(outs) == sorted(TUNNELS.values())
        assert len(outs) == len(set(outs))
        assert PATCH not in outs          # never back to the sender


def test_no_flood_flows_without_peers():
    flows = build_flows(PATCH, {}, NETWORKS)
    assert flows_of(flows, 4, priority=1) == []
    assert flows_of(flows, 0, priority=1) == [
        ({"table": "0", "priority": "1", "in_port": "1"}, "goto_table:1")]
    # arriving traffic is still mapped (a peer may come back any moment)
    assert len(flows_of(flows, 3, priority=1)) == len(NETWORKS)
    assert ({"table": "4", "priority": "0"}, "drop") in flows_of(flows, 4)


def test_no_network_flows_without_networks():
    flows = build_flows(PATCH, TUNNELS, {})
    assert flows_of(flows, 3, priority=1) == []
    assert flows_of(flows, 4, priority=1) == []
    assert len(flows_of(flows, 0, priority=1)) == 1 + len(TUNNELS)


def test_every_flow_has_table_priority_actions(flows):
    for flow in flows:
        fields, actions = parse(flow)
        assert fields["table"] in {"0", "1", "2", "3", "4"}
        assert fields["priority"] in {"0", "1"}
        assert actions
    assert len(flows) == len(set(flows))


def test_exact_table_small_case():
    assert build_flows(3, {"192.0.2.2": 10}, {5: 77}) == [
        "table=0,priority=1,in_port=3,actions=goto_table:1",
        "table=0,priority=1,in_port=10,actions=goto_table:3",
        "table=0,priority=0,actions=drop",
        f"table=1,priority=1,dl_dst={UNICAST},actions=goto_table:2",
        f"table=1,priority=1,dl_dst={MULTICAST},actions=goto_table:4",
        "table=1,priority=0,actions=drop",
        "table=2,priority=0,actions=goto_table:4",
        "table=3,priority=0,actions=drop",
        "table=4,priority=0,actions=drop",
        f"table=3,priority=1,tun_id=77,actions=mod_vlan_vid:5,{LEARN},"
        "output:3",
        "table=4,priority=1,dl_vlan=5,actions=strip_vlan,"
        "set_field:77->tun_id,output:10",
    ]


def test_deterministic_regardless_of_dict_order(flows):
    again = build_flows(PATCH, dict(reversed(list(TUNNELS.items()))),
                        dict(sorted(NETWORKS.items())))
    assert again == flows
    assert build_flows(PATCH, TUNNELS, NETWORKS) == flows


def test_mask_constants():
    assert UNICAST == "00:00:00:00:00:00/01:00:00:00:00:00"
    assert MULTICAST == "01:00:00:00:00:00/01:00:00:00:00:00"


# -- tunnel port names ------------------------------------------------------

@pytest.mark.parametrize("ip", ["192.0.2.1", "10.0.0.1", "255.255.255.255",
                                "1.2.3.4"])
def test_tunnel_port_name_fits_ifnamsiz(ip):
    name = tunnel_port_name(ip)
    assert len(name) <= 15
    assert re.fullmatch(r"gre-[0-9a-f]{8}", name)
    assert tunnel_port_name(ip) == name


def test_tunnel_port_names_distinct():
    ips = [f"10.{a}.{b}.{c}" for a in (0, 1, 255) for b in (0, 1, 2)
           for c in range(256)]
    names = {tunnel_port_name(ip) for ip in ips}
    assert len(names) == len(ips)
    assert tunnel_port_name("192.0.2.1") == "gre-c0000201"


def test_tunnel_port_name_rejects_non_ipv4():
    with pytest.raises(ValueError):
        tunnel_port_name("fd00::1")
    with pytest.raises(ValueError):
        tunnel_port_name("not-an-ip")


def test_announce_frame_is_a_rarp_broadcast_from_the_mac():
    from ovsgre.dataplane.tunnels import announce_frame
    frame = bytes.fromhex(announce_frame("02:42:c6:13:c8:05"))
    mac = bytes.fromhex("0242c613c805")
    assert len(frame) == 60                      # minimum Ethernet frame
    assert frame[:6] == b"\xff" * 6 and frame[6:12] == mac
    assert frame[12:14] == b"\x80\x35"           # RARP: receivers ignore it
    assert frame[14:22] == bytes.fromhex("0001080006040003")
    assert frame[22:28] == mac and frame[32:38] == mac


class _PortsOnly:
    """Just enough OVSDB for Tunnels.announce: port name -> ofport."""

    def __init__(self, ofports):
        self.ofports = ofports
        self.lookups = 0

    def port(self, name):
        self.lookups += 1
        if name not in self.ofports:
            return None
        return {"ofport": self.ofports[name], "tag": 1, "external_ids": {}}


@pytest.mark.parametrize("ofport", [None, -1, 0])
def test_announce_skips_a_port_vswitchd_has_not_taken(monkeypatch, ofport):
    """The tunnel sync thread sends announcements; it must never sit waiting
    for a port (a short-lived container's port may already be gone)."""
    from ovsgre.dataplane.tunnels import Tunnels
    sent = []
    tun = Tunnels(_PortsOnly({"ovgha": ofport}), "br-int", "br-tun",
                  "netdev", "198.18.0.1", "/run/x")
    monkeypatch.setattr(Tunnels, "_ofctl",
                        staticmethod(lambda args, stdin=None: sent.append(
                            args)))
    import time
    start = time.monotonic()
    assert tun.announce("ovgha", "02:00:00:00:00:01") is False
    assert tun.announce("gone", "02:00:00:00:00:01") is False
    assert time.monotonic() - start < 0.1 and sent == []


def test_announce_sends_packet_out_through_normal(monkeypatch):
    from ovsgre.dataplane.tunnels import Tunnels, announce_frame
    sent = []
    tun = Tunnels(_PortsOnly({"ovgha": 7}), "br-int", "br-tun", "netdev",
                  "198.18.0.1", "/run/x")
    monkeypatch.setattr(Tunnels, "_ofctl",
                        staticmethod(lambda args, stdin=None: sent.append(
                            args)))
    assert tun.announce("ovgha", "02:00:00:00:00:01") is True
    assert sent == [["packet-out", "unix:/run/x/br-int.mgmt", "7", "NORMAL",
                     announce_frame("02:00:00:00:00:01")]]


# -- Tunnels.sync ----------------------------------------------------------

class _TunnelOvsdb:
    """OVSDB stand-in for Tunnels.sync: bridges, patch and tunnel ports."""

    def __init__(self):
        self.ports = {"ovgp-int": {"ofport": 1, "external_ids": {}}}
        self.added, self.deleted = [], []
        self._next = 10

    def ensure_tunnel_bridge(self, name, datapath):
        pass

    def ensure_patch(self, bridge, port, peer, ids):
        pass

    def ensure_flow_limit(self, bridge, table, limit, groups):
        self.flow_limit = (bridge, table, limit, groups)

    def ports_with(self, bridge, key, value):
        return {n: p for n, p in self.ports.items()
                if p["external_ids"].get(key) == value}

    def add_tunnel(self, bridge, port, remote_ip, local_ip, ids):
        self.added.append((port, remote_ip, local_ip))
        self._next += 1
        old = self.ports.get(port, {}).get("ofport")
        self.ports[port] = {"ofport": old or self._next,
                            "external_ids": dict(ids)}

    def del_port(self, port, bridge=None, wait=False):
        self.deleted.append(port)
        self.ports.pop(port)

    def port(self, name):
        return self.ports.get(name)


@pytest.fixture
def tunnels(monkeypatch):
    from ovsgre.dataplane.tunnels import Tunnels
    calls = []
    monkeypatch.setattr(Tunnels, "_ofctl", staticmethod(
        lambda args, stdin=None: calls.append((args, stdin)) or ""))
    tun = Tunnels(_TunnelOvsdb(), "br-int", "br-tun", "netdev",
                  "198.18.0.1", "/run/x")
    return tun, calls


def test_sync_one_port_per_peer_whatever_the_networks(tunnels):
    tun, calls = tunnels
    peers = ["198.18.0.2", "198.18.0.3"]
    assert tun.sync(peers, {1: 100, 2: 200, 3: 300}) == 2
    gre = tun.ovsdb.ports_with("br-tun", "ovsgre_role", "tunnel")
    assert sorted(p["external_ids"]["ovsgre_peer"] for p in gre.values()) \
        == peers
    # the table goes in whole, atomically, in one bundle (then the tunnels
    # are primed, see test_sync_primes_every_tunnel_when_the_table_changes)
    replaced = [c for c in calls if c[0][0] != "packet-out"]
    ((args, table),) = replaced
    assert args == ["-O", "OpenFlow14", "--bundle", "replace-flows",
                    "unix:/run/x/br-tun.mgmt", "-"]
    lines = table.splitlines()
    assert all(line.startswith("cookie=0x6f7667,") for line in lines)
    assert sum("tun_id=" in line and "mod_vlan_vid" in line
               for line in lines) == 3
    # nothing changed: no port touched, no flows replaced
    tun.sync(peers, {1: 100, 2: 200, 3: 300})
    assert len(tun.ovsdb.added) == 2 and len(calls) == 2
    # a peer goes: its port and its output go
    tun.sync(peers[:1], {1: 100, 2: 200, 3: 300})
    assert tun.ovsdb.deleted == [next(n for n, p in gre.items() if
                                      p["external_ids"]["ovsgre_peer"] ==
                                      peers[1])]
    assert len(calls) == 4


def test_sync_resets_tunnels_when_the_local_ip_changes(tunnels):
    tun, _ = tunnels
    tun.sync(["198.18.0.2"], {1: 100})
    assert tun.ovsdb.added == [("gre-c6120002", "198.18.0.2", "198.18.0.1")]
    tun.local_ip = "198.18.0.9"                    # --local-ip changed
    tun.sync(["198.18.0.2"], {1: 100})
    assert tun.ovsdb.added[-1] == ("gre-c6120002", "198.18.0.2",
                                   "198.18.0.9")
    assert len(tun.ovsdb.added) == 2


def test_sync_primes_every_tunnel_when_the_table_changes(tunnels):
    """Userspace datapath: the first packet to a peer whose underlay MAC
    vswitchd does not know yet is dropped; a throwaway frame under key 0
    goes first."""
    from ovsgre.dataplane.tunnels import PRIME_FRAME
    tun, calls = tunnels
    tun.sync(["198.18.0.2", "198.18.0.3"], {1: 100})
    prime = [args for args, _ in calls if args[0] == "packet-out"]
    ofports = sorted(p["ofport"] for p in tun.ovsdb.ports_with(
        "br-tun", "ovsgre_role", "tunnel").values())
    assert prime == [["packet-out", "unix:/run/x/br-tun.mgmt", "CONTROLLER",
                      "load:0->NXM_NX_TUN_ID[],"
                      + ",".join(f"output:{p}" for p in ofports),
                      PRIME_FRAME]]
    frame = bytes.fromhex(PRIME_FRAME)
    assert len(frame) == 60 and frame[:6] == b"\xff" * 6
    assert frame[12:14] == b"\x88\xb5"
    calls.clear()
    tun.sync(["198.18.0.2", "198.18.0.3"], {1: 100})   # nothing changed
    assert calls == []
    tun.prime()                                        # the periodic one
    assert [args[0] for args, _ in calls] == ["packet-out"]


def test_kernel_datapath_needs_no_priming(monkeypatch):
    from ovsgre.dataplane.tunnels import Tunnels
    calls = []
    monkeypatch.setattr(Tunnels, "_ofctl", staticmethod(
        lambda args, stdin=None: calls.append(args) or ""))
    tun = Tunnels(_TunnelOvsdb(), "br-int", "br-tun", "system",
                  "198.18.0.1", "/run/x")
    tun.sync(["198.18.0.2"], {1: 100})
    assert [args[0] for args in calls] == ["-O"]     # the table only
