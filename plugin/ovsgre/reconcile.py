"""Bring OVSDB and kernel links back in line with the store.

Runs at start-up, before the plugin answers Docker, and never calls the
Docker API (dockerd may be waiting for this very plugin while it restores
its own state).  The store is the source of truth:

- an endpoint being deleted when the plugin died is deleted now;
- an endpoint not joined to a sandbox gets its veth pair and port back;
- a joined endpoint whose host veth still exists gets its port back (tag and
  external_ids fixed); one whose veth is gone (its sandbox died) loses the
  port and keeps its record for Docker's DeleteEndpoint, or for the janitor
  when Docker never sends it (a restarted dockerd drops such endpoints
  without calling the plugin);
- OVS ports carrying ovsgre's owner tag and ovsgre-named links that belong
  to no endpoint are removed.
"""

import logging
import time

from .definitions import (CREATED, DELETING, ENDPOINT_KEY, JOINED,
                          NETWORK_KEY, OWNER, OWNER_KEY)
from .records import HostRecords

LOG = logging.getLogger(__name__)


def reconcile(store, dataplane):
    start = time.monotonic()
    counts = {"restored": 0, "finished_delete": 0, "orphans": 0}
    dataplane.ensure_bridge()
    records = HostRecords(store)
    networks = records.networks()
    endpoints = records.endpoints()
    for ep in endpoints.values():
        net = networks.get(ep.network_id)
        _endpoint(records, dataplane, ep, net, counts)
    known = _interfaces(records) | dataplane.being_deleted()
    _remove_orphans("OVS port", dataplane.owned_ports(), known,
                    lambda name: _remove_port_and_link(dataplane, name),
                    counts)
    _remove_orphans("link", dataplane.owned_links(), known,
                    dataplane.remove_link, counts)
    LOG.info("reconciled %d networks, %d endpoints in %.0f ms: %s",
             len(networks), len(endpoints),
             (time.monotonic() - start) * 1000, counts)
    return counts


def _remove_port_and_link(dataplane, name):
    # Before the plugin answers anything: wait for ovs-vswitchd to let go
    # of the port, so its link is not deleted under a running datapath.
    dataplane.remove_port(name, wait=True)
    dataplane.remove_link(name)


def _interfaces(records):
    """The veth names the endpoints in the store own."""
    known = set()
    for ep in records.endpoints().values():
        known |= {ep.host_if, ep.peer_if}
    return known


def _endpoint(records, dataplane, ep, net, counts):
    if ep.state == DELETING or net is None:
        dataplane.unplug(ep)
        records.delete_endpoint(ep.endpoint_id)
        counts["finished_delete"] += 1
        return
    port = dataplane.port(ep.host_if)
    link = dataplane.host_link(ep)
    if ep.state == CREATED:
        if link is None or not _port_ok(port, ep, net):
            dataplane.plug(ep, net.vlan)
            counts["restored"] += 1
        return
    if ep.state == JOINED and link is None:
        if port is not None:
            dataplane.remove_port(ep.host_if)
            counts["orphans"] += 1
        return
    if not _port_ok(port, ep, net):
        dataplane.ensure_port(ep, net.vlan)
        counts["restored"] += 1


def _port_ok(port, ep, net):
    """The port exists with the network's tag and the external_ids by which
    ovsgre finds its own ports (someone may have cleared them)."""
    if port is None or port["tag"] != net.vlan:
        return False
    ids = port["external_ids"]
    return ids.get(OWNER_KEY) == OWNER and \
        ids.get(NETWORK_KEY) == ep.network_id and \
        ids.get(ENDPOINT_KEY) == ep.endpoint_id


def _remove_orphans(what, names, known, remove, counts):
    for name in names:
        if name not in known:
            LOG.info("removing orphan %s %s", what, name)
            remove(name)
            counts["orphans"] += 1


def collect_garbage(store, dataplane, stale_after=None, now=None):
    """What failed calls and dead sandboxes leave behind while the plugin
    runs: deletions the dataplane refused ("deleting" records); with
    stale_after, joined endpoints older than that whose host veth is gone
    (their sandbox died; dockerd, restarted, drops such endpoints without
    telling the plugin); and ports or links that belong to no endpoint
    (e.g. an OVSDB transaction that committed after its call had timed
    out).  Bulk reads only, so it costs little with many endpoints; never
    re-plugs anything (start-up does)."""
    counts = {"finished_delete": 0, "dead_sandbox": 0, "orphans": 0}
    now = time.time() if now is None else now
    links = set(dataplane.owned_links())
    records = HostRecords(store)
    for ep in records.endpoints().values():
        if ep.state == DELETING:
            kind = "finished_delete"
        elif stale_after is not None and ep.state == JOINED and \
                ep.host_if not in links and \
                now - ep.created_at >= stale_after:
            kind = "dead_sandbox"
            LOG.warning("removing endpoint %s: its sandbox is gone",
                        ep.endpoint_id[:12])
        else:
            continue
        dataplane.unplug(ep)
        records.delete_endpoint(ep.endpoint_id)
        counts[kind] += 1
    known = _interfaces(records) | dataplane.being_deleted()
    _remove_orphans("OVS port", dataplane.owned_ports(), known,
                    dataplane.remove_port, counts)
    _remove_orphans("link", links, known, dataplane.remove_link, counts)
    if any(counts.values()):
        LOG.info("janitor: %s", counts)
    return counts
