"""`ovsgre doctor`: each check's logic on a fake host (see test_status.py
for World and FakeProbe), the order of checks, the text and JSON output and
the exit status."""

import argparse
import io
import json

import pytest

from ovsgre.hoststate import cluster, command, vswitchd
from ovsgre.hoststate import collect as collection
from ovsgre.hoststate import probe as hostprobe
from ovsgre.commands import doctor

from .test_status import (CTR, EP, GRE, HOST_IF, LOCAL, MTU, NET, PEER,
                          PEER_IF, VLAN, FakeProbe, World, observe_world,
                          settings)

ORDER = ["ovs", "bridge", "endpoints", "underlay", "tunnels", "flows",
         "stale", "store"]


def results(world, s=None):
    return {r["name"]: r for r in doctor.diagnose(
        observe_world(world, s, deep=True))}


def run(world, s=None, json_out=False):
    s = s or settings(world.multi_host, world.datapath)
    out = io.StringIO()
    args = argparse.Namespace(json=json_out, timeout=1.0)
    rc = doctor.run(s, args, probe=FakeProbe(world, s), out=out)
    return rc, out.getvalue()


def only_finding(world, check, s=None):
    """The single finding of `check`; every other check must be clean."""
    got = results(world, s)
    failing = {n: r["findings"] for n, r in got.items() if r["findings"]}
    assert list(failing) == [check], failing
    (item,) = failing[check]
    assert got[check]["status"] == "fail"
    return item


# ----------------------------------------------------------------- healthy

def test_healthy_multi_host_passes_every_check_in_order():
    got = doctor.diagnose(observe_world(World(), deep=True))
    assert [r["name"] for r in got] == ORDER
    assert {r["name"]: r["status"] for r in got} == dict.fromkeys(ORDER,
                                                                  "ok")
    rc, text = run(World())
    assert rc == 0
    assert text.splitlines()[-1] == "all checks passed"
    assert "ok    flows      br-ovsgre-tun: 11 flows as computed" in text


def test_healthy_single_host_skips_the_cluster_checks():
    got = results(World(multi_host=False))
    assert {n: r["status"] for n, r in got.items()} == {
        "ovs": "ok", "bridge": "ok", "endpoints": "ok", "underlay": "skip",
        "tunnels": "skip", "flows": "skip", "stale": "ok", "store": "ok"}
    assert got["tunnels"]["summary"] == "single host"
    assert run(World(multi_host=False))[0] == 0


def test_json_report():
    world = World()
    world.ports[HOST_IF]["tag"] = 9
    rc, out = run(world, json_out=True)
    assert rc == 1
    report = json.loads(out)
    assert set(report) == {"ok", "problems", "not_checked", "checks"}
    assert report["ok"] is False and report["problems"] == 1
    assert report["not_checked"] == 0
    assert [c["name"] for c in report["checks"]] == ORDER
    for check in report["checks"]:
        assert set(check) == {"name", "status", "summary", "findings",
                              "notes", "not_checked"}
    (item,) = report["checks"][2]["findings"]
    assert set(item) == {"subject", "problem", "fix"}
    assert item["fix"].endswith(f"ovs-vsctl set port {HOST_IF} tag={VLAN}")


def test_text_report_names_the_problem_and_the_fix():
    world = World()
    world.links[HOST_IF]["mtu"] = 1300
    rc, text = run(world)
    assert rc == 1
    lines = text.splitlines()
    assert lines[0] == ("ovsgre doctor: bridge br-ovsgre, datapath netdev, "
                        f"etcd, tunnel IP {LOCAL}")
    assert "FAIL  endpoints  1 problem" in lines
    i = lines.index("FAIL  endpoints  1 problem")
    assert lines[i + 1] == (f"      {HOST_IF}: MTU 1300 on the host veth of "
                            f"endpoint {EP[:12]} (web), recorded {MTU}")
    assert lines[i + 2] == f"        fix: run: ip link set {HOST_IF} mtu {MTU}"
    assert lines[-1] == "1 problem found"


# --------------------------------------------------------------------- ovs

def test_ovsdb_unreachable():
    world = World()
    world.fail["ovsdb"] = "cannot reach OVSDB at unix:/x: refused"
    got = results(world)
    (item,) = got["ovs"]["findings"]
    assert item["subject"] == "ovsdb-server" and "refused" in item["problem"]
    assert "openvswitch-switch" in item["fix"] and "--ovsdb" in item["fix"]
    for name in ("bridge", "tunnels", "flows"):
        assert got[name]["status"] == "error", got[name]
        assert got[name]["not_checked"] == ["OVSDB unreachable"]
    assert got["stale"]["not_checked"] == ["OVS ports: OVSDB unreachable"]
    assert got["stale"]["summary"] == "no orphan links"
    # what needs OVSDB is not passed silently in the other checks either
    assert got["endpoints"]["not_checked"] == [
        "OVS ports (tag, ofport): OVSDB unreachable"]
    assert got["underlay"]["not_checked"] == [
        "whether br-phy is an OVS bridge port: OVSDB unreachable"]
    assert not any(r["status"] == "ok" for n, r in got.items()
                   if n not in ("store",)), got
    assert run(world)[0] == 1   # a problem found beats "not checked"


def test_vswitchd_not_answering():
    world = World()
    world.fail["vswitchd"] = "ovs-vswitchd does not answer: x.ctl: refused"
    world.fail["dump_flows"] = "ovs-ofctl dump-flows: connection refused"
    got = results(world)
    (item,) = got["ovs"]["findings"]
    assert item["subject"] == "ovs-vswitchd"
    assert "ovs-ctl" in item["fix"] and "--ovs-rundir" in item["fix"]
    assert got["flows"]["status"] == "error"
    assert got["flows"]["summary"] == "not checked: ovs-vswitchd down"


# ------------------------------------------------------------------ bridge

def test_integration_bridge_missing():
    world = World(multi_host=False)
    del world.bridges["br-ovsgre"]
    got = results(world)
    (item,) = got["bridge"]["findings"]
    assert item["subject"] == "br-ovsgre" and "missing" in item["problem"]
    assert "restart the plugin" in item["fix"]
    assert "datapath_type=netdev" in item["fix"]
    (stale,) = got["stale"]["findings"]   # its endpoint lost the port
    assert stale["subject"] == HOST_IF
    assert "re-adds the port" in stale["fix"]


def test_bridge_with_another_datapath():
    world = World(multi_host=False)
    world.module = "loaded"   # else the next test's finding
    world.bridges["br-ovsgre"]["datapath_type"] = "system"
    item = only_finding(world, "bridge")
    assert "datapath_type is system, the plugin uses netdev" in \
        item["problem"]
    assert "ovs-vsctl set bridge br-ovsgre datapath_type=netdev" in \
        item["fix"]


def test_kernel_datapath_without_the_module():
    for module, load in (("absent", False), ("available", True)):
        world = World(multi_host=False)
        world.module = module
        world.bridges["br-ovsgre"]["datapath_type"] = "system"
        item = only_finding(world, "bridge")
        assert item["subject"] == "br-ovsgre"
        assert "openvswitch kernel module is not loaded" in item["problem"]
        assert item["fix"].startswith(
            "run: ovs-vsctl set bridge br-ovsgre datapath_type=netdev")
        assert ("modprobe openvswitch" in item["fix"]) is load
    world = World(multi_host=False, datapath="system")
    world.module = "builtin"
    assert not results(world)["bridge"]["findings"]


def kernel_world(lost, started=300.0):
    world = World(multi_host=False, datapath="system")
    world.module = "loaded"
    world.lost = list(lost)
    world.vswitchd_started = started
    return world


def test_kernel_datapath_losing_upcalls_now(monkeypatch):
    monkeypatch.setattr(collection, "UPCALL_SAMPLE", 0.0)
    item = only_finding(kernel_world([5, 12]), "bridge")
    assert item["subject"] == "upcalls"
    assert "losing upcalls: 7 in" in item["problem"]
    assert "systemctl restart openvswitch-switch" in item["fix"]
    assert "within 10 s of boot" in item["fix"]


def test_kernel_datapath_started_too_early_for_ovs_3_1_0(monkeypatch):
    """Debian's OVS 3.1.0 started within 10 s of boot runs no upcall
    handlers: named before any packet is lost, and as the cause when some
    are."""
    monkeypatch.setattr(collection, "UPCALL_SAMPLE", 0.0)
    item = only_finding(kernel_world([0], started=4.2), "bridge")
    assert item["subject"] == "ovs-vswitchd"
    assert "started 4 s after boot" in item["problem"]
    assert "no upcall handler threads" in item["problem"]
    item = only_finding(kernel_world([3, 9], started=4.2), "bridge")
    assert item["subject"] == "upcalls"
    assert item["fix"].startswith("ovs-vswitchd started 4 s after boot")
    world = kernel_world([0], started=4.2)
    world.vswitchd_data["version"] = "ovs-vswitchd (Open vSwitch) 3.1.1"
    assert not results(world)["bridge"]["findings"]


def test_kernel_datapath_upcalls_lost_once_is_a_note(monkeypatch):
    monkeypatch.setattr(collection, "UPCALL_SAMPLE", 0.0)
    got = results(kernel_world([40, 40]))["bridge"]
    assert got["status"] == "ok" and not got["findings"], got
    assert any("40 upcalls lost since" in n for n in got["notes"]), got
    healthy = results(kernel_world([0]))["bridge"]
    assert healthy["status"] == "ok" and not healthy["notes"], healthy


def test_userspace_datapath_reads_no_upcalls():
    world = World(multi_host=False)
    world.lost = [5, 12]
    probe = FakeProbe(world, settings(False, "netdev"))
    collection.collect(settings(False, "netdev"), probe, deep=True)
    assert "upcalls" not in probe.calls


def test_lookups_of_dpctl_show_are_parsed():
    text = ("system@ovs-system:\n  lookups: hit:120 missed:31 lost:7\n"
            "  flows: 4\n  masks: hit:300 total:2 hit/pkt:1.99\n"
            "  port 0: ovs-system (internal)\n")
    assert vswitchd.parse_lookups(text) == {"lost": 7, "missed": 31}
    with pytest.raises(command.ProbeError):
        vswitchd.parse_lookups("nothing here")


def test_datapath_auto_takes_the_bridge_and_never_modprobes(monkeypatch):
    """doctor collects deep; with --datapath=auto the expected datapath is
    the bridge's own (else the module's state), read without modprobe."""
    import subprocess
    from ovsgre import dataplane
    ran = []
    monkeypatch.setattr(dataplane, "detect_datapath",
                        lambda *a: ran.append(("detect", a)) or "system")
    real_run = subprocess.run

    def spy(argv, *a, **kw):
        ran.append(list(argv))
        return real_run(argv, *a, **kw)
    monkeypatch.setattr(subprocess, "run", spy)

    class AutoProbe(FakeProbe):
        kernel_module = hostprobe.HostProbe.kernel_module
        datapath = hostprobe.HostProbe.datapath

    world = World(multi_host=False)
    s = settings(False, "auto")
    out = io.StringIO()
    rc = doctor.run(s, argparse.Namespace(json=True, timeout=1.0),
                    probe=AutoProbe(world, s), out=out)
    assert rc == 0, out.getvalue()
    assert not any("modprobe" in str(c) or c[0] == "detect" for c in ran)
    assert "datapath netdev" in doctor.format_report(
        collection.collect(s, AutoProbe(world, s), deep=True),
        doctor.build_report([]))


def test_module_loaded_under_a_userspace_bridge_is_a_note():
    world = World(multi_host=False)
    world.module = "loaded"
    s = settings(False, "auto")
    probe = FakeProbe(world, s)
    probe.datapath = lambda existing="", module=None: (existing, "bridge")
    got = doctor.check_bridge(collection.collect(s, probe, deep=True))
    assert got["status"] == "ok"
    (note,) = got["notes"]
    assert "--datapath=netdev" in note


def test_tunnel_bridge_missing_fail_mode_and_patch():
    world = World()
    world.bridges["br-ovsgre-tun"]["fail_mode"] = None
    item = only_finding(world, "bridge")
    assert "set-fail-mode br-ovsgre-tun secure" in item["fix"]
    world = World()
    world.del_port("ovgp-tun")
    item = only_finding(world, "bridge")
    assert item["subject"] == "ovgp-tun"
    world = World()
    del world.bridges["br-ovsgre-tun"]
    got = results(world)
    assert any(f["subject"] == "br-ovsgre-tun"
               for f in got["bridge"]["findings"])
    assert got["flows"]["status"] == "error"


# --------------------------------------------------------------- endpoints

def test_host_veth_missing_of_a_joined_endpoint():
    world = World()
    del world.links[HOST_IF]
    got = results(world)
    (item,) = got["endpoints"]["findings"]
    assert item["subject"] == HOST_IF and "missing" in item["problem"]
    # Docker still has web on the network: reconnect it
    assert "docker network disconnect -f blue web && docker network " \
        "connect blue web" in item["fix"]
    # Docker no longer has it: its sandbox is gone
    world.docker_data["endpoints"] = {}
    world.docker_data["containers"] = {}
    (item,) = results(world)["endpoints"]["findings"]
    assert "namespace is gone" in item["fix"]
    assert "docker network disconnect -f blue" in item["fix"]


def test_port_vswitchd_did_not_take():
    world = World()
    world.ports[HOST_IF]["ofport"] = -1
    world.ports[HOST_IF]["error"] = "could not open network device"
    item = only_finding(world, "endpoints")
    assert item["subject"] == HOST_IF
    assert "did not take the OVS port" in item["problem"]
    assert "could not open network device" in item["problem"]
    assert f"ovs-vsctl list interface {HOST_IF}" in item["fix"]


def test_host_veth_missing_of_a_created_endpoint():
    world = World()
    eid = "f" * 64
    host_if, _ = world.add_endpoint(eid)
    world.add_port("br-ovsgre", host_if, 8, tag=VLAN, ids={
        "owner": "ovsgre", "ovsgre_endpoint": eid})
    item = only_finding(world, "endpoints")
    assert item["subject"] == host_if
    assert "re-creates the veth pair" in item["fix"]


def test_host_veth_down():
    world = World()
    world.links[HOST_IF]["up"] = False
    item = only_finding(world, "endpoints")
    assert item["fix"] == f"run: ip link set {HOST_IF} up"


def test_container_end_mtu_in_the_host_namespace():
    world = World()
    eid = "f" * 64
    host_if, peer_if = world.add_endpoint(eid)
    world.add_port("br-ovsgre", host_if, 8, tag=VLAN)
    world.links[host_if] = World._link(20, MTU, peer_index=21)
    world.links[peer_if] = World._link(21, 1400, peer_index=20)
    world.tx[peer_if] = False
    item = only_finding(world, "endpoints")
    assert item["subject"] == peer_if and "MTU 1400" in item["problem"]


def test_mtu_above_the_underlay_limit_for_cluster_networks():
    world = World()
    world.store_data["networks"][NET]["mtu"] = 1500
    world.store_data["endpoints"][EP]["mtu"] = 1500
    world.links[HOST_IF]["mtu"] = 1500
    item = only_finding(world, "endpoints")
    assert "exceeds the underlay MTU 1500 - 42 = 1458" in item["problem"]
    assert "com.docker.network.driver.mtu=1458" in item["fix"]
    single = World(multi_host=False)   # no tunnels: no limit
    single.store_data["endpoints"][EP]["mtu"] = 1500
    single.links[HOST_IF]["mtu"] = 1500
    assert not results(single)["endpoints"]["findings"]


def test_port_with_the_wrong_tag():
    world = World()
    world.ports[HOST_IF]["tag"] = 4
    item = only_finding(world, "endpoints")
    assert "tag 4, the network's VLAN is 1" in item["problem"]


def test_tx_offload_on_the_container_end_in_the_host_namespace():
    world = World()
    eid = "f" * 64
    host_if, peer_if = world.add_endpoint(eid)
    world.add_port("br-ovsgre", host_if, 8, tag=VLAN)
    world.links[host_if] = World._link(20, MTU, peer_index=21)
    world.links[peer_if] = World._link(21, MTU, peer_index=20)
    world.tx[peer_if] = False
    assert not results(world)["endpoints"]["findings"]
    world.tx[peer_if] = True
    item = only_finding(world, "endpoints")
    assert item["subject"] == peer_if
    assert "TX checksum offload is on" in item["problem"]
    assert item["fix"] == f"run: ethtool -K {peer_if} tx off"


def test_tx_offload_on_inside_the_container():
    world = World()
    world.tx_in[("/proc/4242/ns/net", 2)] = ("eth0", True)
    item = only_finding(world, "endpoints")
    assert item["subject"] == HOST_IF
    assert "(eth0 in its container)" in item["problem"]
    assert item["fix"] == ("run: nsenter --net=/proc/4242/ns/net "
                           "ethtool -K eth0 tx off")


def test_container_netns_not_readable_is_not_checked_not_a_pass():
    world = World()
    del world.netns_of[CTR]
    got = results(world)
    assert got["endpoints"]["status"] == "error"
    assert not got["endpoints"]["findings"]
    (what,) = got["endpoints"]["not_checked"]
    assert what.startswith(f"TX offload of endpoint {EP[:12]} (web)")
    assert "not running" in what
    rc, text = run(world)
    assert rc == doctor.EXIT_NOT_CHECKED == 2
    assert "ERR   endpoints  1 endpoint(s)" in text
    assert "      not checked: TX offload of endpoint" in text
    assert "all checks passed" not in text
    assert text.splitlines()[-1].startswith(
        "no problem found, but not everything could be checked: endpoints")


def test_kernel_datapath_does_not_check_offload():
    world = World(datapath="system")
    world.tx_in[("/proc/4242/ns/net", 2)] = ("eth0", True)
    got = results(world)
    assert not got["endpoints"]["findings"]
    assert got["underlay"]["status"] == "skip"


# ---------------------------------------------------------------- underlay

def test_tx_offload_on_br_phy():
    world = World()
    world.tx["br-phy"] = True
    item = only_finding(world, "underlay")
    assert item["subject"] == "br-phy"
    assert item["fix"] == "run: ethtool -K br-phy tx off"


def test_tunnel_source_not_on_an_ovs_bridge():
    world = World()
    world.addresses = {LOCAL: 4}   # on eth0
    world.tx["eth0"] = False
    item = only_finding(world, "underlay")
    assert item["subject"] == "eth0"
    assert "not on a userspace OVS bridge" in item["problem"]
    assert "ovs-vsctl add-br br-phy" in item["fix"]


def test_tunnel_source_on_no_interface():
    world = World()
    world.addresses = {}
    item = only_finding(world, "underlay")
    assert item["subject"] == LOCAL and "--local-ip" in item["fix"]


def test_tunnel_source_unknown():
    world = World()
    s = settings(OVSGRE_LOCAL_IP="")
    (item,) = results(world, s)["underlay"]["findings"]
    assert item["problem"] == "cannot tell the tunnel source address"
    assert "--local-ip" in item["fix"]


# ----------------------------------------------------------------- tunnels

def test_tunnel_port_missing():
    world = World()
    world.del_port(GRE)
    got = results(world)
    (item,) = got["tunnels"]["findings"]
    assert item["subject"] == GRE
    assert item["problem"] == f"no tunnel port to peer {PEER}"
    assert "re-creates the tunnel ports" in item["fix"]
    (flows,) = got["flows"]["findings"]   # the table still outputs to it
    assert "2 unexpected" in flows["problem"]


def test_tunnel_port_without_ofport():
    world = World()
    world.ports[GRE]["ofport"] = -1
    world.ports[GRE]["error"] = "could not open network device"
    got = results(world)
    (item,) = got["tunnels"]["findings"]
    assert "ofport -1, could not open network device" in item["problem"]
    assert f"ovs-vsctl list interface {GRE}" in item["fix"]


def test_tunnel_port_to_a_departed_host():
    world = World()
    del world.hosts[PEER]
    got = results(world)
    (item,) = got["tunnels"]["findings"]
    assert item["subject"] == GRE and "not a peer" in item["problem"]
    assert f"ovs-vsctl del-port br-ovsgre-tun {GRE}" in item["fix"]


def test_peer_does_not_answer_ping():
    world = World()
    world.pings[PEER] = (False, "100% packet loss")
    item = only_finding(world, "tunnels")
    assert item["subject"] == PEER
    assert f"from {LOCAL} (100% packet loss)" in item["problem"]


def test_this_host_not_registered():
    world = World()
    del world.hosts[LOCAL]
    item = only_finding(world, "tunnels")
    assert item["subject"] == LOCAL and "not registered" in item["problem"]
    assert "ovsgre serve" in item["fix"]


def test_static_peers():
    world = World()
    s = settings(OVSGRE_ETCD="", OVSGRE_PEERS=f"{LOCAL},{PEER}")
    got = results(world, s)
    assert {n: r["status"] for n, r in got.items()} == dict.fromkeys(ORDER,
                                                                     "ok")
    s = settings(OVSGRE_ETCD="", OVSGRE_PEERS=f"{LOCAL},{PEER},198.18.0.3")
    world.pings["198.18.0.3"] = (False, "")
    got = results(world, s)
    subjects = [f["subject"] for f in got["tunnels"]["findings"]]
    assert subjects == ["gre-c6120003", "198.18.0.3"]


# ------------------------------------------------------------------- flows

def test_flows_deleted():
    world = World()
    world.flows = []
    item = only_finding(world, "flows")
    assert item["subject"] == "br-ovsgre-tun"
    assert "11 missing, 0 unexpected" in item["problem"]
    assert len(item["details"]) == doctor.MAX_LISTED_FLOWS
    assert all(d.startswith("- ") for d in item["details"])
    assert "re-installs the whole table" in item["fix"]


def test_foreign_flow_and_learned_flows():
    world = World()
    world.flows.append(" cookie=0x0, duration=1s, table=0, n_packets=0, "
                       "n_bytes=0, priority=9,dl_type=0x88cc actions=drop")
    item = only_finding(world, "flows")
    assert item["details"] == [
        "+ table=0,priority=9,dl_type=35020 actions=drop"]
    world = World()
    world.flows.append(" table=2, hard_timeout=300, priority=1,"
                       "vlan_tci=0x0001/0x0fff,dl_dst=02:00:00:00:00:07 "
                       "actions=output:2")
    assert not results(world)["flows"]["findings"]


def test_flows_of_a_network_missing_from_the_table():
    world = World()
    world.store_data["networks"]["m" * 64] = dict(
        world.store_data["networks"][NET], network_id="m" * 64, vlan=2,
        key=6, name="red")
    item = only_finding(world, "flows")
    assert "2 missing, 0 unexpected" in item["problem"]


def test_flows_unreadable_while_vswitchd_answers():
    world = World()
    world.fail["dump_flows"] = "ovs-ofctl dump-flows: no such file"
    item = only_finding(world, "flows")
    assert "cannot read the flow table" in item["problem"]
    assert "br-ovsgre-tun.mgmt" in item["fix"]


# ------------------------------------------------------------------- stale

def test_orphan_port_and_links():
    world = World()
    world.add_port("br-ovsgre", "x", 9, ids={"owner": "ovsgre"})
    world.add_port("br-ovsgre", "theirs", 10, ids={"owner": "someone"})
    world.links["ovghdeadbeef123"] = World._link(30, 1500)
    world.links["ovgcdeadbeef123"] = World._link(31, 1500)
    world.links["ovgtx1"] = World._link(32, 1500)
    got = results(world)
    stale = {f["subject"]: f for f in got["stale"]["findings"]}
    assert set(stale) == {"x", "ovghdeadbeef123", "ovgcdeadbeef123"}
    assert "ovs-vsctl del-port br-ovsgre x" in stale["x"]["fix"]
    assert "ip link del ovghdeadbeef123" in \
        stale["ovghdeadbeef123"]["fix"]
    assert [n for n, r in got.items() if r["findings"]] == ["stale"]


def test_patch_and_tunnel_ports_are_not_orphans():
    assert not results(World())["stale"]["findings"]


def test_interrupted_deletion_and_unknown_network():
    world = World()
    world.add_endpoint("a" * 64, state="deleting")
    world.add_endpoint("b" * 64, network_id="z" * 64)
    got = results(world)
    stale = {f["subject"]: f for f in got["stale"]["findings"]}
    assert set(stale) == {"a" * 12, "b" * 12}
    assert "interrupted" in stale["a" * 12]["problem"]
    assert "finishes it" in stale["a" * 12]["fix"]
    assert "has no record" in stale["b" * 12]["problem"]
    assert not got["endpoints"]["findings"]   # not checked twice


def test_record_without_port():
    world = World()
    world.del_port(HOST_IF)
    item = only_finding(world, "stale")
    assert item["subject"] == HOST_IF
    assert "no OVS port on br-ovsgre" in item["problem"]
    assert "re-adds the port" in item["fix"]


# ------------------------------------------------------------------- store

def test_store_unreadable():
    world = World()
    world.fail["store"] = "state directory /nonexistent/state does not exist"
    got = results(world)
    (item,) = got["store"]["findings"]
    assert item["subject"] == "/nonexistent/state"
    assert "does not exist" in item["problem"]
    assert "--state-dir" in item["fix"]
    assert got["endpoints"]["status"] == got["stale"]["status"] == "error"
    assert got["flows"]["status"] == "error"
    rc, text = run(world)
    assert rc == 1 and "FAIL  store" in text


def test_unreadable_record():
    world = World()
    world.store_data["bad"] = ["/s/endpoints/x.json: Expecting value"]
    item = only_finding(world, "store")
    assert item["subject"] == "/s/endpoints/x.json"
    assert item["problem"] == "unreadable record: Expecting value"


def test_record_missing_a_field_is_a_finding_not_a_crash():
    world = World()
    del world.store_data["endpoints"][EP]["host_if"]
    rc, text = run(world)   # no KeyError
    assert rc == 1
    got = results(world)
    (item,) = got["store"]["findings"]
    path = f"/nonexistent/state/endpoints/{EP}.json"
    assert item["subject"] == path
    assert item["problem"] == ("malformed endpoint record (no host_if): "
                               "the plugin cannot use it")
    assert item["fix"].startswith(f"move it out of the state directory "
                                  f"(run: mv {path} /root/), then restart")
    assert "reconnect web" in item["fix"]
    # its port is not called an orphan (the record still names it)...
    assert not got["stale"]["findings"]
    assert [n for n, r in got.items() if r["findings"]] == ["store"]
    assert f"{path}: malformed endpoint record (no host_if)" in text


def test_malformed_records_of_every_kind():
    world = World()
    world.links[PEER_IF] = World._link(8, MTU)
    world.store_data["endpoints"][EP].update(mtu=None, state="joined")
    world.store_data["endpoints"]["a" * 64] = {"host_if": 7}
    world.store_data["networks"][NET]["vlan"] = "1"
    got = results(world)
    problems = {f["subject"].rsplit("/", 1)[-1]: f
                for f in got["store"]["findings"]}
    assert set(problems) == {f"{EP}.json", "a" * 64 + ".json",
                             f"{NET}.json"}
    assert "(mtu is null)" in problems[f"{EP}.json"]["problem"]
    assert "reconnect web" in problems[f"{EP}.json"]["fix"]
    assert "host_if is 7" in problems["a" * 64 + ".json"]["problem"]
    assert "no network_id" in problems["a" * 64 + ".json"]["problem"]
    assert 'vlan is "1"' in problems[f"{NET}.json"]["problem"]
    assert "docker network create" in problems[f"{NET}.json"]["fix"]
    assert not got["endpoints"]["findings"]
    for name in ("endpoints", "stale", "flows"):   # no crash, no noise
        assert got[name]["status"] in ("ok", "error"), got[name]


def test_links_unreadable_is_not_a_pass():
    world = World()
    world.fail["links"] = "netlink link dump: permission denied"
    got = results(world)
    assert got["endpoints"]["status"] == "error"
    assert got["endpoints"]["not_checked"] == [
        "veths and MTUs: cannot read links: netlink link dump: permission "
        "denied", f"TX offload of endpoint {EP[:12]} (web): moved into its "
        "container"]
    assert got["stale"]["status"] == "error"   # OVS ports checked, links not
    assert got["stale"]["not_checked"] == [
        "links: netlink link dump: permission denied"]
    rc, text = run(world)
    assert rc == doctor.EXIT_NOT_CHECKED
    assert "all checks passed" not in text
    assert "ERR   endpoints  1 endpoint(s): OVS ports as recorded" in text
    assert ("ERR   underlay   not checked: cannot read links: netlink link "
            "dump: permission denied") in text
    assert "      not checked: links: netlink link dump" in text
    assert text.splitlines()[-1] == (
        "no problem found, but not everything could be checked: endpoints,"
        " underlay, stale (exit status 2)")
    rc, out = run(world, json_out=True)
    report = json.loads(out)
    assert rc == 2 and report["ok"] is False
    assert report["problems"] == 0 and report["not_checked"] == 3
    # with a problem as well, the problem decides the exit status
    world.ports[HOST_IF]["tag"] = 9
    rc, text = run(world)
    assert rc == doctor.EXIT_PROBLEMS
    assert text.splitlines()[-1] == ("1 problem found; not checked "
                                     "completely: endpoints, underlay, "
                                     "stale")


def test_ping_that_cannot_run_is_not_checked():
    world = World()
    world.pings[PEER] = (None, "ping not found: [Errno 2]")
    got = results(world)
    assert got["tunnels"]["status"] == "error"
    assert got["tunnels"]["not_checked"] == [
        f"ping {PEER}: ping not found: [Errno 2]"]
    assert run(world)[0] == 2


def test_ping_missing_binary_vs_no_answer(monkeypatch):

    def fake(argv, *a, **kw):
        raise FileNotFoundError(2, "No such file", argv[0])
    monkeypatch.setattr(command.subprocess, "run", fake)
    probe = hostprobe.HostProbe(settings(), 1)
    ((answered, detail),) = probe.ping([PEER], LOCAL).values()
    assert answered is None and "ping not found" in detail

    def slow(argv, *a, **kw):
        raise command.subprocess.TimeoutExpired(argv, 2)
    monkeypatch.setattr(command.subprocess, "run", slow)
    ((answered, detail),) = probe.ping([PEER], LOCAL).values()
    assert answered is False and "did not answer" in detail


def test_underlay_offload_unreadable_is_not_checked():
    world = World()
    del world.tx["br-phy"]
    got = results(world)
    assert got["underlay"]["status"] == "error"
    assert got["underlay"]["not_checked"] == ["TX offload of br-phy: no "
                                              "br-phy"]
    assert "TX offload off" not in got["underlay"]["summary"]


def test_every_check_passes_or_says_why_not():
    """No check ends "ok" on something it could not read."""
    for fail in ("store", "ovsdb", "links", "vswitchd", "dump_flows",
                 "addresses", "etcd_hosts", "tx_checksum",
                 "tx_checksum_in", "container_netns"):
        world = World()
        world.fail[fail] = "broken"
        report = doctor.build_report(results(world).values())
        assert not report["ok"], fail
        assert doctor.exit_status(report) in (1, 2), fail


def test_etcd_unreachable_keeps_checking_tunnels_from_the_ports():
    world = World()
    world.fail["etcd_hosts"] = "etcd unreachable (list): refused"
    got = results(world)
    (item,) = got["store"]["findings"]
    assert item["subject"] == "etcd" and "refused" in item["problem"]
    assert "start etcd" in item["fix"]
    assert got["tunnels"]["status"] == "ok"
    assert "etcd unreachable" in got["tunnels"]["notes"][0]
    assert got["flows"]["status"] == "ok"


def test_store_summary():
    got = results(World())
    assert got["store"]["summary"] == (
        "/nonexistent/state: 1 network(s), 1 endpoint(s); etcd answers "
        "(2 host(s) registered)")


def test_every_finding_has_a_fix():
    world = World()
    world.fail["vswitchd"] = "down"
    world.fail["dump_flows"] = "down"
    world.bridges["br-ovsgre-tun"]["fail_mode"] = None
    world.links[HOST_IF]["mtu"] = 1000
    world.tx["br-phy"] = True
    world.pings[PEER] = (False, "")
    world.links["ovgh00000000000"] = World._link(40, 1500)
    world.fail["etcd_hosts"] = "down"
    items = [f for r in results(world).values() for f in r["findings"]]
    assert len(items) >= 7
    for item in items:
        assert item["subject"] and item["problem"] and item["fix"]
        assert item["fix"].startswith(("run:", "restart", "start", "set",
                                       "move", "point", "see", "check",
                                       "recreate", "its"))
    assert PEER_IF  # imported for the fakes' naming


def test_doctor_reports_malformed_host_records_as_findings():
    from .test_status import HOSTILE_HOSTS
    world = World()
    world.raw_hosts = dict(HOSTILE_HOSTS)
    got = results(world)
    subjects = {f["subject"] for f in got["store"]["findings"]}
    assert subjects == set(HOSTILE_HOSTS)
    assert all("etcdctl del" in f["fix"] for f in got["store"]["findings"])
    rc, text = run(world)
    assert rc != 0 and "\x1b" not in text


def test_doctor_reports_malformed_network_and_pool_records():
    from .test_status import GOOD_RECORDS, HOSTILE_RECORDS
    world = World()
    world.raw_etcd = dict(HOSTILE_RECORDS, **GOOD_RECORDS)
    got = results(world)
    found = {f["subject"]: f for f in got["store"]["findings"]}
    assert set(found) == {cluster.printable(k) for k in HOSTILE_RECORDS}
    pool = found["/ovsgre/ipam/pools/default/10.9.0.0%2F24"]
    assert "IPAM pool" in pool["problem"] and "etcdctl del" in pool["fix"]
    assert "network record" in found["/ovsgre/networks/blue"]["problem"]
    assert "GRE key reservation" in found["/ovsgre/keys/7"]["problem"]
    assert "declared network" in found["/ovsgre/declared/web"]["problem"]
    rc, text = run(world)
    assert rc != 0 and "\x1b" not in text
