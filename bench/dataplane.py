"""Data-plane performance: ovsgre next to the classic ways, in one run.

Container-to-container TCP throughput (iperf3) and ping RTT for:

  (a) ovsgre itself (dockerd + the plugin, as the e2e tests run it), with
      OVSGRE_PORT_TYPE=system (AF_PACKET ports) and =afxdp-nonpmd (what
      `auto` picks on this kind of machine);
  (b) the same topology built by hand the classic way on the same hosts
      and the same OVS daemons: one netdev bridge `br-hand`, one GRE port
      per peer (fixed key), NORMAL forwarding, each "container" a plain
      netns whose veth host end is an OVS port (system / afxdp-nonpmd);
  (c) a Linux bridge + kernel VXLAN across hosts (Docker overlay's
      dataplane), over a direct veth between the two host namespaces;
  (d) a raw veth pair between the two host namespaces (the limit);

each on one host (two containers) and across two hosts where that makes
sense, plus the time ovs-vswitchd takes to add one port of each type.
The machine is shared and noisy: only the ratios within one run mean
something.  Configurations are built and torn down one after the other.

    sudo python3 -m bench.dataplane [--seconds 5] [--reps 3] [--quick]

Same host, (a) ovsgre vs (b) hand-built with system ports, is also measured
as N interleaved pairs (same_host_pairs: N = 20, 4 with --quick; a first,
then b first, ...), reported as the median of the per-pair ratios a/b with
a 95 % bootstrap interval, with the list of settings in which the two
setups differ as built; --variants measures b with one of them changed
(VARIANTS) against a, to find what makes a gap.  Alone:

    sudo python3 -m bench.dataplane --only-same-host-pairs [--pairs 20]
        [--variants all|b-docker-nat,...]   # -> results/dataplane-pairs.*

Writes bench/results/dataplane.{json,md}; removes everything it made.
"""

import argparse
import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from bench.stats import (bootstrap_paired_ratio_ci, percentile,  # noqa
                         summary, write_results)
from tests.harness import import_busybox  # noqa: E402
from tests.harness._proc import cmdline, pid_alive, terminate  # noqa
from tests.harness._proc import run as sh  # noqa: E402
from tests.harness.cluster import Cluster  # noqa: E402
from tests.harness.sites import (BLUE, IMAGE, start_plugin,  # noqa: E402
                                 tunnels, wait_for)

NETWORK = "blue"
PORT_TYPES = ("system", "afxdp-nonpmd")
IPERF_PORT = 5201
GRE_MTU = 1458          # 1500 underlay - 42 (outer IPv4 + GRE/key + Eth)
VXLAN_MTU = 1450        # 1500 - 50, what Docker's overlay driver uses
HAND_BRIDGE = "br-hand"
HAND_KEY = 4242         # ovsgre allocates keys from 1 upwards
HAND_NET = "198.18.10."
VX_UNDERLAY = "198.18.20."
VX_NET = "198.18.21."
RAW_NET = "198.18.30."
VNI = 42
PORT_ADD_BRIDGE = "br-padd"
PORT_ADD_RUNS = 10

FAMILY = {"a": "ovsgre", "b": "hand-built OVS GRE", "c": "bridge+VXLAN",
          "d": "raw veth"}
OVS_UNDERLAY = ("OVS br-phy (userspace datapath) -> veth -> Linux-bridge "
                "switch netns, 198.18.0.0/24")
PING_TIME = re.compile(r"time=([\d.]+) ms")


# ------------------------------------------------------------ endpoints

class Endpoint:
    """Somewhere to run iperf3/ping: a netns by name or a container PID."""

    def __init__(self, label, ip, netns=None, pid=None):
        self.label, self.ip = label, ip
        if netns is not None:
            self.prefix = ["ip", "netns", "exec", netns]
        else:
            self.prefix = ["nsenter", "-t", str(pid), "-n"]

    def argv(self, *cmd):
        return self.prefix + [str(c) for c in cmd]


_servers = []   # Popen of every iperf3 server we started (killed by PID)


def _stop_server(proc):
    if proc.poll() is None:
        terminate([proc.pid], timeout=3, popen=proc,
                  verify=lambda p: "iperf3" in " ".join(cmdline(p)),
                  what="iperf3 server")
    else:
        proc.wait()
    if proc in _servers:
        _servers.remove(proc)


def _stop_all_servers():
    for proc in list(_servers):
        try:
            _stop_server(proc)
        except Exception:  # noqa: BLE001
            pass


def ping_rtts(client, server, count=50):
    cp = sh(client.argv("ping", "-n", "-c", count, "-i", "0.01", "-w", 20,
                         server.ip), check=False, timeout=40)
    times = [float(t) for t in PING_TIME.findall(cp.stdout)]
    if not times:
        raise RuntimeError(f"ping {client.label} -> {server.ip}: no replies"
                           f"\n{cp.stdout[-500:]}{cp.stderr[-500:]}")
    return times


def wait_reachable(client, server, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        cp = sh(client.argv("ping", "-n", "-c", 1, "-W", 1, server.ip),
                 check=False, timeout=10)
        if cp.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{client.label} cannot ping {server.ip} "
                               f"({server.label}) after {timeout}s")


def iperf_once(client, server, seconds):
    """(Gbit/s received, retransmits) of one iperf3 TCP run."""
    last = ""
    for _ in range(5):   # the server may not listen yet
        cp = sh(client.argv("iperf3", "-c", server.ip, "-p", IPERF_PORT,
                             "-t", seconds, "-J"),
                 check=False, timeout=seconds + 60)
        try:
            data = json.loads(cp.stdout)
        except ValueError:
            data = {"error": (cp.stdout + cp.stderr)[-300:]}
        if "error" not in data:
            end = data["end"]
            return (end["sum_received"]["bits_per_second"] / 1e9,
                    end["sum_sent"].get("retransmits"))
        last = data["error"]
        time.sleep(0.5)
    raise RuntimeError(f"iperf3 {client.label} -> {server.ip}: {last}")


def measure_interleaved(pairs, seconds, reps, log):
    """Like measure() for several (label, client, server) at once, their
    iperf3 runs alternating (a, b, a, b, ...) so that the machine's drift
    hits them alike.  Returns one measure()-style dict per pair."""
    procs = []
    try:
        for _, client, server in pairs:
            proc = subprocess.Popen(
                server.argv("iperf3", "-s", "-p", IPERF_PORT),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True)
            _servers.append(proc)
            procs.append(proc)
        rtts, gbps, retrans = [], [[] for _ in pairs], [[] for _ in pairs]
        for _, client, server in pairs:
            wait_reachable(client, server)
            ping_rtts(client, server, 5)   # warm-up (ARP, flow caches)
            rtts.append(ping_rtts(client, server))
        for i in range(reps):
            for j, (label, client, server) in enumerate(pairs):
                g, r = iperf_once(client, server, seconds)
                gbps[j].append(round(g, 3))
                retrans[j].append(r)
                log(f"    rep {i + 1} {label}: {g:.3f} Gbit/s, {r} "
                    "retransmits")
    finally:
        for proc in procs:
            _stop_server(proc)
    out = []
    for j in range(len(pairs)):
        known = [r for r in retrans[j] if r is not None]
        out.append({
            "gbps": round(statistics.median(gbps[j]), 3),
            "gbps_all": gbps[j],
            "retransmits": statistics.median(known) if known else None,
            "retransmits_all": retrans[j],
            "rtt_p50_ms": round(statistics.median(rtts[j]), 3),
            "rtt_p99_ms": round(percentile(rtts[j], 99), 3),
            "rtt_n": len(rtts[j])})
    return out


def set_underlay_type(cluster, port_type):
    """The underlay NIC's port on br-phy gets the same type as the
    container ports (testbed.md: cross-host traffic crosses it twice)."""
    for host in cluster.hosts:
        value = '""' if port_type == "system" else port_type
        host.ovs.vsctl("set", "Interface", host.underlay_if, f"type={value}")
    for host in cluster.hosts:
        wait_port(host, host.underlay_if, timeout=15)


def measure(client, server, seconds, reps, log):
    proc = subprocess.Popen(
        server.argv("iperf3", "-s", "-p", IPERF_PORT),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    _servers.append(proc)
    try:
        wait_reachable(client, server)
        ping_rtts(client, server, 5)      # warm-up (ARP, flow caches)
        rtts = ping_rtts(client, server)
        gbps, retrans = [], []
        for i in range(reps):
            g, r = iperf_once(client, server, seconds)
            gbps.append(round(g, 3))
            retrans.append(r)
            log(f"    rep {i + 1}: {g:.3f} Gbit/s, {r} retransmits")
        if proc.poll() is not None:
            raise RuntimeError("iperf3 server exited early")
    finally:
        _stop_server(proc)
    known = [r for r in retrans if r is not None]
    return {"gbps": round(statistics.median(gbps), 3), "gbps_all": gbps,
            "retransmits": statistics.median(known) if known else None,
            "retransmits_all": retrans,
            "rtt_p50_ms": round(statistics.median(rtts), 3),
            "rtt_p99_ms": round(percentile(rtts, 99), 3),
            "rtt_n": len(rtts)}


# ------------------------------------------------------------ helpers

def ipn(ns, *args, check=True):
    return sh(["ip", "-n", ns, *[str(a) for a in args]], check=check)


def wait_port(host, name, timeout=10):
    """Wait until vswitchd gave the interface an ofport; raise its error."""
    deadline = time.monotonic() + timeout
    while True:
        out = host.ovs.vsctl("--format=json", "--columns=ofport,error",
                             "list", "Interface", name)
        row = json.loads(out)["data"][0]
        ofport = row[0] if isinstance(row[0], int) else 0
        error = row[1] if isinstance(row[1], str) else ""
        if error or ofport == -1:
            raise RuntimeError(f"{host.hostname}: port {name}: "
                               f"{error or 'ofport -1'}")
        if ofport > 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{host.hostname}: port {name} has no ofport "
                               f"after {timeout}s ({error or row})")
        time.sleep(0.05)


def iface_type_args(name, port_type):
    if port_type in (None, "", "system"):
        return []
    return ["--", "set", "Interface", name, f"type={port_type}"]


class Names:
    """Fresh short names (netns suffixes, link names) for one run."""

    def __init__(self):
        self.n = 0

    def __call__(self, stem):
        self.n += 1
        return f"{stem}{self.n}"


def make_container_ns(cluster, host, names, ifname_host, ip, mtu,
                      tx_off=True):
    """A plain netns 'container' with eth0 (ip/24, mtu) whose veth peer
    `ifname_host` is left in the host netns (down, for the caller)."""
    ns = cluster.add_netns(names("c"))
    hns = host.netns.name
    ipn(hns, "link", "add", ifname_host, "mtu", mtu, "type", "veth",
        "peer", "name", "eth0", "mtu", mtu, "netns", ns.name)
    if tx_off:
        ns.run(["ethtool", "-K", "eth0", "tx", "off"])
    ipn(ns.name, "addr", "add", f"{ip}/24", "dev", "eth0")
    ipn(ns.name, "link", "set", "eth0", "up")
    return ns


def delete_ns(ns):
    for pid in ns.pids():
        if pid != os.getpid() and pid_alive(pid):
            terminate([pid], timeout=3, what=f"{ns.name} leftover")
    ns.delete()


# ------------------------------------------------------------ (b) by hand

def build_hand(cluster, names, hosts, port_type, placement):
    """Returns (client, server, cleanup)."""
    made_ns, made_links, bridges = [], [], []

    def cleanup():
        for host in bridges:
            host.ovs.vsctl("--if-exists", "del-br", HAND_BRIDGE, check=False)
        for host, link in made_links:
            # a variant may have moved the port to another bridge
            host.ovs.vsctl("--if-exists", "del-port", link, check=False)
            ipn(host.netns.name, "link", "del", link, check=False)
        for ns in made_ns:
            delete_ns(ns)

    try:
        h1 = hosts[0]
        h2 = hosts[0] if placement == "same-host" else hosts[1]
        used = [h1] if h1 is h2 else [h1, h2]
        for host in used:
            bridges.append(host)
            host.ovs.vsctl("add-br", HAND_BRIDGE, "--", "set", "bridge",
                           HAND_BRIDGE, "datapath_type=netdev")
        if h1 is not h2:
            for host, peer in ((h1, h2), (h2, h1)):
                host.ovs.vsctl(
                    "add-port", HAND_BRIDGE, "gre-hand", "--", "set",
                    "Interface", "gre-hand", "type=gre",
                    f"options:remote_ip={cluster.host_ip(peer)}",
                    f"options:key={HAND_KEY}")
        eps = []
        for i, host in enumerate((h1, h2), start=1):
            link = names("hd")
            ns = make_container_ns(cluster, host, names, link,
                                   f"{HAND_NET}{i}", GRE_MTU)
            made_ns.append(ns)
            made_links.append((host, link))
            ipn(host.netns.name, "link", "set", link, "up")
            host.ovs.vsctl("add-port", HAND_BRIDGE, link,
                           *iface_type_args(link, port_type))
            wait_port(host, link)
            eps.append(Endpoint(f"{host.hostname}/{ns.name}",
                                f"{HAND_NET}{i}", netns=ns.name))
        seen = sorted({host.ovs.vsctl("get", "Interface", link,
                                      "type").strip().strip('"') or "system"
                       for host, link in made_links})
        return eps[1], eps[0], cleanup, {"port_types_seen": seen}
    except BaseException:
        cleanup()
        raise


# ------------------------------------------------------------ (c) VXLAN

def remover(made_links, made_ns):
    """cleanup() for a builder: deletes made_links (newest first), then
    made_ns; both lists may still grow after this call."""
    def cleanup():
        for host, link in reversed(made_links):
            ipn(host.netns.name, "link", "del", link, check=False)
        for ns in made_ns:
            delete_ns(ns)
    return cleanup


def vxlan_container(cluster, names, host, i, made_ns, made_links):
    """Container i (VX_NET.i) on host's bridge vxbr; returns its Endpoint."""
    link = names("vd")
    ns = make_container_ns(cluster, host, names, link, f"{VX_NET}{i}",
                           VXLAN_MTU, tx_off=False)
    made_ns.append(ns)
    made_links.append((host, link))
    ipn(host.netns.name, "link", "set", link, "master", "vxbr", "up")
    return Endpoint(f"{host.hostname}/{ns.name}", f"{VX_NET}{i}",
                    netns=ns.name)


def build_vxlan(cluster, names, hosts, placement):
    made_ns, made_links = [], []
    cleanup = remover(made_links, made_ns)
    try:
        h1 = hosts[0]
        h2 = hosts[0] if placement == "same-host" else hosts[1]
        used = [h1] if h1 is h2 else [h1, h2]
        if h1 is not h2:
            ipn(h1.netns.name, "link", "add", "vxu", "type", "veth", "peer",
                "name", "vxu", "netns", h2.netns.name)
            made_links.append((h1, "vxu"))
            for i, host in enumerate(used, start=1):
                ipn(host.netns.name, "addr", "add", f"{VX_UNDERLAY}{i}/24",
                    "dev", "vxu")
                ipn(host.netns.name, "link", "set", "vxu", "up")
        for i, host in enumerate(used, start=1):
            hns = host.netns.name
            ipn(hns, "link", "add", "vxbr", "type", "bridge", "stp_state",
                0, "forward_delay", 0)
            made_links.append((host, "vxbr"))
            ipn(hns, "link", "set", "vxbr", "up")
            if h1 is not h2:
                ipn(hns, "link", "add", "vx42", "type", "vxlan", "id", VNI,
                    "local", f"{VX_UNDERLAY}{i}",
                    "remote", f"{VX_UNDERLAY}{3 - i}", "dstport", 4789,
                    "dev", "vxu")
                made_links.append((host, "vx42"))
                ipn(hns, "link", "set", "vx42", "master", "vxbr", "up")
        eps = [vxlan_container(cluster, names, host, i, made_ns, made_links)
               for i, host in enumerate((h1, h2), start=1)]
        return eps[1], eps[0], cleanup, {}
    except BaseException:
        cleanup()
        raise


# ------------------------------------------------------------ (d) raw veth

def build_raw(cluster, names, hosts, placement):
    h1, h2 = hosts[0], hosts[1]

    def cleanup():
        ipn(h1.netns.name, "link", "del", "rawv", check=False)

    try:
        ipn(h1.netns.name, "link", "add", "rawv", "type", "veth", "peer",
            "name", "rawv", "netns", h2.netns.name)
        for i, host in enumerate((h1, h2), start=1):
            ipn(host.netns.name, "addr", "add", f"{RAW_NET}{i}/24", "dev",
                "rawv")
            ipn(host.netns.name, "link", "set", "rawv", "up")
        server = Endpoint(h1.name, f"{RAW_NET}1", netns=h1.netns.name)
        client = Endpoint(h2.name, f"{RAW_NET}2", netns=h2.netns.name)
        return client, server, cleanup, {}
    except BaseException:
        cleanup()
        raise


# ------------------------------------------------------------ (a) ovsgre

class Ovsgre:
    """ovsgre plugins on the cluster's hosts, restartable with another
    OVSGRE_PORT_TYPE (same hosts, same OVS daemons)."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.sites = []
        self.port_type = None
        self.network_created = False
        self.containers = []   # (site, name)

    def start(self, port_type, log):
        self.stop_plugins()
        t0 = time.monotonic()
        for host in self.cluster.hosts:
            self.sites.append(start_plugin(self.cluster, host,
                                           OVSGRE_PORT_TYPE=port_type))
        self.port_type = port_type
        for site in self.sites:
            wait_for(lambda: len(tunnels(site)) == len(self.sites) - 1, 20,
                     "a full mesh")
        if not self.network_created:
            for site in self.sites:
                site.docker("network", "create", "-d", "ovsgre", *BLUE,
                            NETWORK)
            self.network_created = True
        log(f"  ovsgre plugins up with OVSGRE_PORT_TYPE={port_type} "
            f"({time.monotonic() - t0:.1f} s)")

    def stop_plugins(self):
        self.remove_containers()
        for site in self.sites:
            try:
                site.plugin.stop()
            except Exception:  # noqa: BLE001
                pass
        self.sites = []

    def remove_containers(self):
        for site, name in self.containers:
            site.docker("rm", "-f", name, check=False)
        self.containers = []

    def build(self, names, placement):
        s1 = self.sites[0]
        s2 = s1 if placement == "same-host" else self.sites[1]
        eps = []
        try:
            for site in (s1, s2):
                name = names("dp-ctr")
                self.containers.append((site, name))
                site.run_bg(name, NETWORK, "sleep", "3600")
                eps.append(Endpoint(f"{site.host.hostname}/{name}",
                                    site.ip(name, NETWORK),
                                    pid=site.pid(name)))
            seen = set()
            for site in {id(s): s for s in (s1, s2)}.values():
                ovs = site.host.ovs
                for port in ovs.vsctl("list-ports", "br-ovsgre").split():
                    kind = ovs.vsctl("get", "Interface", port,
                                     "type").strip().strip('"') or "system"
                    if kind not in ("patch", "internal"):  # not containers'
                        seen.add(kind)
        except BaseException:
            self.remove_containers()
            raise
        return eps[1], eps[0], self.remove_containers, \
            {"port_types_seen": sorted(seen)}


# ------------------------------------------------------------ port add

def port_add_times(host, runs, log):
    """ms of `ovs-vsctl add-port` (waits for vswitchd) of a fresh veth on
    an otherwise empty netdev bridge, per port type, interleaved."""
    times = {t: [] for t in PORT_TYPES}
    errors = {t: [] for t in PORT_TYPES}
    hns = host.netns.name
    host.ovs.vsctl("add-br", PORT_ADD_BRIDGE, "--", "set", "bridge",
                   PORT_ADD_BRIDGE, "datapath_type=netdev")
    try:
        for i in range(runs):
            order = PORT_TYPES if i % 2 == 0 else PORT_TYPES[::-1]
            for port_type in order:
                name, peer = f"pa{i}{port_type[0]}", f"pb{i}{port_type[0]}"
                ipn(hns, "link", "add", name, "type", "veth", "peer", "name",
                    peer)
                try:
                    ipn(hns, "link", "set", peer, "up")
                    ipn(hns, "link", "set", name, "up")
                    t0 = time.monotonic()
                    host.ovs.vsctl("add-port", PORT_ADD_BRIDGE, name,
                                   *iface_type_args(name, port_type))
                    times[port_type].append((time.monotonic() - t0) * 1000)
                    try:
                        wait_port(host, name, timeout=5)
                    except RuntimeError as e:
                        errors[port_type].append(str(e))
                    host.ovs.vsctl("del-port", PORT_ADD_BRIDGE, name)
                finally:
                    ipn(hns, "link", "del", name, check=False)
    finally:
        host.ovs.vsctl("--if-exists", "del-br", PORT_ADD_BRIDGE, check=False)
    result = {}
    for port_type in PORT_TYPES:
        result[port_type] = summary(times[port_type])
        if errors[port_type]:
            result[port_type]["errors"] = errors[port_type][:3]
        log(f"  add-port {port_type}: p50 {result[port_type]['p50']} ms "
            f"(min {result[port_type]['min']}, max "
            f"{result[port_type]['max']})")
    return result


# ------------------------------------------------------------ same host, pairs

PAIR_SECONDS = 3
SAME_HOST_PAIRS = 20
SAME_HOST_PAIRS_QUICK = 4
FEATURES = ("tx-checksumming", "scatter-gather", "tcp-segmentation-offload",
            "generic-segmentation-offload", "generic-receive-offload",
            "rx-gro-list", "rx-udp-gro-forwarding", "large-receive-offload")
LINK_KEYS = ("mtu", "qdisc", "txqlen", "num_tx_queues", "num_rx_queues",
             "gso_max_size", "gso_max_segs", "gro_max_size", "tso_max_size",
             "operstate")
SYSCTLS = re.compile(r"^net\.(core|ipv4\.tcp_|ipv4\.conf\.(all|default)|"
                     r"ipv6\.conf\.(all|default))")


def _link(prefix, ifname):
    """Kernel settings of one link, from inside its netns (argv prefix)."""
    info = json.loads(sh(prefix + ["ip", "-j", "-d", "link", "show", "dev",
                                   ifname]).stdout)[0]
    out = {k: info.get(k) for k in LINK_KEYS}
    feats = sh(prefix + ["ethtool", "-k", ifname]).stdout
    for line in feats.splitlines():
        key, _, val = line.strip().partition(":")
        if key in FEATURES:
            out[key] = val.split()[0] if val.split() else ""
    ipv6 = sh(prefix + ["sysctl", "-n", f"net.ipv6.conf.{ifname}."
                        "disable_ipv6"], check=False).stdout.strip()
    out["disable_ipv6"] = ipv6 or "n/a"
    out["link_index"] = info.get("link_index")
    return out


def _host_end(host, link_index):
    """Name of the host-netns link with this ifindex (a veth's peer)."""
    for link in json.loads(sh(["ip", "-n", host.netns.name, "-j", "link",
                               "show"]).stdout):
        if link["ifindex"] == link_index:
            return link["ifname"]
    raise RuntimeError(f"{host.hostname}: no link with ifindex {link_index}")


def _ovs_port(host, port):
    ovs = host.ovs
    bridge = ovs.vsctl("port-to-br", port).strip()
    row = {}
    for table, cols in (("Port", "tag,vlan_mode,trunks,other_config,qos"),
                        ("Interface", "type,mtu,options,other_config,"
                         "ingress_policing_rate,admin_state,link_speed")):
        data = json.loads(ovs.vsctl("--format=json", f"--columns={cols}",
                                    "list", table, port))
        for col, val in zip(cols.split(","), data["data"][0]):
            row[f"{table.lower()}.{col}"] = json.dumps(val)
    data = json.loads(ovs.vsctl(
        "--format=json", "--columns=datapath_type,fail_mode,mcast_snooping_"
        "enable,stp_enable,rstp_enable,other_config,protocols,flood_vlans,"
        "netflow,sflow,ipfix,mirrors", "list", "Bridge", bridge))
    for col, val in zip(data["headings"], data["data"][0]):
        row[f"bridge.{col}"] = json.dumps(val)
    row["bridge.ports"] = len(ovs.vsctl("list-ports", bridge).split())
    flows = ovs.ofctl("dump-flows", f"unix:{ovs.rundir}/{bridge}.mgmt")
    row["bridge.flows"] = "; ".join(sorted(
        re.sub(r"(cookie|duration|n_packets|n_bytes|idle_age|hard_age)="
               r"[^, ]+,? ?", "", f).strip()
        for f in flows.splitlines()[1:]))
    return row


def _sysctls(prefix):
    out = sh(prefix + ["sysctl", "-a"], check=False).stdout
    pairs = (line.partition(" = ") for line in out.splitlines())
    return {k: v for k, _, v in pairs if SYSCTLS.match(k)}


def _netfilter(ep):
    """iptables tables and rules in the endpoint's netns: any table there
    (nat above all) makes the kernel run conntrack on every packet."""
    rules = sh(ep.argv("iptables-save"), check=False).stdout.splitlines()
    return {"netfilter.tables": ",".join(
        sorted(r[1:] for r in rules if r.startswith("*"))) or "none",
        "netfilter.rules": sum(r.startswith("-A ") for r in rules)}


def describe(host, ep):
    """Everything that could make one same-host setup forward differently
    from another: both veth ends (MTU, qdisc, offloads, GSO/GRO limits),
    the OVS port and its bridge (tag, type, flows), the netns sysctls."""
    inner = _link(ep.prefix, "eth0")
    host_if = _host_end(host, inner.pop("link_index"))
    outer = _link(["ip", "netns", "exec", host.netns.name], host_if)
    outer.pop("link_index")
    flat = {f"container.{k}": v for k, v in inner.items()}
    flat.update({f"host_end.{k}": v for k, v in outer.items()})
    flat.update({f"ovs.{k}": v for k, v in _ovs_port(host, host_if).items()})
    flat.update({f"sysctl.{k}": v for k, v in _sysctls(ep.prefix).items()})
    flat.update(_netfilter(ep))
    flat["host_end.name"] = host_if
    return flat


def setup_differences(host, a_eps, b_eps):
    """{setting: [a, b]} for every setting in which the two setups differ
    (client and server endpoint each; names and per-port values that
    must differ are left out)."""
    diffs = {}
    for role, a_ep, b_ep in zip(("client", "server"), a_eps, b_eps):
        a, b = describe(host, a_ep), describe(host, b_ep)
        for key in sorted(set(a) | set(b)):
            if key == "host_end.name":
                continue
            if a.get(key) != b.get(key):
                diffs[f"{role}.{key}"] = [a.get(key), b.get(key)]
    return diffs


def _start_server(server):
    proc = subprocess.Popen(
        server.argv("iperf3", "-s", "-p", IPERF_PORT),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    _servers.append(proc)
    return proc


def paired_series(a, b, n, seconds, log):
    """n pairs of iperf3 runs, a = (client, server) and b back to back,
    a first in even pairs and b first in odd ones (so that neither side
    always gets the warmer or the cooler slot).  Returns ([a Gbit/s],
    [b Gbit/s], [a retransmits], [b retransmits], [1-min load average
    after each pair])."""
    procs, loads = [], []
    got = {"a": ([], []), "b": ([], [])}
    try:
        for client, server in (a, b):
            procs.append(_start_server(server))
        for client, server in (a, b):
            wait_reachable(client, server)
            ping_rtts(client, server, 5)     # warm-up (ARP, flow caches)
        for i in range(n):
            order = (("a", a), ("b", b)) if i % 2 == 0 else \
                (("b", b), ("a", a))
            for side, (client, server) in order:
                g, r = iperf_once(client, server, seconds)
                got[side][0].append(round(g, 3))
                got[side][1].append(r)
            ga, gb = got["a"][0][-1], got["b"][0][-1]
            loads.append(_loadavg()[0])
            log(f"    pair {i + 1}/{n} ({order[0][0]} first): a {ga:.3f} "
                f"b {gb:.3f} Gbit/s, a/b {ga / gb:.3f}, load {loads[-1]}")
    finally:
        for proc in procs:
            _stop_server(proc)
    return got["a"][0], got["b"][0], got["a"][1], got["b"][1], loads


def pair_summary(a_gbps, b_gbps, a_retrans=(), b_retrans=(), loads=()):
    """Median of the per-pair ratios a/b and its 95 % bootstrap interval
    (pairs resampled, fixed seed); `significant` when 1.0 is outside."""
    ratios = [round(x / y, 3) for x, y in zip(a_gbps, b_gbps) if y]
    ci = bootstrap_paired_ratio_ci(a_gbps, b_gbps)
    first_a, first_b = ratios[0::2], ratios[1::2]
    return {
        "pairs": len(ratios),
        "ratio_median": round(statistics.median(ratios), 3) if ratios
        else None,
        "ci95": ci,
        "significant": bool(ci) and not ci[0] <= 1.0 <= ci[1],
        "ratio_median_a_first": round(statistics.median(first_a), 3)
        if first_a else None,
        "ratio_median_b_first": round(statistics.median(first_b), 3)
        if first_b else None,
        "a_median_gbps": round(statistics.median(a_gbps), 3)
        if a_gbps else None,
        "b_median_gbps": round(statistics.median(b_gbps), 3)
        if b_gbps else None,
        "ratios": ratios, "a_gbps": list(a_gbps), "b_gbps": list(b_gbps),
        "a_retransmits": list(a_retrans), "b_retransmits": list(b_retrans),
        "load_1min": list(loads)}


def measure_variant(name, cluster, names, a, n, seconds, log):
    """n pairs of a against a fresh hand-built b changed by
    VARIANTS[name] (removed again afterwards, so variants never add up)."""
    what, apply = VARIANTS[name]
    log(f"  variant {name}: {what}")
    host = cluster.hosts[0]
    try:
        client, server, cleanup, _ = build_hand(
            cluster, names, cluster.hosts, "system", "same-host")
    except Exception as e:  # noqa: BLE001
        log(f"    FAILED to build: {e}")
        return {"what": what, "error": f"build failed: {e}"}
    try:
        b = (client, server)
        apply(host, a, b)
        got = pair_summary(*paired_series(a, b, n, seconds, log))
        got["differences"] = setup_differences(host, a, b)
        log(f"    a/b median {got['ratio_median']}, 95% CI {got['ci95']}; "
            f"still differs: {', '.join(got['differences']) or 'nothing'}")
    except Exception as e:  # noqa: BLE001
        log(f"    FAILED: {e}")
        got = {"error": f"failed: {e}"}
    finally:
        cleanup()
    return dict(got, what=what)


def same_host_pairs(cluster, ovsgre, names, n, seconds, log, variants=()):
    """(a) ovsgre and (b) the hand-built setup, two containers on one host,
    system ports (ovsgre must run with OVSGRE_PORT_TYPE=system): how they
    differ as built, n interleaved pairs, then each variant (a change to
    b, see VARIANTS) measured against a with n pairs of its own."""
    out = {"port_type": "system", "seconds": seconds,
           "load_avg_before": _loadavg()}
    log(f"- same host, system ports: {n} interleaved pairs of iperf3 "
        f"{seconds} s, (a) ovsgre vs (b) hand-built")
    built = []
    try:
        built.append(ovsgre.build(names, "same-host"))
        built.append(build_hand(cluster, names, cluster.hosts, "system",
                                "same-host"))
        a, b = [(client, server) for client, server, _, _ in built]
        host = cluster.hosts[0]
        out["differences"] = setup_differences(host, a, b)
        for key, (va, vb) in out["differences"].items():
            log(f"    differs: {key}: a {va} | b {vb}")
        out.update(pair_summary(*paired_series(a, b, n, seconds, log)))
        out["load_avg_after"] = _loadavg()
        log(f"    a/b median {out['ratio_median']}, 95% CI {out['ci95']} "
            f"({out['pairs']} pairs)")
        built.pop()[2]()      # each variant builds a b of its own
        out["variants"] = {name: measure_variant(name, cluster, names, a,
                                                 n, seconds, log)
                           for name in variants}
    finally:
        _clean_up(built, log)
    return out


OTHER_TAG = 4000        # a VLAN no ovsgre network has in this run


def _ports_of(host, eps):
    """Host-side names of the endpoints' veth pairs (their OVS ports)."""
    return [_host_end(host, _link(ep.prefix, "eth0")["link_index"])
            for ep in eps]


def _vary_tag(host, a, b):
    """b's ports get the access VLAN tag ovsgre gave a's ports."""
    tag = host.ovs.vsctl("get", "Port", _ports_of(host, a)[0], "tag").strip()
    for port in _ports_of(host, b):
        host.ovs.vsctl("set", "Port", port, f"tag={tag}")


def _vary_bridge(host, a, b):
    """b's ports move to ovsgre's bridge, on a VLAN of their own."""
    ports = _ports_of(host, b)
    for port in ports:
        host.ovs.vsctl("del-port", port, "--", "add-port", "br-ovsgre",
                       port, f"tag={OTHER_TAG}")
    for port in ports:
        wait_port(host, port)


def _vary_ipv6(host, a, b):
    """IPv6 off in b's netns and on both ends of its veths, as Docker and
    ovsgre have it for an IPv4-only network."""
    for ep in b:
        for conf in ("all", "default", "eth0"):
            sh(ep.argv("sysctl", "-qw",
                       f"net.ipv6.conf.{conf}.disable_ipv6=1"))
    for port in _ports_of(host, b):
        sh(["ip", "netns", "exec", host.netns.name, "sysctl", "-qw",
            f"net.ipv6.conf.{port}.disable_ipv6=1"])


def _vary_nat(host, a, b):
    """b's netns get the iptables rules Docker put in a's containers (the
    embedded DNS server's DNAT/SNAT for 127.0.0.11: a nat table, so
    conntrack runs on every packet of the netns)."""
    rules = sh(a[0].argv("iptables-save")).stdout
    if "*nat" not in rules:
        raise RuntimeError("a's container has no nat table to copy")
    for ep in b:
        sh(ep.argv("iptables-restore"), input=rules)


def _vary_all(host, a, b):
    """Every difference found, removed."""
    for vary in (_vary_bridge, _vary_ipv6, _vary_nat):
        vary(host, a, b)


# Docker puts a nat table (its embedded DNS server's rules) into every
# container on a user-defined network, ovsgre's included: conntrack then
# runs on every packet there.  b with the same rules is the like-for-like
# comparison; measured with the pairs unless asked otherwise.
DEFAULT_VARIANTS = ("b-docker-nat",)

# name -> (what, apply(host, a, b)); a, b = (client, server); b is a fresh
# hand-built setup for each variant, removed afterwards
VARIANTS = {
    "b-tagged": ("b's ports with ovsgre's access VLAN tag", _vary_tag),
    "b-ipv6-off": ("b with IPv6 off (netns and both veth ends), as ovsgre",
                   _vary_ipv6),
    "b-on-br-ovsgre": ("b's ports on ovsgre's bridge br-ovsgre (VLAN "
                       f"{OTHER_TAG})", _vary_bridge),
    "b-docker-nat": ("b's netns with the nat rules Docker puts in every "
                     "container (embedded DNS), so conntrack runs there too",
                     _vary_nat),
    "b-as-a": (f"b on br-ovsgre (VLAN {OTHER_TAG}), IPv6 off, Docker's nat "
               "rules: every difference found, removed", _vary_all),
}


# ------------------------------------------------------------ run

def _pairs_part(result, cluster, ovsgre, names, pairs, variants, log):
    """result["same_host_pairs"] = same_host_pairs(), or on failure
    result["same_host_pairs_error"] (readers of the former expect a
    complete summary)."""
    try:
        result["same_host_pairs"] = same_host_pairs(
            cluster, ovsgre, names, pairs, PAIR_SECONDS, log, variants)
    except Exception as e:  # noqa: BLE001
        log(f"    FAILED: {e}")
        result["same_host_pairs_error"] = f"failed: {e}"


def _clean_up(built, log):
    """Undo what each builder made, whatever failed before."""
    for _, _, cleanup, _ in built:
        try:
            cleanup()
        except Exception as e:  # noqa: BLE001
            log(f"    cleanup error: {e}")


def _tear_down(cluster, ovsgre, log):
    """Servers, plugins, containers, then the cluster: each step runs
    whatever failed before it."""
    _stop_all_servers()
    try:
        ovsgre.stop_plugins()
    except Exception as e:  # noqa: BLE001
        log(f"stopping plugins: {e}")
    for host in cluster.hosts:
        if host.docker:
            try:
                host.docker.remove_all_containers()
            except Exception:  # noqa: BLE001
                pass
    cluster.stop()


@contextlib.contextmanager
def two_hosts(log):
    """(names, cluster, ovsgre): 2 namespace hosts with etcd, dockerd and
    ovsgre (system ports) up, and the network made; all removed after."""
    names = Names()
    cluster = Cluster(n_hosts=2, etcd=True, docker=True)
    ovsgre = Ovsgre(cluster)
    try:
        log(f"starting 2 namespace hosts ({cluster.prefix}) ...")
        cluster.start()
        for host in cluster.hosts:
            import_busybox(host.docker)
        ovsgre.start("system", log)
        yield names, cluster, ovsgre
    finally:
        _tear_down(cluster, ovsgre, log)


def run_same_host_pairs(pairs=SAME_HOST_PAIRS, seconds=PAIR_SECONDS,
                        variants=DEFAULT_VARIANTS, log=print):
    """Only the same-host pairs (and variants), on a test bed of their own
    (2 namespace hosts, etcd, dockerd, ovsgre with system ports)."""
    t_start = time.monotonic()
    with two_hosts(log) as (names, cluster, ovsgre):
        result = same_host_pairs(cluster, ovsgre, names, pairs, seconds, log,
                                 variants)
    result["duration_s"] = round(time.monotonic() - t_start, 1)
    return result


def _loadavg():
    with open("/proc/loadavg") as fh:
        return [float(x) for x in fh.read().split()[:3]]



def _config(letter, port_type, placement, underlay):
    label = FAMILY[letter] + (f", {port_type}" if port_type else "")
    return {"name": f"({letter}) {label}, {placement}",
            "family": FAMILY[letter], "port_type": port_type,
            "placement": placement, "underlay": underlay}


def _ratio(by_key, num, den):
    a, b = by_key.get(num), by_key.get(den)
    if not a or not b or not a.get("gbps") or not b.get("gbps"):
        return None
    return round(a["gbps"] / b["gbps"], 3)


def ratios(configs):
    by_key = {(c["family"], c["port_type"], c["placement"]): c
              for c in configs}
    a, b = FAMILY["a"], FAMILY["b"]
    out = {}
    for place in ("cross-host", "same-host"):
        out[f"{place} a/b system"] = _ratio(
            by_key, (a, "system", place), (b, "system", place))
        out[f"{place} a/b afxdp-nonpmd"] = _ratio(
            by_key, (a, "afxdp-nonpmd", place), (b, "afxdp-nonpmd", place))
        out[f"{place} a(auto)/b(system)"] = _ratio(
            by_key, (a, "afxdp-nonpmd", place), (b, "system", place))
        out[f"{place} a(system)/c"] = _ratio(
            by_key, (a, "system", place), (FAMILY["c"], None, place))
        out[f"{place} a/c"] = _ratio(
            by_key, (a, "afxdp-nonpmd", place), (FAMILY["c"], None, place))
        out[f"{place} a/d"] = _ratio(
            by_key, (a, "afxdp-nonpmd", place),
            (FAMILY["d"], None, "cross-host"))
    out["cross-host c/d"] = _ratio(by_key, (FAMILY["c"], None, "cross-host"),
                                   (FAMILY["d"], None, "cross-host"))
    return out


def run(seconds=5, reps=3, log=print, pairs=None,
        variants=DEFAULT_VARIANTS):
    """pairs: interleaved same-host pairs (same_host_pairs); None = 20, or
    4 for a quick run (reps 1, what `python -m bench --quick` asks), 0 =
    none; variants: names from VARIANTS measured after them (by default
    b-docker-nat, the like-for-like comparison)."""
    if seconds < 5:
        raise ValueError("seconds must be >= 5")
    if pairs is None:
        pairs = SAME_HOST_PAIRS_QUICK if reps <= 1 else SAME_HOST_PAIRS
    t_start = time.monotonic()
    names = Names()
    cluster = Cluster(n_hosts=2, etcd=True, docker=True)
    ovsgre = Ovsgre(cluster)
    configs = []
    result = {"seconds": seconds, "reps": reps, "configs": configs}

    def do(letter, port_type, placement, underlay, build):
        cfg = _config(letter, port_type, placement, underlay)
        log(f"- {cfg['name']}")
        t0 = time.monotonic()
        try:
            client, server, cleanup, extra = build()
        except Exception as e:  # noqa: BLE001
            cfg.update(gbps=None, error=f"build failed: {e}")
            log(f"    FAILED to build: {e}")
            configs.append(cfg)
            return
        try:
            cfg.update(extra)
            cfg["client"], cfg["server"] = client.label, server.label
            cfg.update(measure(client, server, seconds, reps, log))
            log(f"    median {cfg['gbps']} Gbit/s, RTT p50 "
                f"{cfg['rtt_p50_ms']} ms p99 {cfg['rtt_p99_ms']} ms")
        except Exception as e:  # noqa: BLE001
            cfg.update(gbps=None, error=f"measure failed: {e}")
            log(f"    FAILED: {e}")
        finally:
            try:
                cleanup()
            except Exception as e:  # noqa: BLE001
                log(f"    cleanup error: {e}")
        cfg["wall_s"] = round(time.monotonic() - t0, 1)
        configs.append(cfg)

    def pair(port_type, place, underlay):
        """(a) and (b) built side by side, measured interleaved."""
        cfgs = [_config(x, port_type, place, underlay) for x in "ab"]
        log(f"- {cfgs[0]['name']} | {cfgs[1]['name']}")
        t0 = time.monotonic()
        built = []
        try:
            built.append(ovsgre.build(names, place))
            built.append(build_hand(cluster, names, hosts, port_type,
                                    place))
            pairs = [(x, client, server) for x, (client, server, _, _)
                     in zip("ab", built)]
            for cfg, (client, server, _, extra), got in zip(
                    cfgs, built, measure_interleaved(pairs, seconds, reps,
                                                     log)):
                cfg.update(extra, client=client.label, server=server.label)
                cfg.update(got)
                log(f"    {cfg['name']}: median {cfg['gbps']} Gbit/s, RTT "
                    f"p50 {cfg['rtt_p50_ms']} ms p99 {cfg['rtt_p99_ms']}")
        except Exception as e:  # noqa: BLE001
            for cfg in cfgs:
                cfg.setdefault("gbps", None)
                cfg.setdefault("error", f"failed: {e}")
            log(f"    FAILED: {e}")
        finally:
            _clean_up(built, log)
        for cfg in cfgs:
            cfg["wall_s"] = round(time.monotonic() - t0, 1)
            configs.append(cfg)

    try:
        log(f"starting 2 namespace hosts ({cluster.prefix}) ...")
        cluster.start()
        for host in cluster.hosts:
            import_busybox(host.docker)
        hosts = cluster.hosts
        log("port add time (ovs-vsctl add-port, waits for vswitchd), "
            f"{PORT_ADD_RUNS} each, on {hosts[0].hostname}:")
        result["port_add_ms"] = port_add_times(hosts[0], PORT_ADD_RUNS, log)

        direct = (f"direct veth between the host namespaces (plain kernel), "
                  f"{VX_UNDERLAY}0/24")
        do("d", None, "cross-host", "none (the veth pair is the path)",
           lambda: build_raw(cluster, names, hosts, "cross-host"))
        do("c", None, "same-host", "none (same host)",
           lambda: build_vxlan(cluster, names, hosts, "same-host"))
        do("c", None, "cross-host", direct,
           lambda: build_vxlan(cluster, names, hosts, "cross-host"))

        for port_type in PORT_TYPES:
            set_underlay_type(cluster, port_type)
            log(f"  underlay ports on br-phy: {port_type}")
            ovsgre.start(port_type, log)
            if port_type == "system" and pairs:
                _pairs_part(result, cluster, ovsgre, names, pairs, variants,
                            log)
            for place in ("same-host", "cross-host"):
                und = (f"{OVS_UNDERLAY}; underlay port {port_type}"
                       if place == "cross-host" else "none (same host)")
                pair(port_type, place, und)
        set_underlay_type(cluster, "system")
    finally:
        _tear_down(cluster, ovsgre, log)
    result["ratios"] = ratios(configs)
    result["hosts"] = {"prefix": cluster.prefix, "n": 2,
                       "ovs": "userspace (netdev) datapath, own ovs-vswitchd "
                              "per host namespace"}
    result["duration_s"] = round(time.monotonic() - t_start, 1)
    return result


# ------------------------------------------------------------ output

def _fmt(value):
    return "n/a" if value is None else str(value)


def markdown(result):
    lines = [f"iperf3 TCP, {result['seconds']} s x {result['reps']} reps "
             "(median; all runs in brackets), client -> server container; "
             "ping -c 50 -i 0.01.", "",
             "| config | family | port type | placement | Gbit/s | runs "
             "| retransmits | RTT p50 ms | RTT p99 ms | underlay |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for c in result["configs"]:
        runs = ", ".join(str(g) for g in c.get("gbps_all", []))
        gbps = _fmt(c.get("gbps"))
        if c.get("error"):
            gbps = f"FAILED: {c['error'][:120]}".replace("|", "/") \
                .replace("\n", " ")
        port = c["port_type"] or "-"
        seen = c.get("port_types_seen")
        if seen and seen != [c["port_type"]]:
            port += f" (OVS shows {'/'.join(seen)})"
        lines.append(
            f"| {c['name']} | {c['family']} | {port} | {c['placement']} | "
            f"{gbps} | {runs} | {_fmt(c.get('retransmits'))} | "
            f"{_fmt(c.get('rtt_p50_ms'))} | {_fmt(c.get('rtt_p99_ms'))} | "
            f"{c['underlay']} |")
    lines += ["", "Ratios of median Gbit/s (a = ovsgre, b = hand-built OVS "
              "GRE, c = Linux bridge + VXLAN, d = raw veth between host "
              "namespaces; a without a port type = afxdp-nonpmd, what auto "
              "picks here; a/d uses the one raw-veth figure for both "
              "placements):", "", "| ratio | value |", "|---|---|"]
    for name, value in result["ratios"].items():
        lines.append(f"| {name} | {_fmt(value)} |")
    lines += ["", "`ovs-vsctl add-port` of a fresh veth to an empty netdev "
              "bridge (waits for ovs-vswitchd), ms:", "",
              "| port type | n | p50 | p99 | min | max |",
              "|---|---|---|---|---|---|"]
    for port_type, s in result.get("port_add_ms", {}).items():
        lines.append(f"| {port_type} | {s['n']} | {s['p50']} | {s['p99']} | "
                     f"{s['min']} | {s['max']} |")
    if result.get("same_host_pairs"):
        lines += [""] + pairs_markdown(result["same_host_pairs"])
    if result.get("same_host_pairs_error"):
        lines += ["", "Same-host pairs FAILED: "
                  + result["same_host_pairs_error"]]
    if "duration_s" in result:
        lines += ["", f"whole run: {result['duration_s']} s"]
    return "\n".join(lines) + "\n"


def _pairs_row(name, what, s):
    if s.get("error"):
        return f"| {name} | {what} | FAILED: {s['error'][:100]} ||||||"
    ci = s.get("ci95") or [None, None]
    return (f"| {name} | {what} | {s['pairs']} | {s['a_median_gbps']} | "
            f"{s['b_median_gbps']} | **{s['ratio_median']}** | "
            f"[{_fmt(ci[0])}, {_fmt(ci[1])}] | "
            f"{'yes' if s['significant'] else 'no'} | "
            f"{s['ratio_median_a_first']} / {s['ratio_median_b_first']} |")


def pairs_markdown(sp):
    """Lines for the same-host pairs section (result['same_host_pairs'])."""
    lines = [f"Same host, system ports: (a) ovsgre vs (b) hand-built, "
             f"{sp.get('pairs')} interleaved pairs of iperf3 TCP "
             f"{sp.get('seconds')} s (a first in odd pairs, b first in "
             "even ones); median of the per-pair ratios a/b with a 95 % "
             "bootstrap interval (pairs resampled, fixed seed). Load "
             f"average before/after: {sp.get('load_avg_before')} / "
             f"{sp.get('load_avg_after')}.", ""]
    if sp.get("error"):
        return lines + [f"FAILED: {sp['error']}"]
    lines += ["| comparison | b is | pairs | a Gbit/s (median) | "
              "b Gbit/s (median) | a/b median | 95 % CI | 1.0 outside CI "
              "| a/b when a first / b first |", "|---|---|---|---|---|---|"
              "---|---|---|",
              _pairs_row("a vs b", "hand-built as it is", sp)]
    for name, s in sp.get("variants", {}).items():
        lines.append(_pairs_row(f"a vs {name}", s.get("what", ""), s))
    lines += ["", "Per-pair a/b: " + ", ".join(str(r) for r in
                                                 sp.get("ratios", [])),
              "", "How the two setups differ as built (a | b):", ""]
    diffs = sp.get("differences") or {}
    lines += [f"- `{k}`: {va} | {vb}" for k, (va, vb) in diffs.items()]
    if not diffs:
        lines.append("- nothing found")
    for name, s in sp.get("variants", {}).items():
        if "differences" in s:
            left = ", ".join(f"`{k}`" for k in sorted(
                {k.split(".", 1)[1] for k in s["differences"]}))
            lines.append(f"- with {name}, still: {left or 'nothing'}")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help=f"reps 1 and {SAME_HOST_PAIRS_QUICK} same-host "
                        "pairs (a smoke run)")
    parser.add_argument("--pairs", type=int, default=None,
                        help=f"same-host pairs ({SAME_HOST_PAIRS}, "
                        f"{SAME_HOST_PAIRS_QUICK} with --quick; 0: none)")
    parser.add_argument("--pair-seconds", type=int, default=PAIR_SECONDS,
                        help="iperf3 seconds per run of a pair (with "
                        "--only-same-host-pairs)")
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                        help="comma-separated changes to b measured against "
                        "a after the pairs, 'all' or 'none' (default: "
                        f"{','.join(DEFAULT_VARIANTS)}): "
                        + ", ".join(VARIANTS))
    parser.add_argument("--only-same-host-pairs", action="store_true",
                        help="only the same-host pairs (and --variants); "
                        "writes bench/results/dataplane-pairs.{json,md}")
    args = parser.parse_args()
    variants = list(VARIANTS) if args.variants == "all" else \
        [v for v in args.variants.split(",") if v and v != "none"]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants: {', '.join(sorted(unknown))}")
    pairs = args.pairs if args.pairs is not None else \
        SAME_HOST_PAIRS_QUICK if args.quick else SAME_HOST_PAIRS
    # SIGTERM -> exception, so the finally blocks clean up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    log = lambda m: print(m, flush=True)  # noqa: E731
    suffix = "-quick" if args.quick else ""
    if args.only_same_host_pairs:
        result = run_same_host_pairs(pairs, args.pair_seconds, variants, log)
        write_results("dataplane-pairs" + suffix, result,
                      "\n".join(pairs_markdown(result)) + "\n")
        return
    result = run(args.seconds, 1 if args.quick else args.reps, log=log,
                 pairs=pairs, variants=variants)
    write_results("dataplane" + suffix, result, markdown(result))


if __name__ == "__main__":
    main()
