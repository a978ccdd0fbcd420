"""`ovsgre trace`'s reading of ofproto/trace: the texts below are what
ovs-vswitchd 3.1 printed for ovsgre's bridges (integration bridge with
NORMAL, tunnel bridge with build_flows' table), shortened only in the
Flow/Megaflow lines."""

import pytest

from ovsgre.cli import main
from ovsgre.definitions import PATCH_INT, PATCH_TUN, PEER_KEY
from ovsgre.tracing import (Host, Local, Packet, from_container,
                            from_tunnel, outputs, parse_trace, tunnel_key)

PEER = "198.18.0.2"
FLOODED_TO_TUNNEL = """\
Flow: icmp,in_port=1,vlan_tci=0x0000,dl_src=02:42:c6:12:3c:02

bridge("br-ovsgre")
-------------------
 0. priority 0
    NORMAL
     -> no learned MAC for destination, flooding

bridge("br-ovsgre-tun")
-----------------------
 0. in_port=1, priority 1
    goto_table:1
 1. dl_dst=00:00:00:00:00:00/01:00:00:00:00:00, priority 1
    goto_table:2
 2. priority 0
    goto_table:4
 4. dl_vlan=1, priority 1
    pop_vlan
    set_field:0x1092->tun_id
    output:2
     -> output to native tunnel
     >> native tunnel routing failed

Final flow: unchanged
Megaflow: recirc_id=0,eth,ip,in_port=1
Datapath actions: push_vlan(vid=1,pcp=0),1,pop_vlan
"""
# the same frame on a VLAN the tunnel table has no flow for
NO_TUNNEL_FLOW = FLOODED_TO_TUNNEL.replace(""" 4. dl_vlan=1, priority 1
    pop_vlan
    set_field:0x1092->tun_id
    output:2
     -> output to native tunnel
     >> native tunnel routing failed
""", """ 4. priority 0
    drop
""")
FROM_TUNNEL = """\
Flow: icmp,tun_src=198.18.0.2,tun_dst=198.18.0.1,in_port=2

bridge("br-ovsgre-tun")
-----------------------
 0. in_port=2, priority 1
    goto_table:3
 3. tun_id=0x1092, priority 1
    push_vlan:0x8100
    set_field:4097->vlan_vid
    learn(table=2,hard_timeout=300,priority=1,NXM_OF_VLAN_TCI[0..11],\
NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],\
load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:OXM_OF_IN_PORT[])
     >> suppressing side effects, so learn action ignored
    output:1

bridge("br-ovsgre")
-------------------
 0. priority 0
    NORMAL
     -> no learned MAC for destination, flooding

Final flow: icmp,tun_src=198.18.0.2,in_port=2,dl_vlan=1
Megaflow: recirc_id=0,eth,ip,tun_id=0x1092,in_port=2
Datapath actions: push_vlan(vid=1,pcp=0),1,pop_vlan,3
"""
LEARNED = """\
bridge("br-ovsgre")
-------------------
 0. priority 0
    NORMAL
     -> forwarding to learned port

Final flow: unchanged
Datapath actions: 4
"""
UNKNOWN_KEY = """\
bridge("br-ovsgre-tun")
-----------------------
 0. in_port=2, priority 1
    goto_table:3
 3. priority 0
    drop

Final flow: unchanged
Datapath actions: drop
"""
TO_PEER = FLOODED_TO_TUNNEL.replace(
    "     -> output to native tunnel\n     >> native tunnel routing failed\n",
    "     -> output to native tunnel\n")

PACKET = Packet("02:42:c6:12:3c:02", "02:42:c6:12:3c:03", "198.18.60.2",
                "198.18.60.3")


def host(underlay_mtu=1500, gre=True, patch_error=None):
    ports = {"ovgha": {"ofport": 1, "error": None, "external_ids": {}},
             "ovghb": {"ofport": 2, "error": patch_error,
                       "external_ids": {}},
             PATCH_TUN: {"ofport": 3, "error": None, "external_ids": {}},
             PATCH_INT: {"ofport": 1, "error": None, "external_ids": {}}}
    tun = {1: PATCH_INT}
    if gre:
        ports["gre-c6120002"] = {"ofport": 2, "error": None,
                                 "external_ids": {PEER_KEY: PEER}}
        tun[2] = "gre-c6120002"
    return Host("br-ovsgre", "br-ovsgre-tun",
                {"br-ovsgre": {1: "ovgha", 2: "ovghb", 3: PATCH_TUN},
                 "br-ovsgre-tun": tun}, ports, underlay_mtu)


def test_steps_tables_actions_and_notes():
    steps, datapath = parse_trace(FLOODED_TO_TUNNEL)
    assert [(s.bridge, s.table) for s in steps] == [
        ("br-ovsgre", 0), ("br-ovsgre-tun", 0), ("br-ovsgre-tun", 1),
        ("br-ovsgre-tun", 2), ("br-ovsgre-tun", 4)]
    assert steps[0].notes == ["no learned MAC for destination, flooding"]
    assert steps[4].match == "dl_vlan=1"
    assert outputs(steps, "br-ovsgre-tun") == [2]
    assert tunnel_key(steps, "br-ovsgre-tun") == 4242
    assert datapath == "push_vlan(vid=1,pcp=0),1,pop_vlan"


def test_unknown_mac_flooded_to_the_peer_with_the_key():
    steps, _ = parse_trace(TO_PEER)
    got = from_container(PACKET, host(), steps, None, Local({}, 0))
    assert got.outcome == "flooded" and got.cause == "MAC unknown"
    assert got.peers == [PEER] and got.key == 4242
    assert "MAC 02:42:c6:12:3c:03 is unknown" in got.line
    assert f"flooded to {PEER} with GRE key 4242" in got.line


def test_known_mac_sent_to_the_peer():
    steps, _ = parse_trace(TO_PEER.replace(
        "no learned MAC for destination, flooding",
        "forwarding to learned port"))
    got = from_container(PACKET, host(), steps, 3, Local({}, 0))
    assert got.outcome == "tunnel"
    assert got.line == f"sent to peer {PEER} with GRE key 4242"


def test_no_route_over_the_underlay():
    steps, _ = parse_trace(FLOODED_TO_TUNNEL)
    got = from_container(PACKET, host(), steps, None, Local({}, 0))
    assert got.outcome == "dropped" and got.cause == "no route to the peer"
    assert PEER in got.line


def test_no_tunnel_flow_for_the_network():
    steps, _ = parse_trace(NO_TUNNEL_FLOW)
    got = from_container(PACKET, host(), steps, None, Local({}, 0))
    assert got.outcome == "dropped"
    assert got.cause == "no tunnel for the network"
    local = from_container(PACKET, host(), steps, None, Local({}, 2))
    assert local.outcome == "flooded" and "2 other container" in local.line


def test_flow_to_a_port_that_is_no_tunnel():
    steps, _ = parse_trace(TO_PEER)
    got = from_container(PACKET, host(gre=False), steps, None, Local({}, 0))
    assert got.outcome == "dropped" and got.cause == "no tunnel to the peer"
    assert "OpenFlow port 2 of br-ovsgre-tun" in got.line


def test_mtu_of_the_underlay():
    steps, _ = parse_trace(TO_PEER)
    big = Packet(*[getattr(PACKET, f) for f in
                   ("src_mac", "dst_mac", "src_ip", "dst_ip")], size=1458)
    got = from_container(big, host(underlay_mtu=1400), steps, None,
                         Local({}, 0))
    assert got.outcome == "dropped" and got.cause == "MTU"
    assert "1500 bytes in GRE, more than the underlay's MTU 1400" in got.line
    assert "to 1358" in got.line


def test_delivered_here_or_port_down():
    steps, _ = parse_trace(LEARNED)
    local = Local({"ovghb": "web"}, 1)
    got = from_container(PACKET, host(), steps, 2, local)
    assert got.outcome == "delivered"
    assert got.line == "delivered on this host to container web (port ovghb)"
    down = from_container(PACKET, host(patch_error="could not open"), steps,
                          2, local)
    assert down.outcome == "dropped" and down.cause == "port down"
    assert "could not open" in down.line and "web" in down.line
    gone = host()
    gone.ports["ovghb"]["link_state"] = "down"
    down = from_container(PACKET, gone, steps, 2, local)
    assert down.cause == "port down" and "ovghb is down" in down.line


def test_from_tunnel_key_known_or_not():
    steps, _ = parse_trace(FROM_TUNNEL)
    assert from_tunnel(PACKET, host(), steps, None, Local({}, 1), 4242,
                       PEER).outcome == "flooded"
    assert from_tunnel(PACKET, host(), steps, None, Local({}, 0), 4242,
                       PEER).cause == "MAC unknown"
    steps, _ = parse_trace(FROM_TUNNEL.replace(
        "no learned MAC for destination, flooding",
        "forwarding to learned port"))
    got = from_tunnel(PACKET, host(), steps, 1, Local({"ovgha": "a"}, 1),
                      4242, PEER)
    assert got.line == "delivered on this host to container a (port ovgha)"
    steps, _ = parse_trace(UNKNOWN_KEY)
    got = from_tunnel(PACKET, host(), steps, None, Local({}, 0), 77, PEER)
    assert got.cause == "wrong network" and "GRE key 77" in got.line


def test_packet_flow_text():
    tcp = Packet("02:00:00:00:00:01", "02:00:00:00:00:02", "198.18.0.5",
                 "198.18.0.6", "tcp", 8080)
    assert tcp.flow("ovghx") == (
        "in_port=ovghx,tcp,dl_src=02:00:00:00:00:01,dl_dst=02:00:00:00:00:02,"
        "nw_src=198.18.0.5,nw_dst=198.18.0.6,nw_ttl=64,tp_dst=8080")
    assert PACKET.flow("gre-1", "tun_id=5").startswith(
        "in_port=gre-1,tun_id=5,icmp,")


@pytest.mark.parametrize("argv,reason", [
    (["web", "198.19.0.3", "--size", "20"], "--size 20: an IP packet"),
    (["web", "198.19.0.3", "--port", "80"], "with --proto tcp or udp"),
    (["web", "198.19.0.3", "--proto", "tcp", "--port", "70000"],
     "a port from 1 to 65535"),
    (["web", "198.19.0.3", "--dst-mac", "02:00:00:00:00"],
     "is not a MAC address"),
    (["198.19.0.2", "198.19.0.3", "--from-tunnel", "0", "--peer",
      "198.18.0.1", "--src-mac", "02:00:00:00:00:01"], "a GRE key is"),
])
def test_what_cannot_be_a_packet_is_refused(argv, reason, capsys,
                                            tmp_path):
    code = main(["trace", *argv, "--state-dir", str(tmp_path),
                 "--docker-host", "unix:///nonexistent.sock"])
    assert code == 2
    assert reason in capsys.readouterr().err


def test_ovsdb_out_of_reach_is_a_clear_error(capsys, tmp_path):
    code = main(["trace", "web", "198.19.0.3", "--state-dir",
                 str(tmp_path), "--ovsdb", f"unix:{tmp_path}/none.sock",
                 "--timeout", "1"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("ovsgre trace: ") and "OVSDB" in err, err
