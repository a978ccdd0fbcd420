"""Bring OVSDB and kernel links back in line with the store.

Runs at start-up, before the plugin answers Docker, and never calls the
Docker API (dockerd may be waiting for this very plugin while it restores
its own state).  The store is the source of truth:

- an endpoint being deleted when the plugin died is deleted now;
- an endpoint not joined to a sandbox gets its veth pair and port back;
- a joined endpoint whose host veth still exists gets its port back (tag and
  external_ids fixed); one whose veth is gone (its sandbox died) loses the
  port and keeps its record until Docker deletes the endpoint;
- OVS ports carrying ovsgre's owner tag and ovsgre-named links that belong
  to no endpoint are removed.
"""

import logging
import threading
import time

from .driver import CREATED, DELETING, JOINED

LOG = logging.getLogger(__name__)

GC_EVERY = 60.0   # seconds between runs of the janitor


def reconcile(store, dataplane):
    start = time.monotonic()
    counts = {"restored": 0, "finished_delete": 0, "orphans": 0}
    dataplane.ensure_bridge()
    networks = store.list("networks")
    endpoints = store.list("endpoints")
    for ep in endpoints.values():
        net = networks.get(ep["network_id"])
        _endpoint(store, dataplane, ep, net, counts)
    known = {e["host_if"] for e in store.list("endpoints").values()}
    known |= {e["peer_if"] for e in store.list("endpoints").values()}
    _remove_orphans("OVS port", dataplane.owned_ports(), known,
                    dataplane.remove, counts)
    _remove_orphans("link", dataplane.owned_links(), known,
                    dataplane.delete_link, counts)
    LOG.info("reconciled %d networks, %d endpoints in %.0f ms: %s",
             len(networks), len(endpoints),
             (time.monotonic() - start) * 1000, counts)
    return counts


def _endpoint(store, dataplane, ep, net, counts):
    eid = ep["endpoint_id"]
    if ep["state"] == DELETING or net is None:
        dataplane.unplug(ep)
        store.delete("endpoints", eid)
        counts["finished_delete"] += 1
        return
    port = dataplane.port(ep["host_if"])
    link = dataplane.host_link(ep)
    if ep["state"] == CREATED:
        if port is None or link is None or port["tag"] != net["vlan"]:
            dataplane.plug(ep, net["vlan"])
            counts["restored"] += 1
        return
    if ep["state"] == JOINED and link is None:
        if port is not None:
            dataplane.delete_port(ep["host_if"])
            counts["orphans"] += 1
        return
    if port is None or port["tag"] != net["vlan"]:
        dataplane.ensure_port(ep, net["vlan"])
        counts["restored"] += 1


def _remove_orphans(what, names, known, remove, counts):
    for name in names:
        if name not in known:
            LOG.info("removing orphan %s %s", what, name)
            remove(name)
            counts["orphans"] += 1


def collect_garbage(store, dataplane):
    """What a failed or timed-out call can leave behind while the plugin
    runs: deletions the dataplane refused ("deleting" records), and ports
    or links that belong to no endpoint (e.g. an OVSDB transaction that
    committed after its call had timed out).  Two bulk reads, so it costs
    little with many endpoints; never re-plugs anything (start-up does)."""
    counts = {"finished_delete": 0, "orphans": 0}
    endpoints = store.list("endpoints")
    for ep in endpoints.values():
        if ep["state"] == DELETING:
            dataplane.unplug(ep)
            store.delete("endpoints", ep["endpoint_id"])
            counts["finished_delete"] += 1
    known = set()
    for ep in store.list("endpoints").values():
        known |= {ep["host_if"], ep["peer_if"]}
    _remove_orphans("OVS port", dataplane.owned_ports(), known,
                    dataplane.delete_port, counts)
    pending = dataplane.links_being_deleted()
    _remove_orphans("link", [n for n in dataplane.owned_links()
                             if n not in pending], known,
                    dataplane.delete_link, counts)
    if any(counts.values()):
        LOG.info("janitor: %s", counts)
    return counts


class Janitor(threading.Thread):
    """Runs collect_garbage now and then, between calls (under the
    driver's lock, so never in the middle of one)."""

    def __init__(self, driver, every=GC_EVERY):
        super().__init__(name="janitor", daemon=True)
        self.driver = driver
        self.every = every
        self._halt = threading.Event()

    def run(self):
        while not self._halt.wait(self.every):
            try:
                self.driver.locked(collect_garbage, self.driver.store,
                                   self.driver.dataplane)
            except Exception as exc:   # OVSDB down: try again later
                LOG.warning("janitor: %s", exc)

    def stop(self):
        self._halt.set()
