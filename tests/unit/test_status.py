"""`ovsgre status` and the read-only observation behind it (ovsgre.hoststate).

A FakeProbe stands in for the host (OVSDB rows in their wire format,
links, Docker, etcd); `World` builds a healthy two-host picture that tests
then break.  test_doctor.py uses the same fakes.
"""

import argparse
import io
import json
import os
import socket
import subprocess
import threading
import time

import pytest

from ovsgre import config
from ovsgre.commands import status
from ovsgre.dataplane.tunnels import build_flows
from ovsgre.definitions import HOSTS_PREFIX
from ovsgre.records import problems as record_problems
from ovsgre.hoststate import cluster, command, flowtable, localstore
from ovsgre.hoststate import collect as collection
from ovsgre.hoststate import ovsdb as ovsdb_reader
from ovsgre.hoststate import probe as hostprobe
from ovsgre.hoststate.command import ProbeError

LOCAL, PEER = "198.18.0.1", "198.18.0.2"
NET = "n" * 64
EP = "e" * 64
CTR = "c" * 64
HOST_IF, PEER_IF = "ovgh" + EP[:11], "ovgc" + EP[:11]
GRE = "gre-c6120002"
KEY, VLAN, MTU = 5, 1, 1458


def settings(multi_host=True, datapath="netdev", **extra):
    env = {"OVSGRE_STATE_DIR": "/nonexistent/state",
           "OVSGRE_OVSDB": "unix:/run/ovs/db.sock",
           "OVSGRE_DATAPATH": datapath}
    if multi_host:
        env.update(OVSGRE_ETCD="http://198.18.0.254:2379",
                   OVSGRE_LOCAL_IP=LOCAL)
    env.update(extra)
    return config.from_env(env)


def ovs_dump(flows, learned=()):
    """Render build_flows output the way `ovs-ofctl -O OpenFlow13
    dump-flows` prints it (OVS 3.1): stats, table prefix, hex keys,
    push_vlan/set_field for mod_vlan_vid, pop_vlan for strip_vlan."""
    out = []
    for flow in list(flows) + list(learned):
        match, actions = flow.split(",actions=", 1)
        fields = match.split(",")
        table = fields.pop(0).split("=")[1]
        fixed = []
        for f in fields:
            key, _, value = f.partition("=")
            fixed.append(f"tun_id={hex(int(value))}" if key == "tun_id"
                         else f)
        acts = []
        for a in flowtable._split_top(actions):
            if a.startswith("mod_vlan_vid:"):
                vid = int(a.split(":")[1])
                acts += ["push_vlan:0x8100", f"set_field:{vid | 4096}"
                         "->vlan_vid"]
            elif a == "strip_vlan":
                acts.append("pop_vlan")
            elif a.startswith("set_field:") and a.endswith("->tun_id"):
                acts.append(f"set_field:{hex(int(a[10:-8]))}->tun_id")
            else:
                acts.append(a)
        head = "" if table == "0" else f"table={table}, "
        out.append(f" cookie=0x6f7667, duration=1.5s, {head}n_packets=3, "
                   f"n_bytes=180, {','.join(fixed)} actions={','.join(acts)}")
    return out


LEARNED = ("table=2,priority=1,hard_timeout=300,vlan_tci=0x0001/0x0fff,"
           "dl_dst=02:42:c6:13:00:02,actions=load:0->NXM_OF_VLAN_TCI[],"
           "load:0x5->NXM_NX_TUN_ID[],output:2")


class World:
    """A host as the probe sees it; healthy until a test changes it."""

    def __init__(self, multi_host=True, datapath="netdev"):
        self.multi_host = multi_host
        self.datapath = datapath
        self.store_data = {
            "networks": {NET: {"network_id": NET, "vlan": VLAN, "mtu": MTU,
                               "key": KEY if multi_host else None,
                               "name": "blue" if multi_host else "",
                               "gwbridge": False,
                               "ipv4": [{"pool": "198.19.0.0/16",
                                         "gateway": "198.19.0.1/16"}],
                               "ipv6": []}},
            "endpoints": {EP: {"network_id": NET, "endpoint_id": EP,
                               "host_if": HOST_IF, "peer_if": PEER_IF,
                               "mac": "02:42:c6:13:00:02", "mtu": MTU,
                               "address": "198.19.0.2/16", "address6": "",
                               "state": "joined",
                               "sandbox": "/var/run/docker/netns/abc"}},
            "bad": []}
        self.bridges = {}    # name: {datapath_type, fail_mode, ports: []}
        self.ports = {}      # name: {tag, ids, type, options, ofport, error}
        self.add_bridge("br-ovsgre")
        self.add_port("br-ovsgre", HOST_IF, 3, tag=VLAN, ids={
            "owner": "ovsgre", "ovsgre_role": "endpoint",
            "ovsgre_network": NET, "ovsgre_endpoint": EP})
        self.links = {
            "lo": self._link(1, 65536, kind=None),
            HOST_IF: self._link(7, MTU, peer_index=2),
        }
        self.tx = {}
        self.tx_in = {("/proc/4242/ns/net", 2): ("eth0", False)}
        self.netns_of = {CTR: "/proc/4242/ns/net"}
        self.addresses = {}
        self.hosts = {}
        self.pings = {}
        self.flows = []
        self.docker_data = {"networks": {NET: "blue"},
                            "endpoints": {EP: "web"},
                            "containers": {EP: CTR}}
        self.vswitchd_data = {"ctl": "/run/ovs/ovs-vswitchd.ctl",
                              "version": "ovs-vswitchd (Open vSwitch) 3.1.0"}
        self.module = "absent"   # the openvswitch kernel module
        # kernel datapath: the lost-upcall count at each read, and when
        # ovs-vswitchd started (seconds after boot)
        self.lost = [0]
        self.vswitchd_started = 300.0
        self.fail = {}       # method name: message -> ProbeError
        if multi_host:
            self.add_bridge("br-ovsgre-tun", fail_mode="secure")
            self.add_port("br-ovsgre", "ovgp-tun", 1, type="patch",
                          ids={"owner": "ovsgre", "ovsgre_role": "patch"})
            self.add_port("br-ovsgre-tun", "ovgp-int", 1, type="patch",
                          ids={"owner": "ovsgre", "ovsgre_role": "patch"})
            self.add_port("br-ovsgre-tun", GRE, 2, type="gre",
                          options={"remote_ip": PEER, "key": "flow",
                                   "local_ip": LOCAL},
                          ids={"owner": "ovsgre", "ovsgre_role": "tunnel",
                               "ovsgre_peer": PEER})
            self.add_bridge("br-phy")
            self.add_port("br-phy", "br-phy", 65534, type="internal")
            self.add_port("br-phy", "eth0", 1)
            self.links["br-phy"] = self._link(5, 1500, kind="tun")
            self.links["eth0"] = self._link(4, 1500, kind="veth")
            self.addresses = {LOCAL: 5}
            self.tx["br-phy"] = False
            self.hosts = {LOCAL: {"ip": LOCAL, "hostname": "h1"},
                          PEER: {"ip": PEER, "hostname": "h2"}}
            self.pings = {PEER: (True, "")}
            self.flows = ovs_dump(build_flows(1, {PEER: 2}, {VLAN: KEY}),
                                  [LEARNED])

    @staticmethod
    def _link(index, mtu, up=True, kind="veth", peer_index=None):
        return {"index": index, "mtu": mtu, "up": up, "kind": kind,
                "peer_index": peer_index, "address": "02:00:00:00:00:01"}

    def add_bridge(self, name, datapath=None, fail_mode=None):
        self.bridges[name] = {"datapath_type": datapath or self.datapath,
                              "fail_mode": fail_mode, "ports": []}

    def add_port(self, bridge, name, ofport, tag=None, ids=None, type="",
                 options=None, error=None):
        self.bridges[bridge]["ports"].append(name)
        self.ports[name] = {"tag": tag, "ids": ids or {}, "type": type,
                            "options": options or {}, "ofport": ofport,
                            "error": error}

    def del_port(self, name):
        for bridge in self.bridges.values():
            if name in bridge["ports"]:
                bridge["ports"].remove(name)
        del self.ports[name]

    def add_endpoint(self, eid, state="created", **extra):
        host_if, peer_if = "ovgh" + eid[:11], "ovgc" + eid[:11]
        self.store_data["endpoints"][eid] = dict({
            "network_id": NET, "endpoint_id": eid, "host_if": host_if,
            "peer_if": peer_if, "mac": "02:00:00:00:00:09", "mtu": MTU,
            "address": "198.19.0.9/16", "address6": "", "state": state,
            "sandbox": ""}, **extra)
        return host_if, peer_if

    def rows(self):
        """OVSDB select results in the JSON-RPC wire format."""
        def omap(d):
            return ["map", [[k, v] for k, v in sorted(d.items())]]

        def opt(v):
            return ["set", []] if v is None else v
        rows = {"Open_vSwitch": [{"cur_cfg": 7, "next_cfg": 7,
                                  "ovs_version": "3.1.0"}],
                "Bridge": [], "Port": [], "Interface": []}
        for name, p in self.ports.items():
            rows["Interface"].append({
                "_uuid": ["uuid", "i-" + name], "name": name,
                "type": p["type"], "options": omap(p["options"]),
                "ofport": opt(p["ofport"]), "error": opt(p["error"]),
                "external_ids": omap({})})
            rows["Port"].append({
                "_uuid": ["uuid", "p-" + name], "name": name,
                "tag": opt(p["tag"]), "interfaces": ["uuid", "i-" + name],
                "external_ids": omap(p["ids"])})
        for name, b in self.bridges.items():
            ports = [["uuid", "p-" + p] for p in b["ports"]]
            rows["Bridge"].append({
                "_uuid": ["uuid", "b-" + name], "name": name,
                "datapath_type": b["datapath_type"],
                "fail_mode": opt(b["fail_mode"]),
                "ports": ports[0] if len(ports) == 1 else ["set", ports],
                "external_ids": omap({})})
        return rows


class FakeProbe:
    def __init__(self, world, settings):
        self.world = world
        self.settings = settings
        self.calls = []

    def _call(self, name):
        self.calls.append(name)
        if name in self.world.fail:
            raise ProbeError(self.world.fail[name])

    def store(self):
        """The world's records, sorted like localstore.read_store does."""
        self._call("store")
        data = json.loads(json.dumps(self.world.store_data))
        data.setdefault("malformed", [])
        for kind in localstore.KINDS:
            for rid, record in list(data[kind].items()):
                problems = record_problems(kind, record)
                if problems:
                    del data[kind][rid]
                    data["malformed"].append({
                        "kind": kind, "id": rid, "problems": problems,
                        "path": f"/nonexistent/state/{kind}/{rid}.json",
                        "record": record})
        return data

    def ovsdb(self):
        self._call("ovsdb")
        return ovsdb_reader.parse_ovsdb(self.world.rows())

    def vswitchd(self):
        self._call("vswitchd")
        return dict(self.world.vswitchd_data)

    def upcalls(self, ctl):
        self._call("upcalls")
        lost = self.world.lost.pop(0) if len(self.world.lost) > 1 \
            else self.world.lost[0]
        return {"lost": lost, "missed": 10}

    def vswitchd_started(self):
        return self.world.vswitchd_started

    def dump_flows(self, bridge):
        self._call("dump_flows")
        return flowtable.parse_dump("OFPST_FLOW reply (OF1.3) (xid=0x2):\n"
                                  + "\n".join(self.world.flows))

    def links(self):
        self._call("links")
        return json.loads(json.dumps(self.world.links))

    def addresses(self):
        self._call("addresses")
        return dict(self.world.addresses)

    def tx_checksum(self, ifname):
        self._call("tx_checksum")
        if ifname not in self.world.tx:
            raise ProbeError(f"no {ifname}")
        return self.world.tx[ifname]

    def tx_checksum_in(self, path, index):
        self._call("tx_checksum_in")
        if (path, index) not in self.world.tx_in:
            raise ProbeError(f"nothing at {path}")
        return self.world.tx_in[(path, index)]

    def container_netns(self, cid):
        self._call("container_netns")
        if cid not in self.world.netns_of:
            raise ProbeError("not running")
        return self.world.netns_of[cid]

    def local_ip(self):
        self._call("local_ip")
        return (self.settings.local_ip, "setting")

    def kernel_module(self):
        self._call("kernel_module")
        return self.world.module

    def datapath(self, existing="", module=None):
        self._call("datapath")
        self.world.datapath_asked = (existing, module)
        return self.world.datapath, "setting"

    def ping(self, peers, source=""):
        self._call("ping")
        return {p: self.world.pings.get(p, (False, "100% packet loss"))
                for p in peers}

    def etcd_hosts(self):
        """As etcd holds them: under /ovsgre/hosts/IP (world.hosts is
        keyed by IP; world.raw_hosts are extra records as written)."""
        self._call("etcd_hosts")
        items = {HOSTS_PREFIX + ip: rec
                 for ip, rec in self.world.hosts.items()}
        items.update(getattr(self.world, "raw_hosts", {}))
        return json.loads(json.dumps(items))

    def etcd_list(self, prefix):
        """Other records as written (world.raw_etcd: {key: value})."""
        self._call("etcd_list")
        return json.loads(json.dumps(
            {k: v for k, v in getattr(self.world, "raw_etcd", {}).items()
             if k.startswith(prefix)}))

    def docker(self):
        self._call("docker")
        return json.loads(json.dumps(self.world.docker_data))


def observe_world(world, s=None, deep=False):
    s = s or settings(world.multi_host, world.datapath)
    return collection.collect(s, FakeProbe(world, s), deep=deep)


def status_of(world, s=None):
    return status.build_report(observe_world(world, s))


def run_status(world, s=None, json_out=False, no_docker=False):
    s = s or settings(world.multi_host, world.datapath)
    out = io.StringIO()
    args = argparse.Namespace(json=json_out, no_docker=no_docker,
                              timeout=1.0)
    rc = status.run(s, args, probe=FakeProbe(world, s), out=out)
    return rc, out.getvalue()


# ------------------------------------------------------------------ report

def test_report_keys_are_stable():
    report = status_of(World())
    assert set(report) == {"host", "networks", "endpoints", "peers",
                           "malformed", "errors"}
    assert set(report["host"]) == {
        "bridge", "tunnel_bridge", "datapath", "mode", "tunnel_ip",
        "tunnel_ip_source", "registered", "state_dir", "ovsdb", "vswitchd",
        "docker", "etcd"}
    assert set(report["networks"][0]) == {
        "id", "name", "cluster_name", "key", "vlan", "mtu", "subnets",
        "gateways", "endpoints"}
    assert set(report["endpoints"][0]) == {
        "id", "network_id", "network", "container", "ip", "ipv6", "mac",
        "mtu", "host_if", "peer_if", "veth", "port", "ofport", "tag",
        "state", "problems"}
    assert set(report["peers"][0]) == {"ip", "hostname", "source", "port",
                                       "present", "ofport", "state"}


def test_report_of_a_healthy_host():
    report = status_of(World())
    host = report["host"]
    assert host["mode"] == "etcd" and host["tunnel_ip"] == LOCAL
    assert host["datapath"] == "netdev" and host["registered"] is True
    assert host["ovsdb"] == host["vswitchd"] == host["docker"] == \
        host["etcd"] == "ok"
    assert host["tunnel_bridge"] == "br-ovsgre-tun"
    (net,) = report["networks"]
    assert net == {"id": NET, "name": "blue", "cluster_name": "blue",
                   "key": KEY, "vlan": VLAN, "mtu": MTU,
                   "subnets": ["198.19.0.0/16"],
                   "gateways": ["198.19.0.1/16"], "endpoints": 1}
    (ep,) = report["endpoints"]
    assert ep["container"] == "web" and ep["network"] == "blue"
    assert ep["port"] == HOST_IF and ep["ofport"] == 3 and ep["tag"] == VLAN
    assert ep["veth"] is True and ep["problems"] == []
    assert ep["state"] == "joined" and ep["ip"] == "198.19.0.2/16"
    assert report["peers"] == [{"ip": PEER, "hostname": "h2",
                                "source": "etcd", "port": GRE,
                                "present": True, "ofport": 2,
                                "state": "up"}]
    assert report["errors"] == {}


def test_single_host_report_has_no_peers_and_no_tunnel_bridge():
    report = status_of(World(multi_host=False))
    assert report["host"]["mode"] == "single-host"
    assert report["host"]["tunnel_bridge"] == ""
    assert report["host"]["tunnel_ip"] == ""
    assert report["peers"] == []
    assert report["networks"][0]["key"] is None


def test_endpoint_problems_are_shown():
    world = World()
    world.del_port(HOST_IF)
    del world.links[HOST_IF]
    (ep,) = status_of(world)["endpoints"]
    assert ep["problems"] == ["no veth", "no port"]
    assert ep["port"] is None and ep["ofport"] is None
    world = World()
    world.ports[HOST_IF]["tag"] = 9
    world.links[HOST_IF]["mtu"] = 1300
    assert status_of(world)["endpoints"][0]["problems"] == ["mtu 1300",
                                                            "tag 9"]
    rc, text = run_status(world)
    assert "joined (mtu 1300, tag 9)" in text


def test_peer_states():
    world = World()
    world.hosts["198.18.0.3"] = {"ip": "198.18.0.3", "hostname": "h3"}
    world.add_port("br-ovsgre-tun", "gre-c6120004", None, type="gre",
                   options={"remote_ip": "198.18.0.4"},
                   ids={"owner": "ovsgre", "ovsgre_role": "tunnel",
                        "ovsgre_peer": "198.18.0.4"})
    peers = {p["ip"]: p for p in status_of(world)["peers"]}
    assert peers[PEER]["state"] == "up"
    assert peers["198.18.0.3"]["state"] == "no port"
    assert peers["198.18.0.3"]["present"] is False
    assert peers["198.18.0.3"]["port"] == "gre-c6120003"
    assert peers["198.18.0.4"]["state"] == "no ofport"
    assert peers["198.18.0.4"]["source"] == "port"


def test_tunnel_to_unregistered_peer():
    world = World()
    del world.hosts[PEER]
    (peer,) = status_of(world)["peers"]
    assert peer["state"] == "not registered"


def test_etcd_down_peers_come_from_the_tunnel_ports():
    world = World()
    world.fail["etcd_hosts"] = "etcd unreachable (list): refused"
    report = status_of(world)
    assert "refused" in report["host"]["etcd"]
    assert report["host"]["registered"] is None
    assert report["peers"] == [{"ip": PEER, "hostname": "", "source": "port",
                                "port": GRE, "present": True, "ofport": 2,
                                "state": "up"}]
    assert "etcd" in report["errors"]


def test_docker_unreachable_leaves_names_empty():
    world = World()
    world.fail["docker"] = "Docker API at unix:///x: refused"
    report = status_of(world)
    assert report["networks"][0]["name"] == ""
    assert report["endpoints"][0]["container"] == ""
    assert "refused" in report["host"]["docker"]
    rc, text = run_status(world)
    assert rc == 0
    assert "docker UNREACHABLE" in text and "refused" in text


def test_no_docker_flag_skips_the_docker_api():
    world = World()
    s = settings()
    probe = FakeProbe(world, s)
    args = argparse.Namespace(json=True, no_docker=True, timeout=1.0)
    out = io.StringIO()
    assert status.run(s, args, probe=probe, out=out) == 0
    assert "docker" not in probe.calls
    assert json.loads(out.getvalue())["host"]["docker"] == "-"


def test_ovs_down_still_shows_the_store():
    world = World()
    world.fail["ovsdb"] = "cannot reach OVSDB at unix:/x: refused"
    world.fail["vswitchd"] = "no ovs-vswitchd control socket"
    report = status_of(world)
    (ep,) = report["endpoints"]
    assert ep["problems"] == []   # unknown, not "no port"
    assert ep["ofport"] is None
    assert report["peers"][0]["state"] == "unknown"
    assert "refused" in report["host"]["ovsdb"]
    rc, text = run_status(world)
    assert rc == 0 and "ovsdb UNREACHABLE" in text


def test_unreadable_store_exits_1():
    world = World()
    world.fail["store"] = "state directory /x does not exist"
    rc, text = run_status(world)
    assert rc == 1
    assert "store: state directory /x does not exist" in text
    rc, out = run_status(world, json_out=True)
    assert rc == 1 and json.loads(out)["errors"]["store"]


# ------------------------------------------------------------------ tables

def test_table_aligns_columns_and_marks_empty_cells():
    text = status.table(["A", "LONGER"], [["xyz", ""], ["", 7]])
    assert text.splitlines() == ["A    LONGER", "xyz  -", "-    7"]


def test_status_table_of_a_healthy_host():
    rc, text = run_status(World())
    assert rc == 0
    lines = text.splitlines()
    assert lines[0].startswith("host      bridge br-ovsgre + br-ovsgre-tun,"
                               " datapath netdev, mode etcd, tunnel IP "
                               + LOCAL)
    assert "services  ovsdb ok, ovs-vswitchd ok, docker ok, etcd ok" in text
    assert "NETWORKS (1)" in text and "ENDPOINTS (1)" in text
    assert "PEERS (1)" in text and "ERRORS" not in text
    header = next(l for l in lines if l.startswith("CONTAINER"))
    assert header.split() == ["CONTAINER", "NETWORK", "IP", "MAC", "HOST",
                              "VETH", "OVS", "PORT", "OFPORT", "TAG",
                              "STATE"]
    row = next(l for l in lines if l.startswith("web"))
    for column, value in (("NETWORK", "blue"), ("IP", "198.19.0.2/16"),
                          ("MAC", "02:42:c6:13:00:02"),
                          ("HOST VETH", HOST_IF), ("OVS PORT", HOST_IF),
                          ("OFPORT", "3"), ("TAG", str(VLAN)),
                          ("STATE", "joined")):
        assert row[header.index(column):].startswith(value), (header, row)
    assert len(row) < 110, row   # readable in a wide terminal
    peer = next(l for l in lines if l.startswith(PEER))
    assert GRE in peer and peer.endswith("up")
    net = next(l for l in lines if l.startswith("blue"))
    assert NET[:12] in net and "198.19.0.0/16" in net


def test_status_table_without_port_nor_container_name():
    world = World(multi_host=False)
    world.del_port(HOST_IF)
    world.docker_data["endpoints"] = {}
    rc, text = run_status(world)
    lines = text.splitlines()
    header = next(l for l in lines if l.startswith("CONTAINER"))
    row = next(l for l in lines if l.startswith(f"({EP[:12]})"))
    for column, value in (("HOST VETH", HOST_IF), ("OVS PORT", "-"),
                          ("OFPORT", "-"), ("TAG", "-"),
                          ("STATE", "joined (no port)")):
        assert row[header.index(column):].startswith(value), (header, row)


def test_status_json_is_the_report():
    world = World()
    rc, out = run_status(world, json_out=True)
    assert rc == 0
    assert json.loads(out) == json.loads(json.dumps(status_of(world)))


def test_status_never_pings_nor_reads_flows():
    world = World()
    s = settings()
    probe = FakeProbe(world, s)
    collection.collect(s, probe, deep=False)
    assert not {"ping", "dump_flows", "tx_checksum", "tx_checksum_in",
                "container_netns"} & set(probe.calls)


# --------------------------------------------------------- store, read-only

def test_read_store_takes_no_lock_and_changes_nothing(tmp_path):
    root = tmp_path / "state"
    (root / "networks").mkdir(parents=True)
    (root / "endpoints").mkdir()
    net = {"network_id": "a", "vlan": 1, "mtu": 1500}
    (root / "networks" / "a.json").write_text(json.dumps(net))
    (root / "networks" / ".tmp-b.json").write_text("{partial")
    (root / "endpoints" / "bad.json").write_text("{torn")
    (root / "endpoints" / "list.json").write_text("[1]")
    before = sorted(p.name for p in root.rglob("*"))
    data = localstore.read_store(str(root))
    assert data["networks"] == {"a": net}
    assert data["endpoints"] == {}
    assert len(data["bad"]) == 2 and data["malformed"] == []
    assert sorted(p.name for p in root.rglob("*")) == before  # nothing
    # removed or created (the plugin's .tmp- file stays)


def test_read_store_sets_malformed_records_apart(tmp_path):
    root = tmp_path / "state"
    (root / "endpoints").mkdir(parents=True)
    good = dict(World().store_data["endpoints"][EP])
    (root / "endpoints" / f"{EP}.json").write_text(json.dumps(good))
    broken = dict(good, endpoint_id="f" * 64, mtu="1500", state="gone")
    del broken["host_if"]
    (root / "endpoints" / ("f" * 64 + ".json")).write_text(
        json.dumps(broken))
    data = localstore.read_store(str(root))
    assert list(data["endpoints"]) == [EP] and data["networks"] == {}
    (bad,) = data["malformed"]
    assert bad["kind"] == "endpoints" and bad["id"] == "f" * 64
    assert bad["path"] == str(root / "endpoints" / ("f" * 64 + ".json"))
    assert bad["problems"] == ["no host_if", 'mtu is "1500"',
                               'state is "gone"']
    assert bad["record"] == broken


def test_malformed_record_in_status():
    world = World()
    del world.store_data["endpoints"][EP]["host_if"]
    report = status_of(world)
    assert report["endpoints"] == []
    (bad,) = report["malformed"]
    assert bad["problems"] == ["no host_if"] and bad["id"] == EP
    rc, text = run_status(world)
    assert rc == 0
    assert f"malformed record /nonexistent/state/endpoints/{EP}.json: " \
        "no host_if (see ovsgre doctor)" in text


def test_read_store_of_a_missing_directory_creates_nothing(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ProbeError, match="does not exist"):
        localstore.read_store(str(missing))
    assert not missing.exists()


def test_read_store_tolerates_a_missing_kind(tmp_path):
    (tmp_path / "networks").mkdir()
    assert localstore.read_store(str(tmp_path))["endpoints"] == {}


# ------------------------------------------------------------------- OVSDB

def test_parse_ovsdb_decodes_sets_maps_and_uuids():
    snap = ovsdb_reader.parse_ovsdb(World().rows())
    assert snap["bridges"]["br-ovsgre-tun"]["fail_mode"] == "secure"
    assert snap["bridges"]["br-ovsgre"]["fail_mode"] is None
    assert snap["bridges"]["br-ovsgre"]["ports"] == sorted(
        [HOST_IF, "ovgp-tun"])
    assert snap["ports"][HOST_IF]["bridge"] == "br-ovsgre"
    assert snap["ports"][HOST_IF]["tag"] == VLAN
    assert snap["ports"]["ovgp-tun"]["tag"] is None
    assert snap["ports"][HOST_IF]["interfaces"] == [HOST_IF]
    assert snap["ports"][GRE]["external_ids"]["ovsgre_peer"] == PEER
    assert snap["interfaces"][GRE]["options"]["remote_ip"] == PEER
    assert snap["interfaces"][GRE]["ofport"] == 2
    assert snap["cur_cfg"] == snap["next_cfg"] == 7


class OvsdbServer(threading.Thread):
    """A unix socket that answers one transact like ovsdb-server (in two
    chunks, after an echo request), or never (silent=True)."""

    def __init__(self, path, rows, silent=False):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(1)
        self.rows, self.silent = rows, silent
        self.request = None

    def run(self):
        conn, _ = self.sock.accept()
        with conn:
            data = b""
            while True:
                data += conn.recv(65536)
                try:
                    self.request = json.loads(data)
                    break
                except ValueError:
                    continue
            if self.silent:
                time.sleep(2)
                return
            tables = [op["table"] for op in self.request["params"][1:]]
            reply = json.dumps({"id": self.request["id"], "error": None,
                                "result": [
                {"rows": self.rows[t]} for t in tables]}).encode()
            conn.sendall(b'{"id":"echo","method":"echo","params":[]}')
            conn.sendall(reply[:50])
            time.sleep(0.05)
            conn.sendall(reply[50:])


def test_read_ovsdb_over_a_unix_socket(tmp_path):
    path = str(tmp_path / "db.sock")
    server = OvsdbServer(path, World().rows())
    server.start()
    snap = ovsdb_reader.read_ovsdb("unix:" + path, 2)
    server.join(2)
    assert server.request["method"] == "transact"
    assert server.request["params"][0] == "Open_vSwitch"
    assert all(op["op"] == "select" for op in server.request["params"][1:])
    assert snap["interfaces"][GRE]["ofport"] == 2


def test_read_ovsdb_is_bounded(tmp_path):
    path = str(tmp_path / "db.sock")
    OvsdbServer(path, {}, silent=True).start()
    start = time.monotonic()
    with pytest.raises(ProbeError, match="did not answer within"):
        ovsdb_reader.read_ovsdb("unix:" + path, 0.3)
    assert time.monotonic() - start < 1.5


def test_read_ovsdb_unreachable(tmp_path):
    with pytest.raises(ProbeError, match="cannot reach OVSDB"):
        ovsdb_reader.read_ovsdb("unix:" + str(tmp_path / "none.sock"), 1)
    with pytest.raises(ProbeError, match="only unix: and tcp:"):
        ovsdb_reader.read_ovsdb("ssl:1.2.3.4:6640", 1)


# ------------------------------------------------------------- the probe

def test_vswitchd_control_socket_debian_and_harness_names(tmp_path,
                                                          monkeypatch):
    s = settings(OVSGRE_OVS_RUNDIR=str(tmp_path))
    probe = hostprobe.HostProbe(s, 1.0)
    with pytest.raises(ProbeError, match="no ovs-vswitchd control socket"):
        probe.vswitchd()
    (tmp_path / "ovs-vswitchd.pid").write_text("4321\n")
    (tmp_path / "ovs-vswitchd.4321.ctl").write_text("")
    (tmp_path / "ovs-vswitchd.ctl").write_text("")
    assert probe.vswitchd_ctl_candidates() == [
        str(tmp_path / "ovs-vswitchd.4321.ctl"),
        str(tmp_path / "ovs-vswitchd.ctl")]
    seen = []

    def fake_run(argv, timeout, input_text=None):
        seen.append((argv, timeout))
        ok = argv[-2].endswith("ovs-vswitchd.ctl")
        return (0, "ovs-vswitchd (Open vSwitch) 3.1.0\n", "") if ok \
            else (1, "", "connection refused")
    monkeypatch.setattr(command, "run_argv", fake_run)
    got = probe.vswitchd()
    assert got["ctl"] == str(tmp_path / "ovs-vswitchd.ctl")
    assert seen[0][0][:3] == ["ovs-appctl", "-T", "1"]
    assert seen[0][0][-1] == "version" and all(t <= 2 for _, t in seen)


def test_vswitchd_not_answering(tmp_path, monkeypatch):
    (tmp_path / "ovs-vswitchd.ctl").write_text("")
    probe = hostprobe.HostProbe(settings(OVSGRE_OVS_RUNDIR=str(tmp_path)), 1)
    monkeypatch.setattr(command, "run_argv",
                        lambda argv, timeout, input_text=None:
                        (1, "", "2023|unixctl|WARN|connect failed"))
    with pytest.raises(ProbeError, match="does not answer.*connect failed"):
        probe.vswitchd()


def test_ping_argv_is_bounded_and_parallel(monkeypatch):
    seen = []

    def fake_run(argv, timeout, input_text=None):
        seen.append((argv, timeout))
        return (0, "", "") if argv[-1] == PEER else \
            (1, "1 packets transmitted, 0 received, 100% packet loss", "")
    monkeypatch.setattr(command, "run_argv", fake_run)
    probe = hostprobe.HostProbe(settings(), 1.0)
    got = probe.ping([PEER, "198.18.0.3"], LOCAL)
    assert got[PEER] == (True, "")
    assert got["198.18.0.3"][0] is False
    assert "100% packet loss" in got["198.18.0.3"][1]
    for argv, timeout in seen:
        assert argv[:3] == ["ping", "-c1", "-W1"] and timeout <= 2
        assert argv[argv.index("-I") + 1] == LOCAL


def test_dump_flows_argv(monkeypatch, tmp_path):
    seen = []

    def fake_run(argv, timeout, input_text=None):
        seen.append(argv)
        return 0, "OFPST_FLOW reply (OF1.3) (xid=0x2):\n priority=0 " \
            "actions=drop\n", ""
    monkeypatch.setattr(command, "run_argv", fake_run)
    probe = hostprobe.HostProbe(settings(OVSGRE_OVS_RUNDIR=str(tmp_path)), 2)
    assert probe.dump_flows("br-ovsgre-tun") == ["priority=0 actions=drop"]
    assert seen[0][:3] == ["ovs-ofctl", "-O", "OpenFlow13"]
    assert "--no-stats" in seen[0]
    assert seen[0][-1] == f"unix:{tmp_path}/br-ovsgre-tun.mgmt"


def test_run_argv_is_bounded():
    start = time.monotonic()
    with pytest.raises(ProbeError, match="did not answer within"):
        command.run_argv(["sleep", "5"], 0.2)
    assert time.monotonic() - start < 2
    with pytest.raises(ProbeError, match="not found"):
        command.run_argv(["/nonexistent/ovs-appctl"], 1)


def test_status_datapath_does_not_modprobe(monkeypatch):
    called = []
    monkeypatch.setattr("ovsgre.dataplane.detect_datapath",
                        lambda *a: called.append(a) or "system")
    monkeypatch.setattr(subprocess, "run", lambda argv, *a, **kw:
                        called.append(argv))
    probe = hostprobe.HostProbe(settings(datapath="auto"), 1)
    assert probe.datapath("")[0] in ("system", "netdev")
    assert probe.datapath("", "absent") == ("netdev",
                                            "no openvswitch module")
    assert called == []
    assert hostprobe.HostProbe(settings(datapath="system"), 1) \
        .datapath("netdev") == ("system", "setting")


def test_datapath_auto_follows_the_bridge_then_the_module():
    probe = hostprobe.HostProbe(settings(datapath="auto"), 1)
    assert probe.datapath("netdev", "loaded") == ("netdev", "bridge")
    assert probe.datapath("system", "absent") == ("system", "bridge")
    assert probe.datapath("", "loaded") == ("system",
                                            "openvswitch module loaded")
    assert probe.datapath("", "available") == (
        "system", "openvswitch module available")   # the plugin would load it
    assert probe.datapath("", "absent")[0] == "netdev"


def test_collect_asks_the_datapath_with_the_bridge_type():
    world = World(multi_host=False)
    world.bridges["br-ovsgre"]["datapath_type"] = "system"
    world.module = "loaded"
    obs = observe_world(world)
    assert world.datapath_asked == ("system", "loaded")
    assert obs["ovs_module"] == "loaded"
    assert obs["datapath_source"] == "setting"


def test_kernel_module_is_read_not_loaded(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **kw: calls.append(a))
    real_isdir, real_open = os.path.isdir, open
    mods = tmp_path / "lib"
    release = os.uname().release
    (mods / release).mkdir(parents=True)

    def fake_open(path, *a, **kw):
        if str(path).startswith("/lib/modules/"):
            path = str(mods) + str(path)[len("/lib/modules"):]
        return real_open(path, *a, **kw)
    monkeypatch.setattr("builtins.open", fake_open)
    monkeypatch.setattr(os.path, "isdir", lambda p: False if
                        p == "/sys/module/openvswitch" else real_isdir(p))
    probe = hostprobe.HostProbe(settings(datapath="auto"), 1)
    assert probe.kernel_module() == "absent"
    (mods / release / "modules.dep").write_text(
        "kernel/net/openvswitch/vport-gre.ko.xz: kernel/net/openvswitch/"
        "openvswitch.ko.xz\nkernel/net/openvswitch/openvswitch.ko.xz: "
        "kernel/net/nsh/nsh.ko.xz\n")
    assert probe.kernel_module() == "available"
    (mods / release / "modules.builtin").write_text(
        "kernel/net/openvswitch/openvswitch.ko\n")
    assert probe.kernel_module() == "builtin"
    monkeypatch.setattr(os.path, "isdir", lambda p: True)
    assert probe.kernel_module() == "loaded"
    assert calls == []


# ------------------------------------------------------------------- flows

# `ovs-ofctl -O OpenFlow13 dump-flows --no-stats` of OVS 3.1 after
# installing build_flows(1, {a: 2, b: 3}, {5: 77, 6: 99})
REAL_DUMP = """\
 priority=1,in_port=1 actions=goto_table:1
 priority=1,in_port=2 actions=goto_table:3
 priority=1,in_port=3 actions=goto_table:3
 priority=0 actions=drop
 table=1, priority=1,dl_dst=00:00:00:00:00:00/01:00:00:00:00:00 actions=goto_table:2
 table=1, priority=1,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00 actions=goto_table:4
 table=1, priority=0 actions=drop
 table=2, priority=0 actions=goto_table:4
 table=3, priority=1,tun_id=0x4d actions=push_vlan:0x8100,set_field:4101->vlan_vid,learn(table=2,hard_timeout=300,priority=1,NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:OXM_OF_IN_PORT[]),output:1
 table=3, priority=1,tun_id=0x63 actions=push_vlan:0x8100,set_field:4102->vlan_vid,learn(table=2,hard_timeout=300,priority=1,NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:OXM_OF_IN_PORT[]),output:1
 table=3, priority=0 actions=drop
 table=4, priority=1,dl_vlan=5 actions=pop_vlan,set_field:0x4d->tun_id,output:2,output:3
 table=4, priority=1,dl_vlan=6 actions=pop_vlan,set_field:0x63->tun_id,output:2,output:3
 table=4, priority=0 actions=drop
 table=2, hard_timeout=300, priority=1,vlan_tci=0x0005/0x0fff,dl_dst=02:42:c6:13:00:02 actions=load:0->NXM_OF_VLAN_TCI[],load:0x4d->NXM_NX_TUN_ID[],output:2
"""
# with stats and the plugin's cookie (one tunnel, one network)
REAL_DUMP_STATS = """\
OFPST_FLOW reply (OF1.3) (xid=0x2):
 cookie=0x6f7667, duration=3.802s, table=0, n_packets=1, n_bytes=60, priority=1,in_port=1 actions=goto_table:1
 cookie=0x6f7667, duration=2.714s, table=0, n_packets=0, n_bytes=0, priority=1,in_port=2 actions=goto_table:3
 cookie=0x6f7667, duration=3.802s, table=0, n_packets=0, n_bytes=0, priority=0 actions=drop
 cookie=0x6f7667, duration=3.802s, table=1, n_packets=0, n_bytes=0, priority=1,dl_dst=00:00:00:00:00:00/01:00:00:00:00:00 actions=goto_table:2
 cookie=0x6f7667, duration=3.802s, table=1, n_packets=1, n_bytes=60, priority=1,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00 actions=goto_table:4
 cookie=0x6f7667, duration=3.802s, table=1, n_packets=0, n_bytes=0, priority=0 actions=drop
 cookie=0x6f7667, duration=3.802s, table=2, n_packets=0, n_bytes=0, priority=0 actions=goto_table:4
 cookie=0x6f7667, duration=2.550s, table=3, n_packets=0, n_bytes=0, priority=1,tun_id=0x1 actions=push_vlan:0x8100,set_field:4097->vlan_vid,learn(table=2,hard_timeout=300,priority=1,NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:OXM_OF_IN_PORT[]),output:1
 cookie=0x6f7667, duration=3.802s, table=3, n_packets=0, n_bytes=0, priority=0 actions=drop
 cookie=0x6f7667, duration=2.550s, table=4, n_packets=1, n_bytes=60, priority=1,dl_vlan=1 actions=pop_vlan,set_field:0x1->tun_id,output:2
 cookie=0x6f7667, duration=3.802s, table=4, n_packets=0, n_bytes=0, priority=0 actions=drop
"""


def test_real_ovs_dump_matches_build_flows():
    expected = build_flows(1, {"a": 2, "b": 3}, {5: 77, 6: 99})
    assert flowtable.compare_flows(
        expected, flowtable.parse_dump(REAL_DUMP)) == ([], [])
    expected = build_flows(1, {PEER: 2}, {1: 1})
    assert flowtable.compare_flows(
        expected, flowtable.parse_dump(REAL_DUMP_STATS)) == ([], [])


def test_compare_flows_names_missing_and_unexpected():
    expected = build_flows(1, {"a": 2, "b": 3}, {5: 77, 6: 99})
    actual = [l for l in flowtable.parse_dump(REAL_DUMP)
              if "dl_vlan=6" not in l] + [" table=0, priority=9 "
                                          "actions=drop"]
    missing, unexpected = flowtable.compare_flows(expected, actual)
    assert len(missing) == 1 and "dl_vlan=6" in missing[0]
    assert unexpected == ["table=0,priority=9 actions=drop"]
    # another key for the same VLAN is a difference too
    wrong = [l.replace("0x63->tun_id", "0x64->tun_id")
             for l in flowtable.parse_dump(REAL_DUMP)]
    missing, unexpected = flowtable.compare_flows(expected, wrong)
    assert len(missing) == len(unexpected) == 1


def test_normalize_flow_forms_agree():
    a = flowtable.normalize_flow("table=4,priority=1,dl_vlan=5,actions="
                               "strip_vlan,set_field:77->tun_id,output:2")
    b = flowtable.normalize_flow(" cookie=0x1, duration=9.1s, table=4, "
                               "n_packets=0, n_bytes=0, idle_age=3, "
                               "priority=1,dl_vlan=5 actions=pop_vlan,"
                               "set_field:0x4d->tun_id,output:2")
    assert a == b
    assert flowtable.is_learned(flowtable.normalize_flow(
        "table=2, hard_timeout=300, priority=1,dl_dst=02:00:00:00:00:01 "
        "actions=output:2"))
    assert not flowtable.is_learned(flowtable.normalize_flow(
        "table=2,priority=0,actions=goto_table:4"))


def test_etcd_hosts_and_a_silent_etcd(monkeypatch):
    from ovsgre.cluster import etcd
    from ovsgre.errors import Unavailable
    seen = {}

    class FakeKV:
        # the plugin's own factory, building this fake
        from_settings = classmethod(etcd.EtcdKV.from_settings.__func__)

        def __init__(self, endpoints, timeout, ca, cert, key):
            seen.update(endpoints=endpoints, timeout=timeout)

        def list(self, prefix):
            seen["prefix"] = prefix
            if seen.get("fail"):
                raise Unavailable("etcd unreachable (list): "
                                  "http://198.18.0.254:2379: ")
            return {"/ovsgre/hosts/198.18.0.1": {"ip": LOCAL},
                    "/ovsgre/hosts/198.18.0.2": {"ip": PEER,
                                                 "hostname": "h2"}}

        def close(self):
            seen["closed"] = True
    monkeypatch.setattr(etcd, "EtcdKV", FakeKV)
    probe = hostprobe.HostProbe(settings(), 1.5)
    assert probe.etcd_hosts() == {
        "/ovsgre/hosts/198.18.0.1": {"ip": LOCAL},
        "/ovsgre/hosts/198.18.0.2": {"ip": PEER, "hostname": "h2"}}
    assert seen == {"endpoints": ("http://198.18.0.254:2379",),
                    "timeout": 1.5, "prefix": "/ovsgre/hosts/",
                    "closed": True}
    seen["fail"] = True
    with pytest.raises(ProbeError, match="2379: no answer"):
        probe.etcd_hosts()


HOSTILE_HOSTS = {
    "/ovsgre/hosts/peer-a": {"ip": "peer-a", "hostname": "x"},
    "/ovsgre/hosts/-f": {"ip": "-f"},
    "/ovsgre/hosts/198.18.0.7": {"ip": ["198.18.0.7"]},
    "/ovsgre/hosts/198.18.0.8": "not an object",
}


def test_status_lists_malformed_host_records_and_shows_the_rest():
    """Records other hosts wrote: status neither crashes on them nor
    prints them as they are; they are listed as malformed."""
    world = World()
    world.raw_hosts = dict(HOSTILE_HOSTS)
    world.hosts["198.18.0.3"] = {"ip": "198.18.0.3",
                                 "hostname": "evil\x1b[2J\x1b]0;t\x07\nx"}
    report = status_of(world)
    ips = [p["ip"] for p in report["peers"]]
    assert ips == [PEER, "198.18.0.3"]
    shown = {p["ip"]: p for p in report["peers"]}["198.18.0.3"]["hostname"]
    assert "\x1b" not in shown and "\n" not in shown and shown.isprintable()
    bad = {m["path"] for m in report["malformed"] if m["kind"] == "hosts"}
    assert bad == set(HOSTILE_HOSTS)
    rc, text = run_status(world)
    assert "\x1b" not in text and "/ovsgre/hosts/peer-a" in text


HOSTILE_RECORDS = {
    "/ovsgre/networks/blue": {"name": "blue", "key": "7,actions=drop"},
    "/ovsgre/networks/red": "not an object",
    "/ovsgre/ipam/pools/default/10.9.0.0%2F24": {"pool": "10.9.0.0/24"},
    "/ovsgre/ipam/pools/default/10.8.0.0%2F24": {
        "pool": "10.7.0.0/24", "id": "0" * 32},
    "/ovsgre/ipam/pools/x\x1b[2J/10.6.0.0%2F24": {
        "pool": "10.6.0.0/24", "id": "0" * 32},
    "/ovsgre/keys/7": {"name": ["blue"]},
    "/ovsgre/keys/abc": {"name": "blue"},
    "/ovsgre/declared/web": {"name": "web", "subnets": "10.5.0.0/24"},
}
GOOD_RECORDS = {
    "/ovsgre/networks/green": {"name": "green", "key": 9, "ipv4": [],
                               "ipv6": [], "hosts": ["198.18.0.2"]},
    "/ovsgre/ipam/pools/default/10.1.0.0%2F24": {
        "pool": "10.1.0.0/24", "id": "0" * 32,
        "holders": {"0" * 12: "198.18.0.2"}},
    "/ovsgre/keys/9": {"name": "green"},
    "/ovsgre/declared/db": {"name": "db", "subnets": ["10.4.0.0/24"]},
}


def test_status_lists_malformed_network_and_pool_records():
    world = World()
    world.raw_etcd = dict(HOSTILE_RECORDS, **GOOD_RECORDS)
    report = status_of(world)
    bad = {(m["kind"], m["path"]) for m in report["malformed"]
           if m["kind"] != "hosts"}
    assert {p for _, p in bad} == {cluster.printable(k)
                                   for k in HOSTILE_RECORDS}
    assert {k for k, _ in bad} == {"networks", "pools", "keys", "declared"}
    rc, text = run_status(world)
    assert "\x1b" not in text and "/ovsgre/networks/blue" in text
