"""`ovsgre status` and `ovsgre doctor` on real test beds.

Each test breaks one thing on purpose, checks that doctor names it (with
a fix) and exits 1, repairs it (where it can, the way the fix says) and
checks that doctor exits 0 again: one bed per module, break -> check ->
repair in sequence.  The CLI runs in the host's network namespace with the
plugin's own OVSGRE_* settings, like an operator would run it on that host.
"""

import json
import os
import subprocess
import time

import pytest

from ovsgre import names
from ovsgre.hoststate.probe import HostProbe
from tests.harness import TestHost
from tests.harness.cluster import PHY_BRIDGE, Cluster
from tests.harness.datapath import DATAPATH, KERNEL
from tests.harness.plugin import ovsgre_argv
from tests.harness.sites import BLUE, start_mesh, start_site, stop_sites

DAEMON_CONFIG = {"default-address-pools": [{"base": "198.19.128.0/17",
                                            "size": 24}]}
SUBNET = "198.18.77.0/24"


def cli(site, *args, env=None):
    """`ovsgre ARGS` in the site's namespace with the plugin's settings;
    (exit status, stdout + stderr)."""
    full = dict(os.environ, **site.plugin.env)
    full.update(OVSGRE_DOCKER_HOST=site.host.docker.base_url,
                OVS_RUNDIR=site.host.ovs.rundir, **(env or {}))
    proc = subprocess.run(site.host.netns.exec_argv(ovsgre_argv() +
                                                    list(args)),
                          env=full, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    return proc.returncode, proc.stdout + proc.stderr


def doctor(site, *args, **kw):
    """(exit status, report dict, text) of `ovsgre doctor --json`."""
    rc, out = cli(site, "doctor", "--json", *args, **kw)
    try:
        report = json.loads(out[:out.rindex("}") + 1])
    except ValueError:
        raise AssertionError(f"doctor printed no JSON (exit {rc}):\n{out}")
    return rc, report, out


def findings(report, check=None):
    return [f for c in report["checks"] for f in c["findings"]
            if check is None or c["name"] == check]


def named(report, check, subject):
    """Does check `check` have a finding about `subject`?"""
    return any(subject in f["subject"] or subject in f["problem"]
               for f in findings(report, check))


def assert_names(site, check, subject, *args, fix=None, **kw):
    """doctor exits 1 and check `check` names `subject` (and, if given,
    a finding's fix contains `fix`)."""
    rc, report, out = doctor(site, *args, **kw)
    assert rc == 1, out
    assert not report["ok"], out
    assert named(report, check, subject), out
    for f in findings(report, check):
        assert f["fix"], f   # every finding says how to fix it
    if fix is not None:
        assert any(fix in f["fix"] for f in findings(report, check)
                   if subject in f["subject"] or subject in f["problem"]), \
            out
    return report


def wait_healthy(site, timeout=20, *args):
    deadline = time.monotonic() + timeout
    while True:
        rc, report, out = doctor(site, *args)
        if rc == 0:
            assert report["ok"] and report["problems"] == 0, out
            return report
        if time.monotonic() > deadline:
            raise AssertionError(f"doctor still unhappy after {timeout}s:\n"
                                 f"{out}\n--- plugin log ---\n"
                                 f"{site.plugin.log_tail(30)}")
        time.sleep(0.5)


def restart_plugin(site):
    site.plugin.stop()
    site.plugin.start()


# ------------------------------------------------------------ one host

@pytest.fixture(scope="module")
def one():
    host = TestHost("sd", daemon_config=DAEMON_CONFIG)
    site = None
    try:
        site = start_site(host)
        site.docker("network", "create", "-d", "ovsgre", "--subnet", SUBNET,
                    "dn")
        site.run_bg("dc", "dn", "sleep", "600")
        yield site
    finally:
        try:
            host.docker.remove_all_containers()
            if site:
                site.plugin.stop()
        finally:
            host.stop()


def endpoint_of(site, container):
    fmt = "{{json .NetworkSettings.Networks}}"
    nets = json.loads(site.out("inspect", "-f", fmt, container))
    eid = next(iter(nets.values()))["EndpointID"]
    return eid, "ovgh" + eid[:11], "ovgc" + eid[:11]


@pytest.mark.kernel_datapath
def test_one_host_healthy_status_table_and_json(one):
    report = wait_healthy(one)
    assert [c["name"] for c in report["checks"]] == [
        "ovs", "bridge", "endpoints", "underlay", "tunnels", "flows",
        "stale", "store"]
    rc, text = cli(one, "status")
    assert rc == 0, text
    eid, host_if, _ = endpoint_of(one, "dc")
    for word in ("NETWORKS", "ENDPOINTS", "dn", "dc", SUBNET, host_if,
                 "joined", DATAPATH, "OVS PORT", "OFPORT", "TAG"):
        assert word in text, text
    row = next(l for l in text.splitlines() if l.startswith("dc "))
    assert row.count(host_if) == 2, text   # host veth and OVS port
    rc, out = cli(one, "status", "--json")
    assert rc == 0, out
    status = json.loads(out)
    (net,) = status["networks"]
    assert net["name"] == "dn" and net["subnets"] == [SUBNET], net
    (ep,) = status["endpoints"]
    assert ep["id"] == eid and ep["container"] == "dc", ep
    assert ep["host_if"] == host_if and ep["ofport"] > 0, ep
    assert ep["state"] == "joined" and ep["problems"] == [], ep
    assert status["host"]["mode"] == "single-host"
    assert status["peers"] == []
    rc, text = cli(one, "doctor")
    assert rc == 0 and "all checks passed" in text, text


def test_vswitchd_stopped(one):
    ovs = one.host.ovs
    ovs.stop_vswitchd()
    try:
        assert_names(one, "ovs", "ovs-vswitchd")
        rc, out = cli(one, "status", "--json")   # still works, says so
        assert rc == 0, out
        assert json.loads(out)["host"]["vswitchd"] != "ok", out
    finally:
        ovs.start_vswitchd()
    wait_healthy(one)


def test_bridge_deleted(one):
    one.host.ovs.vsctl("del-br", "br-ovsgre")
    _, host_if, _ = endpoint_of(one, "dc")
    report = assert_names(one, "bridge", "br-ovsgre")
    assert named(report, "stale", host_if)   # its record lost the port
    restart_plugin(one)   # start-up re-creates the bridge and the port
    wait_healthy(one)


def test_veth_mtu_changed(one):
    _, host_if, _ = endpoint_of(one, "dc")
    mtu = json.loads(one.host.run(["ip", "-j", "link", "show", host_if])
                     .stdout)[0]["mtu"]
    one.host.run(["ip", "link", "set", host_if, "mtu", "1300"])
    try:
        report = assert_names(one, "endpoints", host_if)
        assert any("1300" in f["problem"] and str(mtu) in f["fix"]
                   for f in findings(report, "endpoints")), report
    finally:
        one.host.run(["ip", "link", "set", host_if, "mtu", str(mtu)])
    wait_healthy(one)


def test_tx_offload_on_container_end(one):
    net_id = one.out("network", "inspect", "-f", "{{.Id}}", "dn")
    eid = "e" * 64
    one.plugin.ok("NetworkDriver.CreateEndpoint", {
        "NetworkID": net_id, "EndpointID": eid,
        "Interface": {"Address": "198.18.77.200/24"}, "Options": {}})
    peer = "ovgc" + eid[:11]
    try:
        wait_healthy(one)   # the plugin turned offload off itself
        one.host.run(["ethtool", "-K", peer, "tx", "on"])
        report = assert_names(one, "endpoints", peer)
        assert any(f"ethtool -K {peer} tx off" in f["fix"]
                   for f in findings(report, "endpoints")), report
        one.host.run(["ethtool", "-K", peer, "tx", "off"])
        wait_healthy(one)
        # the same inside a running container (found through Docker)
        pid = one.pid("dc")
        _, host_if, _ = endpoint_of(one, "dc")
        inside = ["nsenter", "-t", str(pid), "-n", "ethtool", "-K", "eth0",
                  "tx"]
        subprocess.run(inside + ["on"], check=True, capture_output=True)
        try:
            report = assert_names(one, "endpoints", host_if)
            assert any("nsenter" in f["fix"] and "eth0" in f["fix"]
                       for f in findings(report, "endpoints")), report
        finally:
            subprocess.run(inside + ["off"], check=True, capture_output=True)
    finally:
        one.plugin.ok("NetworkDriver.DeleteEndpoint",
                      {"NetworkID": net_id, "EndpointID": eid})
    wait_healthy(one)


def test_stale_port_and_link(one):
    run = one.host.run
    run(["ip", "link", "add", "ovgtx0", "type", "veth", "peer", "name",
         "ovgtx1"])
    run(["ip", "link", "add", "ovghdeadbeef123", "type", "veth", "peer",
         "name", "ovgcdeadbeef123"])
    one.host.ovs.vsctl("add-port", "br-ovsgre", "ovgtx0", "--", "set",
                       "Port", "ovgtx0", "external_ids:owner=ovsgre")
    try:
        report = assert_names(one, "stale", "ovgtx0")
        assert named(report, "stale", "ovghdeadbeef123"), report
        assert named(report, "stale", "ovgcdeadbeef123"), report
        assert not named(report, "stale", "ovgtx1")   # not ovsgre's name
    finally:
        one.host.ovs.vsctl("--if-exists", "del-port", "ovgtx0")
        run(["ip", "link", "del", "ovgtx0"], check=False)
        run(["ip", "link", "del", "ovghdeadbeef123"], check=False)
    wait_healthy(one)


def test_store_missing(one):
    missing = os.path.join(one.host.run_dir, "no-such-state")
    env = {"OVSGRE_STATE_DIR": missing}
    report = assert_names(one, "store", missing, env=env)
    unchecked = {c["name"] for c in report["checks"]
                 if c["status"] == "error"}
    assert {"endpoints", "stale"} <= unchecked, report   # not a pass
    rc, out = cli(one, "status", env=env)
    assert rc == 1 and missing in out, out
    assert not os.path.exists(missing)   # read-only: nothing created
    wait_healthy(one)


def test_ovsdb_server_stopped(one):
    ovs = one.host.ovs
    ovs.stop_ovsdb()
    try:
        report = assert_names(one, "ovs", "ovsdb-server",
                              fix="start Open vSwitch")
        statuses = {c["name"]: c["status"] for c in report["checks"]}
        assert statuses["bridge"] == "error", report   # not a pass
        assert report["not_checked"] >= 2, report
        rc, out = cli(one, "status", "--json")   # still works, says so
        assert rc == 0 and json.loads(out)["host"]["ovsdb"] != "ok", out
    finally:
        ovs.start_ovsdb()
        ovs.wait_ready()
    wait_healthy(one, 30)


def test_bridge_with_the_kernel_datapath_without_its_module(one):
    # Only where the openvswitch module is neither loaded nor loadable:
    # else vswitchd would make (or the kernel auto-load) a real datapath.
    if HostProbe(None).kernel_module() != "absent":
        pytest.skip("the openvswitch kernel module is loaded or loadable")
    ovs = one.host.ovs
    ovs.vsctl("set", "bridge", "br-ovsgre", "datapath_type=system")
    try:
        report = assert_names(one, "bridge", "br-ovsgre",
                              fix="ovs-vsctl set bridge br-ovsgre "
                              "datapath_type=netdev")
        assert any("module is not loaded" in f["problem"]
                   for f in findings(report, "bridge")), report
    finally:
        ovs.vsctl("set", "bridge", "br-ovsgre", "datapath_type=netdev")
    wait_healthy(one, 30)


def test_host_veth_down(one):
    _, host_if, _ = endpoint_of(one, "dc")
    one.host.run(["ip", "link", "set", host_if, "down"])
    try:
        assert_names(one, "endpoints", host_if,
                     fix=f"ip link set {host_if} up")
    finally:
        one.host.run(["ip", "link", "set", host_if, "up"])
    wait_healthy(one)


@pytest.mark.kernel_datapath
def test_host_veth_missing(one):
    _, host_if, _ = endpoint_of(one, "dc")
    one.host.run(["ip", "link", "del", host_if])   # takes the pair along
    fix = "docker network disconnect -f dn dc && docker network connect dn dc"
    report = assert_names(one, "endpoints", host_if, fix=fix)
    assert any("missing" in f["problem"]
               for f in findings(report, "endpoints")), report
    # the fix as doctor says it
    one.docker("network", "disconnect", "-f", "dn", "dc")
    one.docker("network", "connect", "dn", "dc")
    assert endpoint_of(one, "dc")[1] != host_if
    wait_healthy(one)


def test_records_of_an_interrupted_deletion_a_gone_network_and_a_torn_one(
        one):
    """What a plugin killed at the wrong time leaves in its store: doctor
    names each with the plugin stopped; restarting it (the fix) clears
    them, once the malformed one is moved away as doctor says."""
    net_id = one.out("network", "inspect", "-f", "{{.Id}}", "dn")
    folder = os.path.join(one.plugin.state_dir, "endpoints")
    records = {}
    for eid, network, state in (("d" * 64, net_id, "deleting"),
                                ("a" * 64, "f" * 64, "created"),
                                ("b" * 64, net_id, "created")):
        host_if, peer_if = names.veth_names(eid)
        records[eid] = {"network_id": network, "endpoint_id": eid,
                        "host_if": host_if, "peer_if": peer_if,
                        "mac": "02:00:00:00:00:0d", "mtu": 1500,
                        "address": "", "address6": "", "state": state,
                        "sandbox": "", "created_at": time.time()}
    del records["b" * 64]["host_if"]   # torn: the plugin cannot use it
    torn = os.path.join(folder, "b" * 64 + ".json")
    one.plugin.stop()   # it caches its store: change it while stopped
    try:
        for eid, record in records.items():
            with open(os.path.join(folder, eid + ".json"), "w") as fh:
                json.dump(record, fh)
        report = assert_names(one, "stale", "d" * 12, fix="restart the plugin")
        assert any("interrupted" in f["problem"]
                   for f in findings(report, "stale")), report
        assert named(report, "stale", "a" * 12), report
        assert any("f" * 12 in f["problem"] and "no record" in f["problem"]
                   for f in findings(report, "stale")), report
        assert named(report, "store", torn), report
        assert any(f"mv {torn} " in f["fix"]
                   for f in findings(report, "store")), report
        os.rename(torn, os.path.join(one.host.run_dir, "torn.json"))
    finally:
        if os.path.exists(torn):
            os.unlink(torn)
        one.plugin.start()   # start-up finishes the deletion, drops the rest
    wait_healthy(one)
    for eid in records:
        assert not os.path.exists(os.path.join(folder, eid + ".json"))


# ---------------------------------------------------------- two hosts

@pytest.fixture(scope="module")
def pair():
    cluster = Cluster(n_hosts=2, etcd=True)
    try:
        sites = start_mesh(cluster, BLUE)
        sites[0].run_bg("web", "blue", "sleep", "600")
        yield cluster, sites
    finally:
        stop_sites(cluster, getattr(cluster, "mesh_sites", []))


@pytest.mark.kernel_datapath
def test_two_hosts_healthy_and_status_json(pair):
    cluster, sites = pair
    for site in sites:
        report = wait_healthy(site)
        statuses = {c["name"]: c["status"] for c in report["checks"]}
        # the underlay check is the userspace datapath's (br-phy, offload)
        want = dict.fromkeys(statuses, "ok")
        if KERNEL:
            want["underlay"] = "skip"
        assert statuses == want, report
    eid, _, _ = endpoint_of(sites[0], "web")
    for site, other in ((sites[0], sites[1]), (sites[1], sites[0])):
        rc, out = cli(site, "status", "--json")
        assert rc == 0, out
        status = json.loads(out)
        assert status["host"]["tunnel_ip"] == site.host.underlay_ip
        (net,) = status["networks"]
        assert net["name"] == "blue" and net["cluster_name"] == "blue"
        assert isinstance(net["key"], int) and net["key"] > 0, net
        (peer,) = status["peers"]
        assert peer["ip"] == other.host.underlay_ip, peer
        assert peer["state"] == "up" and peer["ofport"] > 0, peer
        assert peer["port"].startswith("gre-"), peer
    rc, out = cli(sites[0], "status", "--json")
    (ep,) = json.loads(out)["endpoints"]
    assert ep["id"] == eid and ep["container"] == "web", ep
    rc, text = cli(sites[0], "status")
    assert "PEERS (1)" in text and sites[1].host.underlay_ip in text, text


def test_tunnel_port_deleted(pair):
    cluster, (s1, s2) = pair
    port = "gre-" + bytes(int(b) for b in
                          s2.host.underlay_ip.split(".")).hex()
    s1.host.ovs.vsctl("del-port", "br-ovsgre-tun", port)
    assert_names(s1, "tunnels", port)
    restart_plugin(s1)
    wait_healthy(s1)
    wait_healthy(s2)


def test_flows_deleted_and_foreign_flow(pair):
    cluster, (s1, _) = pair
    ovs = s1.host.ovs
    target = f"unix:{ovs.rundir}/br-ovsgre-tun.mgmt"
    # the running plugin re-installs a lost table within seconds: break it
    # while the plugin is stopped (doctor works without the plugin)
    s1.plugin.stop()
    try:
        ovs.ofctl("del-flows", target)
        report = assert_names(s1, "flows", "br-ovsgre-tun")
        (flows,) = findings(report, "flows")
        assert any(d.startswith("- ") for d in flows["details"]), flows
    finally:
        s1.plugin.start()
    wait_healthy(s1)
    # a flow the plugin does not know about, while it runs
    ovs.ofctl("add-flow", target, "table=0,priority=9,dl_type=0x88cc,"
              "actions=drop")
    try:
        report = assert_names(s1, "flows", "br-ovsgre-tun")
        (flows,) = findings(report, "flows")
        assert any(d.startswith("+ ") and "priority=9" in d
                   for d in flows["details"]), flows
    finally:
        ovs.ofctl("del-flows", "--strict", target,
                  "table=0,priority=9,dl_type=0x88cc")
    wait_healthy(s1)


def test_underlay_address_off_ovs_with_offload(pair):
    """Userspace datapath: the tunnel source must sit on an OVS bridge port
    with TX checksum offload off (br-phy)."""
    cluster, (s1, _) = pair
    host, ip = s1.host, s1.host.underlay_ip
    plen = cluster.network.prefixlen
    # br-phy is a tap device owned by ovs-vswitchd: the kernel refuses
    # `tx on` unless vswitchd enabled offloads on it (OVS 3.1 here does
    # not), so where it works, check that first.
    if host.run(["ethtool", "-K", "br-phy", "tx", "on"],
                check=False).returncode == 0:
        try:
            assert_names(s1, "underlay", "br-phy")
        finally:
            host.run(["ethtool", "-K", "br-phy", "tx", "off"])
        wait_healthy(s1)
    # the address on the plain NIC instead (left off br-phy), tx on
    ipn = ["ip", "-n", host.netns.name]
    host.ovs.vsctl("del-port", "br-phy", "eth0")
    subprocess.run(ipn + ["addr", "del", f"{ip}/{plen}", "dev", "br-phy"],
                   check=True)
    subprocess.run(ipn + ["addr", "add", f"{ip}/{plen}", "dev", "eth0"],
                   check=True)
    subprocess.run(ipn + ["link", "set", "eth0", "arp", "on"], check=True)
    host.run(["ethtool", "-K", "eth0", "tx", "on"])
    try:
        report = assert_names(s1, "underlay", "eth0")
        problems = " ".join(f["problem"] for f in
                            findings(report, "underlay"))
        assert "not on a userspace OVS bridge" in problems, report
        assert "TX checksum offload is on" in problems, report
    finally:
        host.run(["ethtool", "-K", "eth0", "tx", "off"])
        subprocess.run(ipn + ["addr", "del", f"{ip}/{plen}", "dev", "eth0"],
                       check=False)
        subprocess.run(ipn + ["link", "set", "eth0", "arp", "off"],
                       check=False)
        host.ovs.vsctl("--may-exist", "add-port", "br-phy", "eth0")
        subprocess.run(ipn + ["addr", "replace", f"{ip}/{plen}", "dev",
                              "br-phy"], check=True)
    wait_healthy(s1, 30)


def test_peer_unreachable_over_the_underlay(pair):
    """Packets to the peer's underlay address vanish on this host's br-phy
    (a drop flow: netns-local, etcd and the peer itself unaffected)."""
    cluster, (s1, s2) = pair
    peer = s2.host.underlay_ip
    target = f"unix:{s1.host.ovs.rundir}/{PHY_BRIDGE}.mgmt"
    match = f"priority=100,ip,nw_dst={peer}"
    s1.host.ovs.ofctl("add-flow", target, match + ",actions=drop")
    try:
        report = assert_names(s1, "tunnels", peer,
                              fix=f"check the underlay path to {peer}")
        assert any("does not answer ping" in f["problem"]
                   for f in findings(report, "tunnels")), report
    finally:
        s1.host.ovs.ofctl("del-flows", "--strict", target, match)
    wait_healthy(s1)


def test_etcd_stopped(pair):
    cluster, (s1, s2) = pair
    cluster.etcd.stop()
    try:
        report = assert_names(s1, "store", "etcd")
        tunnels_check = next(c for c in report["checks"]
                             if c["name"] == "tunnels")
        assert tunnels_check["status"] == "ok", report   # traffic goes on
        rc, out = cli(s1, "status", "--json")
        assert rc == 0, out
        status = json.loads(out)
        assert status["host"]["etcd"] != "ok", status
        assert [p["ip"] for p in status["peers"]] == [s2.host.underlay_ip]
    finally:
        cluster.etcd.start()
    wait_healthy(s1, 30)
    wait_healthy(s2, 30)
