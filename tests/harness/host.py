"""A simulated host (netns + OVS + dockerd) and a shared L2 underlay."""
from __future__ import annotations

import atexit
import ipaddress
import logging
import os
import shutil
import threading
import time
from typing import Optional, Sequence, Union

from ._proc import cmdline, pid_alive, run, terminate, unmount_under
from .dockerd import DockerHost
from .netns import Netns, unique_prefix
from .ovs import OvsInstance

log = logging.getLogger("ovsgre.harness")

BASE_ROOT = "/tmp/ovgt"

_live_lock = threading.Lock()
_live: list = []   # started, not yet stopped (TestHost / Underlay)


def _register(obj) -> None:
    with _live_lock:
        _live.append(obj)


def _unregister(obj) -> None:
    with _live_lock:
        if obj in _live:
            _live.remove(obj)


@atexit.register
def _stop_leftovers() -> None:
    """Last-resort cleanup if a test run dies without fixture teardown."""
    for obj in reversed(list(_live)):
        try:
            obj.stop()
        except Exception as e:  # noqa: BLE001
            log.error("atexit cleanup of %r failed: %s", obj, e)


class TestHost:
    """netns `<prefix>-<hostname>` with its own OVS and dockerd.

    Files: <base_root>/<prefix>-<hostname>/{ovs,docker,run}/.
    """
    __test__ = False  # not a pytest test class

    def __init__(self, hostname: str = "h1", prefix: Optional[str] = None,
                 base_root: str = BASE_ROOT, with_ovs: bool = True,
                 with_docker: bool = True, **docker_kw):
        self.prefix = prefix or unique_prefix()
        self.hostname = hostname
        self.name = f"{self.prefix}-{hostname}"
        self.basedir = os.path.join(base_root, self.name)
        self.netns = Netns(self.name)
        self.run_dir = os.path.join(self.basedir, "run")  # free for tests
        self.ovs: Optional[OvsInstance] = (
            OvsInstance(self.netns, os.path.join(self.basedir, "ovs"))
            if with_ovs else None)
        self.docker: Optional[DockerHost] = (
            DockerHost(self.netns, os.path.join(self.basedir, "docker"),
                       **docker_kw) if with_docker else None)
        # Set by underlay():
        self.underlay_ip: Optional[str] = None
        self.underlay_if: Optional[str] = None
        self.timings: dict = {}

    def __repr__(self) -> str:
        return f"TestHost({self.name!r})"

    # convenience
    def run(self, argv, **kw):
        return self.netns.run(argv, **kw)

    def popen(self, argv, **kw):
        return self.netns.popen(argv, **kw)

    def start(self) -> "TestHost":
        t0 = time.monotonic()
        _register(self)
        try:
            os.makedirs(self.run_dir, exist_ok=True)
            self.netns.create()
            t1 = time.monotonic()
            if self.ovs:
                self.ovs.start()
            t2 = time.monotonic()
            if self.docker:
                self.docker.start()
            t3 = time.monotonic()
        except BaseException:
            self.stop()
            raise
        self.timings.update(netns=t1 - t0, ovs=t2 - t1, docker=t3 - t2,
                            start=t3 - t0)
        return self

    def stop(self) -> None:
        """Stop dockerd, OVS, leftover processes in the netns, delete the
        netns and the base dir. Idempotent; logs (never raises) failures."""
        t0 = time.monotonic()
        first = "stop" not in self.timings
        if self.docker:
            try:
                self.docker.stop()
            except Exception as e:  # noqa: BLE001
                log.error("%s: docker stop: %s", self.name, e)
        if self.ovs:
            try:
                self.ovs.stop()
            except Exception as e:  # noqa: BLE001
                log.error("%s: ovs stop: %s", self.name, e)
        try:
            # The netns is unique to this host: whatever still runs in it was
            # started by the tests (e.g. a plugin process) and must go.
            left = [p for p in self.netns.pids()
                    if p != os.getpid() and pid_alive(p)]
            if left:
                log.warning("%s: killing leftover processes in netns: %s",
                            self.name, {p: cmdline(p)[:3] for p in left})
                terminate(left, timeout=5, what=f"{self.name} leftover")
        except Exception as e:  # noqa: BLE001
            log.error("%s: leftover processes: %s", self.name, e)
        try:
            self.netns.delete()
        except Exception as e:  # noqa: BLE001
            log.error("%s: netns delete: %s", self.name, e)
        try:
            unmount_under(self.basedir)
            shutil.rmtree(self.basedir, ignore_errors=True)
            if os.path.exists(self.basedir):
                log.error("%s: could not remove %s", self.name, self.basedir)
        except Exception as e:  # noqa: BLE001
            log.error("%s: removing %s: %s", self.name, self.basedir, e)
        _unregister(self)
        if first:
            self.timings["stop"] = time.monotonic() - t0

    def __enter__(self) -> "TestHost":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


HostLike = Union[TestHost, Netns]


class Underlay:
    """A switch netns `<prefix>-sw` with Linux bridge br0 and one veth per
    host: `portN` in the switch, `host_ifname` (eth0) in the host netns."""

    def __init__(self, prefix: str, subnet: str = "198.18.0.0/24",
                 mtu: int = 1500, host_ifname: str = "eth0",
                 tx_off: bool = True):
        self.prefix = prefix
        self.network = ipaddress.ip_network(subnet)
        self.switch = Netns(f"{prefix}-sw")
        self.bridge = "br0"
        self.mtu = mtu
        self.host_ifname = host_ifname
        self.tx_off = tx_off
        self.switch_ip: Optional[str] = None
        self.addresses: dict = {}  # netns name -> "198.18.0.N"
        self._ports = 0

    def __repr__(self) -> str:
        return f"Underlay({self.switch.name!r})"

    @property
    def prefixlen(self) -> int:
        return self.network.prefixlen

    def start(self) -> "Underlay":
        _register(self)
        try:
            self.switch.create()
            sw = ["ip", "-n", self.switch.name]
            run(sw + ["link", "add", self.bridge, "mtu", str(self.mtu),
                      "type", "bridge", "stp_state", "0", "forward_delay", "0"])
            run(sw + ["link", "set", self.bridge, "up"])
            if self.tx_off:
                self.switch.run(["ethtool", "-K", self.bridge, "tx", "off"],
                                check=False)
        except BaseException:
            self.stop()
            raise
        return self

    def add(self, host: HostLike, ip: Optional[str] = None) -> str:
        """Connect host; returns the address assigned to its host_ifname."""
        ns = host.netns if isinstance(host, TestHost) else host
        idx = self._ports
        self._ports += 1
        if ip is None:
            ip = str(self.network.network_address + idx + 1)
        port = f"port{idx}"
        sw = ["ip", "-n", self.switch.name]
        hn = ["ip", "-n", ns.name]
        run(sw + ["link", "add", port, "mtu", str(self.mtu), "type", "veth",
                  "peer", "name", self.host_ifname, "mtu", str(self.mtu),
                  "netns", ns.name])
        run(sw + ["link", "set", port, "master", self.bridge, "up"])
        run(hn + ["addr", "add", f"{ip}/{self.prefixlen}", "dev",
                  self.host_ifname])
        run(hn + ["link", "set", self.host_ifname, "up"])
        if self.tx_off:
            self.switch.run(["ethtool", "-K", port, "tx", "off"], check=False)
            ns.run(["ethtool", "-K", self.host_ifname, "tx", "off"],
                   check=False)
        self.addresses[ns.name] = ip
        if isinstance(host, TestHost):
            host.underlay_ip = ip
            host.underlay_if = self.host_ifname
        return ip

    def add_switch_ip(self, ip: Optional[str] = None) -> str:
        """Give the switch netns itself an address on br0 (e.g. for etcd);
        default: the last usable address of the subnet."""
        if ip is None:
            ip = str(self.network.broadcast_address - 1)
        run(["ip", "-n", self.switch.name, "addr", "add",
             f"{ip}/{self.prefixlen}", "dev", self.bridge])
        self.switch_ip = ip
        return ip

    def stop(self) -> None:
        """Delete the switch netns (veth pairs go with it). Idempotent.
        Processes the tests started in the switch netns are killed first."""
        try:
            left = [p for p in self.switch.pids() if p != os.getpid()]
            if left:
                log.warning("%s: killing leftover processes: %s",
                            self.switch.name,
                            {p: cmdline(p)[:3] for p in left})
                terminate(left, timeout=5, what=f"{self.switch.name} leftover")
            self.switch.delete()
        except Exception as e:  # noqa: BLE001
            log.error("%s: stop: %s", self.switch.name, e)
        _unregister(self)

    delete = stop

    def __enter__(self) -> "Underlay":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def underlay(hosts: Sequence[HostLike], subnet: str = "198.18.0.0/24",
             prefix: Optional[str] = None, mtu: int = 1500,
             host_ifname: str = "eth0", tx_off: bool = True,
             switch_ip: Union[bool, str] = False) -> Underlay:
    """Create the switch netns and connect hosts[i] as <subnet>.(i+1).

    prefix defaults to the first TestHost's prefix.  tx_off turns off TX
    checksum offload on every veth end and br0 (see testbed.md: TCP through
    the OVS userspace datapath otherwise breaks silently).  switch_ip=True
    (or an address) also puts an address on br0 in the switch netns.
    """
    if prefix is None:
        prefix = next((h.prefix for h in hosts if isinstance(h, TestHost)),
                      None) or unique_prefix()
    u = Underlay(prefix, subnet=subnet, mtu=mtu, host_ifname=host_ifname,
                 tx_off=tx_off).start()
    try:
        for h in hosts:
            u.add(h)
        if switch_ip:
            u.add_switch_ip(None if switch_ip is True else str(switch_ip))
    except BaseException:
        u.stop()
        raise
    return u
