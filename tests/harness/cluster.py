"""A multi-host test bed: N simulated hosts on one L2 underlay, plus etcd.

    with Cluster(n_hosts=3) as c:
        h1, h2, h3 = c.hosts
        c.host_ip(h1)            # "198.18.0.1"
        c.etcd.url               # "http://198.18.0.254:2379"
        c.plugin_env(h1)         # OVSGRE_ETCD / OVSGRE_LOCAL_IP / ...

Layout (prefix = e.g. "ovgt-ab12cd"):
  <prefix>-sw     switch netns: Linux bridge br0 (tx offload off on br0 and
                  every port, MAC pinned to 02:00:c6:12:00:fe), 198.18.0.254
                  on br0, etcd listening there.
                  Files: /tmp/ovgt/<prefix>-sw/{etcd0.data,etcd0.log}
  <prefix>-hN     TestHost N (own OVS + dockerd).  With the kernel
                  datapath (datapath.KERNEL) the underlay address
                  198.18.0.N/24 sits on its veth eth0, an ordinary kernel
                  interface: container -> kernel OVS -> kernel GRE -> eth0,
                  as on a real host.  With the userspace datapath eth0 is
                  a port of the OVS netdev bridge br-phy, and the host's
                  underlay address 198.18.0.N/24 sits on br-phy (the internal
                  port), so vswitchd itself can route/ARP for userspace
                  tunnels (testbed.md).  `ethtool -K br-phy tx off` keeps the
                  host's own TCP (e.g. to etcd) working.  eth0 gets NOARP and
                  no IPv6, so the kernel never answers for the host on it.
                  br-phy's MAC is fixed: 02:00:<IPv4 bytes> (02:00:c6:12:00:01).

Everything is removed by stop(), also after partial start failures.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional, Union

from ._proc import cmdline, pid_alive, run, terminate, unmount_under
from .etcd import EtcdServer
from .datapath import KERNEL
from .host import BASE_ROOT, TestHost, Underlay, _register, _unregister
from .netns import Netns, link_json, unique_prefix

log = logging.getLogger("ovsgre.harness")

DAEMON_CONFIG = {"default-address-pools": [{"base": "198.19.128.0/17",
                                            "size": 24}]}
PHY_BRIDGE = "br-phy"
LEASE_TTL = "3"

NsArg = Union[Netns, TestHost, str]


def _as_netns(ns: NsArg) -> Netns:
    if isinstance(ns, TestHost):
        return ns.netns
    if isinstance(ns, Netns):
        return ns
    return Netns(str(ns))


def _mac_for(ip: str) -> str:
    """Fixed, readable MAC for an underlay IPv4: 02:00:<4 address bytes>."""
    return "02:00:%02x:%02x:%02x:%02x" % tuple(
        ipaddress.ip_address(ip).packed)


# ---------------------------------------------------------------- capture

class Capture:
    """`tcpdump -nn -e -l` on one interface of a netns, in the background.

    start() returns once tcpdump reports it is listening; stop() ends it
    (by PID) and returns the printed packet lines.  With seconds=N tcpdump
    is also stopped automatically after N seconds (stop() then just
    returns the lines).
    """

    def __init__(self, ns: NsArg, ifname: str, bpf_filter: str = "",
                 seconds: Optional[float] = None, extra_args=()):
        self.netns = _as_netns(ns)
        self.ifname = ifname
        self.bpf_filter = bpf_filter or ""
        self.seconds = seconds
        self.extra_args = list(extra_args)
        self.proc: Optional[subprocess.Popen] = None
        self.lines: List[str] = []
        self.stderr: List[str] = []
        self._listening = threading.Event()
        self._readers: list = []
        self._timer: Optional[threading.Timer] = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"Capture({self.netns.name}:{self.ifname} "
                f"{self.bpf_filter!r})")

    @property
    def argv(self) -> list:
        argv = ["tcpdump", "-nn", "-e", "-l", "--immediate-mode",
                "-i", self.ifname, *self.extra_args]
        if self.bpf_filter:
            argv.append(self.bpf_filter)
        return argv

    def _read_out(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def _read_err(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip("\n"))
            if "listening on" in line:
                self._listening.set()
        self._listening.set()  # EOF: tcpdump is gone, stop waiting

    def start(self, timeout: float = 10) -> "Capture":
        if self.proc is not None:
            return self  # already started (e.g. `with c.start_capture(..)`)
        # `ip netns exec` execs tcpdump: the Popen pid is tcpdump's.
        self.proc = subprocess.Popen(
            self.netns.exec_argv(self.argv), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            bufsize=1, start_new_session=True)
        for fn in (self._read_out, self._read_err):
            t = threading.Thread(target=fn, daemon=True)
            t.start()
            self._readers.append(t)
        if not self._listening.wait(timeout) or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError(f"tcpdump {self.argv} did not start: "
                               + "\n".join(self.stderr[-10:]))
        if self.seconds is not None:
            self._timer = threading.Timer(self.seconds, self._end)
            self._timer.daemon = True
            self._timer.start()
        return self

    def _end(self) -> None:
        with self._lock:
            if self.proc is not None and self.proc.poll() is None:
                # SIGTERM: tcpdump flushes its output and exits.
                terminate([self.proc.pid], timeout=3, popen=self.proc,
                          verify=lambda p: "tcpdump" in " ".join(cmdline(p)),
                          what="tcpdump")

    def wait(self) -> List[str]:
        """Wait for the automatic end (seconds=N), then stop()."""
        if self._timer is not None:
            self._timer.join()
        return self.stop()

    def stop(self) -> List[str]:
        """Stop tcpdump (idempotent) and return the captured lines."""
        if self._timer is not None:
            self._timer.cancel()
        if self.proc is None:
            return list(self.lines)
        self._end()
        for t in self._readers:
            t.join(5)
        for f in (self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except Exception:  # noqa: BLE001
                pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            log.error("tcpdump pid %s not reaped", self.proc.pid)
        return list(self.lines)

    def __enter__(self) -> "Capture":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def start_capture(ns: NsArg, ifname: str, bpf_filter: str = "",
                  seconds: Optional[float] = None) -> Capture:
    """Start tcpdump in ns on ifname; returns a Capture (call .stop())."""
    return Capture(ns, ifname, bpf_filter, seconds).start()


def capture(ns: NsArg, ifname: str, bpf_filter: str = "",
            seconds: float = 2) -> List[str]:
    """Capture for `seconds` (blocking) and return the printed lines."""
    return Capture(ns, ifname, bpf_filter, seconds).start().wait()


# ---------------------------------------------------------------- cluster

class Cluster:
    """N TestHosts (netns + OVS + dockerd) on one underlay, and etcd in the
    switch namespace.  See the module docstring for the layout."""

    def __init__(self, prefix: Optional[str] = None, n_hosts: int = 3,
                 etcd: bool = True, subnet: str = "198.18.0.0/24",
                 etcd_tls: bool = False, docker: bool = True,
                 daemon_config: Optional[dict] = None,
                 base_root: str = BASE_ROOT, parallel: bool = True,
                 **host_kw):
        self.prefix = prefix or unique_prefix()
        self.n_hosts = n_hosts
        self.network = ipaddress.ip_network(subnet)
        self.base_root = base_root
        self.parallel = parallel
        self.docker = docker
        self.daemon_config = dict(DAEMON_CONFIG if daemon_config is None
                                  else daemon_config)
        self.host_kw = dict(host_kw)
        # TX checksum offload off where the userspace datapath carries
        # the hosts' own TCP (testbed.md); the kernel path needs nothing.
        self.underlay = Underlay(self.prefix, subnet=subnet,
                                 tx_off=not KERNEL)
        self.switch_ip = str(self.network.broadcast_address - 1)  # .254
        self.switch_dir = os.path.join(base_root, f"{self.prefix}-sw")
        self.etcd: Optional[EtcdServer] = (
            EtcdServer(self.underlay.switch,
                       os.path.join(self.switch_dir, "etcd0.data"),
                       self.switch_ip, tls=etcd_tls) if etcd else None)
        self.hosts: List[TestHost] = []
        self._all_hosts: List[TestHost] = []   # incl. stopped ones
        self._next_index = 1
        self._lock = threading.Lock()
        self._captures: List[Capture] = []
        self._extra_ns: List[Netns] = []
        self._started = False
        self.timings: dict = {}

    def __repr__(self) -> str:
        return f"Cluster({self.prefix!r}, hosts={[h.hostname for h in self.hosts]})"

    # ------------------------------------------------------------ info
    @property
    def switch(self) -> Netns:
        """The switch namespace (Linux bridge `switch_bridge`, etcd)."""
        return self.underlay.switch

    @property
    def switch_bridge(self) -> str:
        return self.underlay.bridge

    def host_ip(self, host: TestHost) -> str:
        return host.underlay_ip

    def host(self, hostname: str) -> TestHost:
        for h in self.hosts:
            if h.hostname == hostname:
                return h
        raise KeyError(hostname)

    def plugin_env(self, host: TestHost) -> dict:
        """Environment for an ovsgre plugin running on host."""
        env = {"OVSGRE_LOCAL_IP": self.host_ip(host),
               "OVSGRE_LEASE_TTL": LEASE_TTL}
        if self.etcd is not None:
            env["OVSGRE_ETCD"] = self.etcd.url
            if self.etcd.tls:
                env.update(OVSGRE_ETCD_CA=self.etcd.ca,
                           OVSGRE_ETCD_CERT=self.etcd.client_cert,
                           OVSGRE_ETCD_KEY=self.etcd.client_key)
        return env

    # ------------------------------------------------------------ lifecycle
    def start(self) -> "Cluster":
        t0 = time.monotonic()
        _register(self)
        self._started = True
        try:
            os.makedirs(self.switch_dir, exist_ok=True)
            self.underlay.start()
            # A Linux bridge without an explicit address takes the lowest
            # MAC of its ports and changes it whenever a port comes or goes:
            # hosts that resolved the switch IP earlier then send to a MAC
            # the bridge no longer accepts (PACKET_OTHERHOST, dropped) until
            # their ARP entry expires.  Pin it.
            run(["ip", "-n", self.switch.name, "link", "set",
                 self.switch_bridge, "address", _mac_for(self.switch_ip)])
            self.underlay.add_switch_ip(self.switch_ip)
            t1 = time.monotonic()
            if self.etcd is not None:
                self.etcd.start()
            t2 = time.monotonic()
            new = [self._new_host() for _ in range(self.n_hosts)]
            if self.parallel and len(new) > 1:
                with ThreadPoolExecutor(len(new)) as ex:
                    for f in [ex.submit(self._bring_up, h) for h in new]:
                        f.result()
            else:
                for h in new:
                    self._bring_up(h)
            t3 = time.monotonic()
        except BaseException:
            self.stop()
            raise
        self.timings.update(underlay=t1 - t0, etcd=t2 - t1, hosts=t3 - t2,
                            start=t3 - t0)
        return self

    def _new_host(self) -> TestHost:
        with self._lock:
            idx = self._next_index
            self._next_index += 1
            kw = dict(self.host_kw)
            if self.docker:
                kw.setdefault("daemon_config", self.daemon_config)
            h = TestHost(f"h{idx}", prefix=self.prefix,
                         base_root=self.base_root, with_docker=self.docker,
                         **kw)
            h.cluster_index = idx
            self.hosts.append(h)
            self._all_hosts.append(h)
        return h

    def _bring_up(self, h: TestHost) -> None:
        """Start h, plug it into the underlay behind br-phy, check it can
        reach the switch (ping) and etcd (TCP)."""
        t0 = time.monotonic()
        h.start()
        ip = str(self.network.network_address + h.cluster_index)
        with self._lock:
            self.underlay.add(h, ip=ip)
        h.switch_port = self._switch_port_of(h)
        if not KERNEL:
            self._setup_br_phy(h)
        self.wait_host_ready(h)
        h.timings["cluster_up"] = time.monotonic() - t0

    def _setup_br_phy(self, h: TestHost) -> None:
        ip, dev = h.underlay_ip, h.underlay_if
        plen = self.network.prefixlen
        mac = _mac_for(ip)
        h.ovs.vsctl("--may-exist", "add-br", PHY_BRIDGE,
                    "--", "set", "bridge", PHY_BRIDGE, "datapath_type=netdev",
                    f"other-config:hwaddr={mac}",
                    "--", "--may-exist", "add-port", PHY_BRIDGE, dev)
        ipn = ["ip", "-n", h.netns.name]
        # With the netdev datapath eth0 is read by vswitchd through an
        # AF_PACKET socket, but the kernel still processes every frame on
        # it too: it would answer ARP for the host IP with eth0's own MAC
        # (racing br-phy's answer; peers then send to eth0, bypassing OVS).
        # NOARP + no IPv6 make eth0 a pure OVS port, like the kernel
        # datapath's rx_handler does.
        run(ipn + ["link", "set", dev, "arp", "off"])
        h.netns.run(["sysctl", "-q", "-w",
                     f"net.ipv6.conf.{dev}.disable_ipv6=1"], check=False)
        run(ipn + ["addr", "del", f"{ip}/{plen}", "dev", dev], check=False)
        run(ipn + ["addr", "replace", f"{ip}/{plen}", "dev", PHY_BRIDGE])
        run(ipn + ["link", "set", PHY_BRIDGE, "up"])
        # The host's own TCP leaves through br-phy into the userspace
        # datapath: no checksum offload there (testbed.md).
        h.netns.run(["ethtool", "-K", PHY_BRIDGE, "tx", "off"])
        h.phy_bridge = PHY_BRIDGE

    def wait_host_ready(self, h: TestHost, timeout: float = 15) -> None:
        """Ping the switch IP and (with etcd) GET /health over TCP from h."""
        deadline = time.monotonic() + timeout
        what = "ping"
        while time.monotonic() < deadline:
            cp = h.netns.run(["ping", "-c1", "-W1", "-q", self.switch_ip],
                             check=False, timeout=5)
            if cp.returncode == 0:
                what = "etcd"
                if self.etcd is None or self.etcd.healthy(netns=h.netns):
                    return
            time.sleep(0.1)
        raise RuntimeError(
            f"{h.name}: underlay not ready after {timeout}s ({what} to "
            f"{self.switch_ip} failed)\n" + self.diag(h))

    def diag(self, host: TestHost) -> str:
        """OVS/ip state of host, for assertion messages when traffic fails."""
        out = []
        for title, fn in (
                ("ovs-vsctl show", lambda: host.ovs.vsctl("show")),
                ("ovs/route/show", lambda: host.ovs.appctl(
                    "ovs-vswitchd", "ovs/route/show")),
                ("tnl/arp/show", lambda: host.ovs.appctl(
                    "ovs-vswitchd", "tnl/arp/show")),
                ("tnl/ports/show", lambda: host.ovs.appctl(
                    "ovs-vswitchd", "tnl/ports/show")),
                ("ip addr", lambda: host.run(["ip", "-br", "addr"]).stdout),
                ("ip neigh", lambda: host.run(["ip", "neigh"]).stdout),
                ("ovs-vswitchd.log", lambda: host.ovs.log_tail(
                    "ovs-vswitchd", 20))):
            try:
                text = fn()
            except Exception as e:  # noqa: BLE001
                text = f"<{e}>"
            out.append(f"--- {host.hostname}: {title} ---\n{text}")
        return "\n".join(out)

    def add_host(self) -> TestHost:
        """Start one more host (next free hN / 198.18.0.N) and join it."""
        h = self._new_host()
        try:
            self._bring_up(h)
        except BaseException:
            self.stop_host(h)
            raise
        return h

    def _switch_port_of(self, h: TestHost) -> Optional[str]:
        """Name of the switch-side veth of h's underlay interface."""
        links = link_json(h.netns, h.underlay_if)
        peer = links[0].get("link_index") if links else None
        for link in link_json(self.switch):
            if link.get("ifindex") == peer:
                return link["ifname"]
        return None

    def stop_host(self, host: TestHost, timeout: float = 10) -> None:
        """Stop one host fully (dockerd, OVS, anything else in its netns by
        PID) and delete its netns; returns once its underlay veth is gone
        from the switch too (the kernel destroys a deleted netns, and the
        veth pairs in it, asynchronously)."""
        try:
            host.stop()
        except Exception as e:  # noqa: BLE001
            log.error("stop_host %s: %s", host.name, e)
        port = getattr(host, "switch_port", None)
        if port and self.switch.exists():
            deadline = time.monotonic() + timeout
            try:
                while any(link.get("ifname") == port
                          for link in link_json(self.switch)):
                    if time.monotonic() > deadline:
                        log.error("%s: switch port %s still there after "
                                  "%ss", host.name, port, timeout)
                        break
                    time.sleep(0.02)
            except Exception as e:  # noqa: BLE001
                log.error("stop_host %s: waiting for %s: %s", host.name,
                          port, e)
        with self._lock:
            if host in self.hosts:
                self.hosts.remove(host)
            self.underlay.addresses.pop(host.netns.name, None)

    def add_netns(self, suffix: str) -> Netns:
        """A fresh netns `<prefix>-<suffix>` (e.g. a hand-made "container"),
        removed by stop() (its processes killed by PID first)."""
        ns = Netns(f"{self.prefix}-{suffix}")
        with self._lock:
            self._extra_ns.append(ns)
        ns.create()
        return ns

    def start_capture(self, ns: NsArg, ifname: str, bpf_filter: str = "",
                      seconds: Optional[float] = None) -> Capture:
        """start_capture() that stop() also ends."""
        c = Capture(ns, ifname, bpf_filter, seconds)
        with self._lock:
            self._captures.append(c)
        return c.start()

    def _delete_netns(self, ns: Netns) -> None:
        left = [p for p in ns.pids() if p != os.getpid() and pid_alive(p)]
        if left:
            log.warning("%s: killing leftover processes %s", ns.name,
                        {p: cmdline(p)[:3] for p in left})
            terminate(left, timeout=5, what=f"{ns.name} leftover")
        ns.delete()

    def stop(self) -> None:
        """Stop everything in reverse order; idempotent, never raises."""
        t0 = time.monotonic()
        first = "stop" not in self.timings and self._started
        for c in reversed(self._captures):
            try:
                c.stop()
            except Exception as e:  # noqa: BLE001
                log.error("stopping %r: %s", c, e)
        self._captures = []
        for ns in reversed(self._extra_ns):
            try:
                self._delete_netns(ns)
            except Exception as e:  # noqa: BLE001
                log.error("deleting %s: %s", ns.name, e)
        self._extra_ns = []
        hosts = list(reversed(self._all_hosts))
        try:
            if self.parallel and len(hosts) > 1:
                with ThreadPoolExecutor(len(hosts)) as ex:
                    list(ex.map(self.stop_host, hosts))
            else:
                for h in hosts:
                    self.stop_host(h)
        except Exception as e:  # noqa: BLE001
            log.error("stopping hosts: %s", e)
        if self.etcd is not None:
            try:
                self.etcd.stop()
            except Exception as e:  # noqa: BLE001
                log.error("stopping etcd: %s", e)
        try:
            self.underlay.stop()
        except Exception as e:  # noqa: BLE001
            log.error("stopping underlay: %s", e)
        try:
            unmount_under(self.switch_dir)
            shutil.rmtree(self.switch_dir, ignore_errors=True)
        except Exception as e:  # noqa: BLE001
            log.error("removing %s: %s", self.switch_dir, e)
        _unregister(self)
        if first:
            self.timings["stop"] = time.monotonic() - t0

    def __enter__(self) -> "Cluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


__all__ = ["Cluster", "Capture", "capture", "start_capture", "DAEMON_CONFIG",
           "PHY_BRIDGE"]
