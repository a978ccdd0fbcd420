"""The dataplane: veth pairs (kernel) plugged into the OVS bridge (OVSDB).

The driver speaks only to `Dataplane`; it never sees netlink or OVSDB.
"""

import logging
import os
import socket
import subprocess

from pyroute2 import IPRoute

from ..errors import DataplaneError, InvalidRequest, Unavailable

from ..definitions import GRE_OVERHEAD
from .links import Links
from .ovsdb import Ovsdb, owner_ids
from .reaper import VSWITCHD_WAIT, Reaper

LOG = logging.getLogger(__name__)

DEFAULT_UNDERLAY_MTU = 1500
AFXDP_TYPES = ("afxdp-nonpmd", "afxdp")
# Native XDP on a veth needs the frame in one page (4 KiB minus headroom).
AFXDP_MAX_MTU = 3498
# Each afxdp port costs ovs-vswitchd ~70 MB (its UMEM: 16,384 frames of
# 4 KiB) and ~150 ms to load XDP, so it is never the default; below this
# much available memory new ports are system ports whatever was asked (an
# ovs-vswitchd killed for memory takes every container's network down).
AFXDP_MIN_AVAILABLE = 2 * 2 ** 30
# Never an endpoint's name: endpoint IDs are hex.
PROBE_HOST, PROBE_PEER = "ovghzzprobe0000", "ovgczzprobe0000"
PROBE_WAIT = 5.0
VLAN_PROBE = 4095     # no network uses it: the probe port reaches nobody


def detect_datapath(wanted, existing=""):
    """'system' if the openvswitch kernel module is usable, else 'netdev'.

    An existing userspace bridge stays userspace: a restart never moves a
    running bridge's ports to the kernel because the module appeared (and
    a managed plugin can neither see nor load modules).  An existing
    kernel bridge without the module forwards nothing, so it is not kept
    on its own account."""
    if wanted != "auto":
        return wanted
    if existing == "netdev":
        return "netdev"
    state = openvswitch_module()
    if state not in ("loaded", "builtin"):
        try:  # loaded on demand on real hosts (modprobe knows best where)
            subprocess.run(["modprobe", "-q", "openvswitch"], check=False,
                           timeout=10, capture_output=True)
        except (OSError, subprocess.TimeoutExpired):
            pass
        state = openvswitch_module()
    return "system" if state in ("loaded", "builtin") else "netdev"


def openvswitch_module(release=None):
    """State of the openvswitch kernel module, read only: "loaded"
    (/sys/module/openvswitch), "builtin" (modules.builtin: part of the
    kernel, with no /sys/module entry of its own), "available" (in
    modules.dep: modprobe would load it) or "absent"."""
    if os.path.isdir("/sys/module/openvswitch"):
        return "loaded"
    base = os.path.join("/lib/modules", release or os.uname().release)
    for listing, state in (("modules.builtin", "builtin"),
                           ("modules.dep", "available")):
        try:
            with open(os.path.join(base, listing),
                      encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    path = line.split(":", 1)[0].strip()
                    if os.path.basename(path).split(".", 1)[0] == \
                            "openvswitch":
                        return state
        except OSError:
            continue
    return "absent"


def mem_available():
    """MemAvailable in bytes (a large number if it cannot be read)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 1 << 62


def detect_local_ip(targets):
    """Source address of the route towards the first reachable target."""
    with IPRoute() as ipr:
        for target in targets:
            try:
                address = socket.gethostbyname(target)
                routes = ipr.route("get", dst=address)
            except (OSError, ValueError) as exc:
                LOG.warning("no route to %s: %s", target, exc)
                continue
            source = routes[0].get_attr("RTA_PREFSRC") if routes else None
            if source and not source.startswith("127."):
                return source
    return ""


def underlay_mtu(local_ip=""):
    """MTU of the device holding local_ip, else of the device carrying the
    default IPv4 route (1500 if none)."""
    with IPRoute() as ipr:
        if local_ip:
            for addr in ipr.get_addr(family=socket.AF_INET,
                                     address=local_ip):
                link = ipr.link("get", index=addr["index"])[0]
                return link.get_attr("IFLA_MTU") or DEFAULT_UNDERLAY_MTU
        for route in ipr.route("dump", family=socket.AF_INET):
            oif = route.get_attr("RTA_OIF")
            if route["dst_len"] == 0 and route.get_attr("RTA_TABLE") == 254 \
                    and oif:
                link = ipr.link("get", index=oif)[0]
                return link.get_attr("IFLA_MTU") or DEFAULT_UNDERLAY_MTU
    return DEFAULT_UNDERLAY_MTU


def container_mtu(configured, local_ip=""):
    return configured or (underlay_mtu(local_ip) - GRE_OVERHEAD)


class Dataplane:
    """Plugs endpoints into the integration bridge of this host."""

    def __init__(self, ovsdb_remote, bridge, datapath, ovsdb_timeout,
                 port_type="system"):
        self.bridge = bridge
        self.ovsdb = Ovsdb(ovsdb_remote, ovsdb_timeout)
        existing = (self.ovsdb.bridge(bridge) or {}).get("datapath_type")
        self.datapath = detect_datapath(datapath, existing or "")
        self.links = Links()
        self.reaper = Reaper(self._remove_ports, self.links.delete_many)
        self.wanted_port_type = port_type
        self.port_type = "system"     # decided by ensure_bridge
        self._usable = {}             # port type -> "" or why it fails

    def close(self):
        self.reaper.settle(*self.reaper.pending(), timeout=VSWITCHD_WAIT)
        self.ovsdb.close()
        self.links.close()

    def ensure_bridge(self):
        self.ovsdb.ensure_bridge(self.bridge, self.datapath)
        self.port_type = self._host_port_type()

    def _host_port_type(self):
        """The type of container ports whose network asks for none."""
        wanted = self.wanted_port_type
        if self.datapath != "netdev":
            if wanted in AFXDP_TYPES:
                raise Unavailable(f"port type {wanted} needs the userspace "
                                  "datapath (--datapath netdev)")
            return "system"
        return wanted

    def check_port_type(self, port_type, mtu):
        """Refuse a network's port type (ovsgre.port-type) this host cannot
        give its ports.  System ports always work; with the kernel
        datapath the kernel forwards and there is nothing to choose, so the
        option is ignored there (a network spans hosts of either kind)."""
        if port_type not in AFXDP_TYPES or self.datapath != "netdev":
            return
        if mtu > AFXDP_MAX_MTU:
            raise InvalidRequest(
                f"port type {port_type} needs an MTU of at most "
                f"{AFXDP_MAX_MTU} (native XDP on a veth takes a frame in "
                f"one page); this network's MTU is {mtu}")
        if port_type not in self._usable:
            self._usable[port_type] = self._probe(port_type)
        if self._usable[port_type]:
            raise Unavailable(f"port type {port_type} does not work on this "
                              f"host: {self._usable[port_type]}")

    def _probe(self, port_type):
        """Does ovs-vswitchd take a veth as a port of this type?  Returns
        "" if so, else its error."""
        if port_type not in self.ovsdb.iface_types():
            return "ovs-vswitchd was built without it"
        self.links.delete(PROBE_HOST)
        self.links.create_veth(PROBE_HOST, PROBE_PEER, 1500,
                               "02:00:00:00:00:01")
        try:
            self.ovsdb.add_port(self.bridge, PROBE_HOST, VLAN_PROBE,
                                owner_ids("probe", "probe"), port_type)
            info = self.ovsdb.wait_interface(PROBE_HOST, PROBE_WAIT) or {}
            if info.get("error") or (info.get("ofport") or 0) < 0:
                return info.get("error") or "no ofport"
            if not info.get("ofport"):
                return "ovs-vswitchd did not take the port in time"
            return ""
        finally:
            self.ovsdb.del_port(PROBE_HOST, self.bridge, wait=True)
            self.links.delete(PROBE_HOST)

    def _ovs_type(self, ep):
        """OVS type of an endpoint's port: its network's choice, else the
        host's; "" is a plain (system) port."""
        wanted = ep.port_type or self.port_type
        if self.datapath != "netdev" or wanted not in AFXDP_TYPES or \
                ep.mtu > AFXDP_MAX_MTU:
            return ""
        if mem_available() < AFXDP_MIN_AVAILABLE:
            LOG.warning("less than %d MiB of memory available: port %s is "
                        "a system port, not %s (which takes ~70 MB in "
                        "ovs-vswitchd)", AFXDP_MIN_AVAILABLE >> 20,
                        ep.host_if, wanted)
            return ""
        return wanted

    def plug(self, ep, tag):
        """Make the endpoint's veth pair exist and its host end a port.
        Does not wait for ovs-vswitchd (see wait_forwarding)."""
        self.reaper.settle(ep.host_if, ep.peer_if)
        # Userspace OVS does not complete partial checksums: TCP from the
        # container would carry bad checksums (ping still works).
        self.links.create_veth(ep.host_if, ep.peer_if, ep.mtu,
                               ep.mac,
                               peer_tx_checksum=self.datapath != "netdev")
        self.ensure_port(ep, tag)

    def ensure_port(self, ep, tag):
        """Re-add the OVS port of a joined endpoint whose veth still exists."""
        self.ovsdb.add_port(self.bridge, ep.host_if, tag,
                            owner_ids(ep.network_id, ep.endpoint_id),
                            self._ovs_type(ep))

    def wait_forwarding(self, ep, timeout):
        """Return once ovs-vswitchd forwards on the endpoint's port (it has
        an OpenFlow port number: the datapath polls it and the bridge knows
        its VLAN); raise DataplaneError naming the port and what OVS
        reported when it refused the port or did not take it in time."""
        name = ep.host_if
        info = self.ovsdb.wait_interface(name, timeout)
        if info is None:
            raise DataplaneError(f"port {name} is not in OVSDB (removed "
                                 "while the container was starting?)")
        if info["error"] or (info["ofport"] or 0) < 0:
            raise DataplaneError(
                f"ovs-vswitchd refused port {name} (type "
                f"{info['type'] or 'system'}): "
                f"{info['error'] or 'ofport -1'}")
        if not info["ofport"]:
            raise DataplaneError(
                f"ovs-vswitchd did not put port {name} in service within "
                f"{timeout:g} s (no OpenFlow port number assigned; is "
                "ovs-vswitchd running and keeping up? see `ovsgre "
                "doctor`)")
        return info

    def unplug(self, ep):
        """Remove the port and the veth pair (the pair goes with either
        end) in the background: see reaper.py.  Missing pieces are fine."""
        self.reaper.delete_later(ep.host_if)

    def _remove_ports(self, names):
        """The reaper's first step: take ports off the bridge, and wait for
        ovs-vswitchd to let go of their links before they are deleted."""
        applied = self.ovsdb.wait_applied(
            self.ovsdb.del_ports(self.bridge, names), VSWITCHD_WAIT)
        if not applied:
            LOG.warning("ovs-vswitchd did not drop ports %s within %d s",
                        ", ".join(names), VSWITCHD_WAIT)

    def port(self, name):
        return self.ovsdb.port(name)

    def remove_port(self, name, wait=False):
        """Take a port off whichever bridge holds it; with wait, until
        ovs-vswitchd has applied it."""
        self.ovsdb.del_port(name, wait=wait)

    def remove_link(self, name):
        self.links.delete(name)

    def host_link(self, ep):
        return self.links.get(ep.host_if)

    def has_host_link(self, ep):
        return self.links.exists(ep.host_if)

    def owned_ports(self):
        return self.ovsdb.owned_ports()

    def owned_links(self):
        return self.links.list_ours()

    def being_deleted(self):
        """Ports and links the reaper is about to remove."""
        return self.reaper.pending()
