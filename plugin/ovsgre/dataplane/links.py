"""Kernel links through netlink (pyroute2) and the ethtool ioctl.

Only this module talks to the kernel about interfaces.  It works in the
network namespace of the calling process (the host's).
"""

import array
import fcntl
import logging
import socket
import struct
import threading

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ..errors import DataplaneError
from .. import names

LOG = logging.getLogger(__name__)

SIOCETHTOOL = 0x8946
ETHTOOL_GTXCSUM = 0x00000016
ETHTOOL_STXCSUM = 0x00000017
ENODEV = 19
EEXIST = 17
# Interface group (IFLA_GROUP) of links about to be deleted; no other
# software is expected to use it ("ovg").
DOOMED_GROUP = 0x6F7667


class Links:
    """Create, inspect and delete the veth pairs of endpoints."""

    def __init__(self):
        self._lock = threading.Lock()
        self._ipr = IPRoute()
        self._bg_ipr = None   # delete_many's own socket: never blocks calls

    def close(self):
        with self._lock:
            self._ipr.close()
            if self._bg_ipr is not None:
                self._bg_ipr.close()

    def delete_many(self, names):
        """Delete links (and so their veth peers) in one kernel operation:
        mark them with ovsgre's group, then delete the group.  The kernel
        waits for RCU once for all of them, holding the lock every network
        call needs; one by one, a burst of containers stopping would hold
        it for 20-40 ms each."""
        if self._bg_ipr is None:
            self._bg_ipr = IPRoute()
        ipr, marked = self._bg_ipr, 0
        for ifname in names:
            try:
                ipr.link("set", ifname=ifname, group=DOOMED_GROUP)
                marked += 1
            except NetlinkError as exc:
                if exc.code != ENODEV:
                    LOG.warning("cannot delete %s: %s", ifname, exc)
        if not marked:
            return
        try:
            ipr.link("del", group=DOOMED_GROUP)
        except NetlinkError as exc:
            if exc.code != ENODEV:
                raise DataplaneError(f"cannot delete {marked} links: "
                                     f"{exc}") from exc

    def _call(self, *args, **kwargs):
        with self._lock:
            return self._ipr.link(*args, **kwargs)

    def get(self, ifname):
        """Summary dict of a link, or None if it does not exist."""
        try:
            msgs = self._call("get", ifname=ifname)
        except NetlinkError as exc:
            if exc.code == ENODEV:
                return None
            raise DataplaneError(f"netlink get {ifname}: {exc}") from exc
        return _summary(msgs[0]) if msgs else None

    def list_ours(self):
        """Names of all links in this namespace that ovsgre would create.
        libc's if_nameindex, not a pyroute2 dump: the janitor calls this
        under the driver's lock, and parsing 2,000 links in Python took
        ~0.5 s (Docker's calls waited for it); this takes ~15 ms."""
        return [name for _, name in socket.if_nameindex()
                if names.is_ours(name)]

    def exists(self, ifname):
        """Cheap existence check (one ioctl, no netlink dump)."""
        try:
            socket.if_nametoindex(ifname)
            return True
        except OSError:
            return False

    def create_veth(self, host, peer, mtu, peer_mac, peer_tx_checksum=True):
        """Create host<->peer with MTU on both ends and MAC on the peer
        (peer_tx_checksum=False: TX checksum offload off on the peer).

        Idempotent: an existing pair with the same names is kept when it is
        intact, otherwise replaced.  Every change of a link wakes
        ovs-vswitchd, which then reconfigures its bridges and re-reads the
        routes while holding the kernel's network lock, and forwards
        nothing meanwhile: the new pair is configured while it is down, so
        that it announces itself as few times as possible.
        """
        if self.exists(host):
            current = self.get(host)
            if current and current["kind"] == "veth" and self.exists(peer):
                self._ensure_up(host, mtu)
                return
            self.delete(host)
        if self.exists(peer):
            self.delete(peer)
        try:
            self._call("add", ifname=host, kind="veth", mtu=mtu,
                       peer={"ifname": peer, "address": peer_mac, "mtu": mtu})
        except NetlinkError as exc:
            raise DataplaneError(f"cannot create veth {host}: {exc}") from exc
        if not peer_tx_checksum:
            set_tx_checksum(peer, False)
        self._up_without_ipv6(host)

    def _up_without_ipv6(self, ifname):
        """The host end is an L2 port: no link-local address, no RS/ND
        noise, no routes; IPv6 goes off while the link is still down.  A
        managed plugin cannot write /proc/sys: then addrgenmode none over
        netlink (CAP_NET_ADMIN is enough), set with "up" in one request."""
        change = {"state": "up"}
        if not _disable_ipv6(ifname):
            change["IFLA_AF_SPEC"] = {"attrs": [("AF_INET6", {"attrs": [
                ("IFLA_INET6_ADDR_GEN_MODE", 1)]})]}
        try:
            self._call("set", ifname=ifname, **change)
        except NetlinkError as exc:   # IPv6 disabled on this host
            LOG.debug("addrgenmode none on %s: %s", ifname, exc)
            self._ensure_up(ifname, mtu=None)

    def _ensure_up(self, ifname, mtu):
        change = {"state": "up"} if mtu is None else {"state": "up",
                                                      "mtu": mtu}
        try:
            self._call("set", ifname=ifname, **change)
        except NetlinkError as exc:
            raise DataplaneError(f"cannot bring {ifname} up: {exc}") from exc

    def delete(self, ifname):
        """Delete a link (and so its veth peer); a missing link is fine."""
        try:
            self._call("del", ifname=ifname)
        except NetlinkError as exc:
            if exc.code != ENODEV:
                raise DataplaneError(f"cannot delete {ifname}: {exc}") \
                    from exc


def _summary(msg):
    info = msg.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info else None
    return {
        "index": msg["index"],
        "name": msg.get_attr("IFLA_IFNAME"),
        "mtu": msg.get_attr("IFLA_MTU"),
        "address": msg.get_attr("IFLA_ADDRESS"),
        "up": bool(msg["flags"] & 1),
        "kind": kind,
    }


def _disable_ipv6(ifname):
    """True when IPv6 is off on the link (or on the whole host)."""
    path = f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6"
    try:
        with open(path, "w", encoding="ascii") as fh:
            fh.write("1")
        return True
    except FileNotFoundError:   # IPv6 disabled on the host
        return True
    except OSError as exc:      # read-only /proc/sys (managed plugin)
        LOG.debug("cannot disable IPv6 on %s: %s", ifname, exc)
        return False


def _ethtool(ifname, cmd, value=0):
    """Run one ethtool_value ioctl (struct {u32 cmd; u32 data})."""
    buf = array.array("I", [cmd, value])
    addr, _ = buf.buffer_info()
    ifreq = struct.pack("16sP", ifname.encode(), addr)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)
    return buf[1]


def tx_checksum(ifname):
    """True when TX checksum offload is on for the link."""
    try:
        return bool(_ethtool(ifname, ETHTOOL_GTXCSUM))
    except OSError as exc:
        raise DataplaneError(f"ethtool get tx on {ifname}: {exc}") from exc


def set_tx_checksum(ifname, enabled):
    """`ethtool -K IFNAME tx on|off` without a subprocess."""
    try:
        _ethtool(ifname, ETHTOOL_STXCSUM, 1 if enabled else 0)
    except OSError as exc:
        raise DataplaneError(f"ethtool set tx on {ifname}: {exc}") from exc


# ------------------------------------------------------ read-only dumps
# For `ovsgre status` and `doctor`: one netlink dump on a socket of their
# own, closed at once (they must not share the plugin's).

def dump_links():
    """{name: {index, mtu, up, kind, peer_index, address}} of every link
    in this network namespace."""
    try:
        with IPRoute() as ipr:
            msgs = ipr.get_links()
    except Exception as exc:  # netlink failures of any kind
        raise DataplaneError(f"netlink link dump: {exc}") from exc
    out = {}
    for msg in msgs:
        summary = _summary(msg)
        summary["peer_index"] = msg.get_attr("IFLA_LINK")
        out[summary.pop("name")] = summary
    return out


def dump_ipv4_addresses():
    """{IPv4 address: link index} of this network namespace."""
    try:
        with IPRoute() as ipr:
            msgs = ipr.get_addr(family=socket.AF_INET)
    except Exception as exc:
        raise DataplaneError(f"netlink address dump: {exc}") from exc
    return {m.get_attr("IFA_ADDRESS"): m["index"] for m in msgs}
