"""The dataplane: veth pairs (kernel) plugged into the OVS bridge (OVSDB).

The driver speaks only to `Dataplane`; it never sees netlink or OVSDB.
"""

import logging
import os
import socket
import subprocess

from pyroute2 import IPRoute

from .links import Links, set_tx_checksum
from .ovsdb import Ovsdb, owner_ids

LOG = logging.getLogger(__name__)

GRE_OVERHEAD = 42   # outer IPv4 20 + GRE with key 8 + inner Ethernet 14
DEFAULT_UNDERLAY_MTU = 1500


def detect_datapath(wanted, existing=""):
    """'system' if the openvswitch kernel module is usable, else 'netdev'.

    An existing bridge's type counts as a hint: a managed plugin can
    neither see nor load kernel modules."""
    if wanted != "auto":
        return wanted
    if os.path.isdir("/sys/module/openvswitch"):
        return "system"
    if existing in ("system", "netdev"):
        return existing
    try:  # loaded on demand on real hosts; absent on this kind of test bed
        subprocess.run(["modprobe", "-q", "openvswitch"], check=False,
                       timeout=10, capture_output=True)
    except (OSError, subprocess.TimeoutExpired):
        pass
    return "system" if os.path.isdir("/sys/module/openvswitch") else "netdev"


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

    def __init__(self, ovsdb_remote, bridge, datapath, ovsdb_timeout):
        self.bridge = bridge
        self.ovsdb = Ovsdb(ovsdb_remote, ovsdb_timeout)
        existing = (self.ovsdb.bridge(bridge) or {}).get("datapath_type")
        self.datapath = detect_datapath(datapath, existing or "")
        self.links = Links()

    def close(self):
        self.ovsdb.close()
        self.links.close()

    def ensure_bridge(self):
        self.ovsdb.ensure_bridge(self.bridge, self.datapath)

    def plug(self, ep, tag):
        """Make the endpoint's veth pair exist and its host end a port."""
        host, peer = ep["host_if"], ep["peer_if"]
        self.links.create_veth(host, peer, ep["mtu"], ep["mac"])
        if self.datapath == "netdev":
            # Userspace OVS does not complete partial checksums: TCP from
            # the container would carry bad checksums (ping still works).
            set_tx_checksum(peer, False)
        self.ovsdb.add_port(self.bridge, host, tag,
                            owner_ids(ep["network_id"], ep["endpoint_id"]))

    def ensure_port(self, ep, tag):
        """Re-add the OVS port of a joined endpoint whose veth still exists."""
        self.ovsdb.add_port(self.bridge, ep["host_if"], tag,
                            owner_ids(ep["network_id"], ep["endpoint_id"]))

    def unplug(self, ep):
        """Remove the port now and the veth pair in the background (the
        pair goes with either end); missing pieces are fine."""
        self.ovsdb.del_port(ep["host_if"])
        self.links.delete_later(ep["host_if"])

    def remove(self, host, peer=None):
        self.ovsdb.del_port(host)
        self.links.delete(host)
        if peer:
            self.links.delete(peer)

    def port(self, name):
        return self.ovsdb.port(name)

    def delete_port(self, name):
        self.ovsdb.del_port(name)

    def delete_link(self, name):
        self.links.delete(name)

    def host_link(self, ep):
        return self.links.get(ep["host_if"])

    def owned_ports(self):
        return self.ovsdb.owned_ports()

    def owned_links(self):
        return self.links.list_ours()
