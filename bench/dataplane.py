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

    sudo python3 -m bench.dataplane [--seconds 5] [--reps 3]

Writes bench/results/dataplane.{json,md}; removes everything it made.
"""

import argparse
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

from bench.stats import percentile, summary, write_results  # noqa: E402
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

def build_vxlan(cluster, names, hosts, placement):
    made_ns, made_links = [], []

    def cleanup():
        for host, link in reversed(made_links):
            ipn(host.netns.name, "link", "del", link, check=False)
        for ns in made_ns:
            delete_ns(ns)

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
        eps = []
        for i, host in enumerate((h1, h2), start=1):
            link = names("vd")
            ns = make_container_ns(cluster, host, names, link,
                                   f"{VX_NET}{i}", VXLAN_MTU, tx_off=False)
            made_ns.append(ns)
            made_links.append((host, link))
            ipn(host.netns.name, "link", "set", link, "master", "vxbr", "up")
            eps.append(Endpoint(f"{host.hostname}/{ns.name}", f"{VX_NET}{i}",
                                netns=ns.name))
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


# ------------------------------------------------------------ run

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


def run(seconds=5, reps=3, log=print):
    if seconds < 5:
        raise ValueError("seconds must be >= 5")
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
            for _, _, cleanup, _ in built:
                try:
                    cleanup()
                except Exception as e:  # noqa: BLE001
                    log(f"    cleanup error: {e}")
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
            for place in ("same-host", "cross-host"):
                und = (f"{OVS_UNDERLAY}; underlay port {port_type}"
                       if place == "cross-host" else "none (same host)")
                pair(port_type, place, und)
        set_underlay_type(cluster, "system")
    finally:
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
    if "duration_s" in result:
        lines += ["", f"whole run: {result['duration_s']} s"]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    # SIGTERM -> exception, so the finally blocks clean up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = run(args.seconds, args.reps, log=lambda m: print(m, flush=True))
    write_results("dataplane", result, markdown(result))


if __name__ == "__main__":
    main()
