"""Kernel links and addresses of this network namespace (through
dataplane.links), TX checksum offload (also inside a container's
namespace), the tunnel source address, and pings over the underlay."""

import concurrent.futures
import json

from .. import dataplane
from ..dataplane import links as dataplane_links
from . import command
from .command import ProbeError, ProbeUnavailable
from .records import Link


def links() -> dict[str, Link]:
    """{name: {index, mtu, up, kind, peer_index, address}}."""
    try:
        return dataplane_links.dump_links()
    except Exception as exc:
        raise ProbeError(str(exc)) from exc


def addresses():
    """{IPv4 address: link index} of this namespace."""
    try:
        return dataplane_links.dump_ipv4_addresses()
    except Exception as exc:
        raise ProbeError(str(exc)) from exc


def tx_checksum(ifname):
    """True when TX checksum offload is on (ethtool ioctl)."""
    try:
        return dataplane_links.tx_checksum(ifname)
    except Exception as exc:
        raise ProbeError(str(exc)) from exc


def _nsenter(netns_path, timeout, *argv):
    return command.run_argv(["nsenter", f"--net={netns_path}"] + list(argv),
                            timeout)


def tx_checksum_in(netns_path, ifindex, timeout):
    """(ifname, tx on?) of link ifindex inside the network namespace
    at netns_path (a container's sandbox), via nsenter."""
    rc, out, err = _nsenter(netns_path, timeout, "ip", "-j", "link", "show")
    if rc != 0:
        raise ProbeError(f"nsenter {netns_path}: {err.strip()}")
    try:
        name = next(l["ifname"] for l in json.loads(out or "[]")
                    if l.get("ifindex") == ifindex)
    except (StopIteration, ValueError, KeyError) as exc:
        raise ProbeError(f"no link {ifindex} in {netns_path}") from exc
    rc, out, err = _nsenter(netns_path, timeout, "ethtool", "-k", name)
    if rc != 0:
        raise ProbeError(f"ethtool -k {name} in {netns_path}: "
                         f"{err.strip()}")
    for line in out.splitlines():
        key, _, value = line.strip().partition(":")
        if key == "tx-checksumming":
            return name, value.split()[0] == "on"
    raise ProbeError(f"ethtool -k {name}: no tx-checksumming line")


def neighbour(netns_path, ip, timeout):
    """The MAC the namespace at netns_path (a container's) has for ip in
    its ARP cache, or "" when it has none that is usable."""
    rc, out, err = _nsenter(netns_path, timeout, "ip", "-j", "neigh",
                            "show", "to", ip)
    if rc != 0:
        raise ProbeError(f"nsenter {netns_path}: {err.strip()}")
    try:
        entries = json.loads(out or "[]")
    except ValueError as exc:
        raise ProbeError(f"ip neigh in {netns_path}: {exc}") from exc
    for entry in entries:
        states = set(entry.get("state") or [])
        if entry.get("lladdr") and not states & {"FAILED", "INCOMPLETE"}:
            return entry["lladdr"].lower()
    return ""


def local_ip(settings):
    """(tunnel source address, how it was found)."""
    if settings.local_ip:
        return settings.local_ip, "setting"
    if not settings.multi_host:
        return "", "single host"
    try:
        return dataplane.detect_local_ip(settings.tunnel_targets()), "route"
    except Exception as exc:
        raise ProbeError(f"route lookup: {exc}") from exc


def ping_one(peer, source, timeout):
    """(peer, (answered?, detail)); answered None when ping is missing."""
    argv = ["ping", "-c1", "-W1", "-n", "-q"]
    if source:
        argv += ["-I", source]
    try:
        rc, out, err = command.run_argv(argv + [peer], timeout + 1)
    except ProbeUnavailable as exc:   # no ping here: not checked
        return peer, (None, str(exc))
    except ProbeError as exc:         # timed out
        return peer, (False, str(exc))
    detail = (err.strip() or out.strip().splitlines()[-1]
              if (err.strip() or out.strip()) else "")
    return peer, (rc == 0, detail if rc else "")


def ping(peers, source, timeout):
    """{peer: (answered?, detail)}; all peers at once, each bounded."""
    if not peers:
        return {}
    with concurrent.futures.ThreadPoolExecutor(min(8, len(peers))) as pool:
        return dict(pool.map(lambda p: ping_one(p, source, timeout),
                             sorted(peers)))
