"""The janitor: a thread that, now and then between calls, removes what
failed calls, dead sandboxes and a restarted dockerd leave behind
(reconcile.collect_garbage), and endpoints Docker no longer knows.

It is the only part of the plugin that asks Docker anything, and only from
its own thread: never inside a call dockerd waits for, never at start-up.
"""

import logging
import threading
import time

from .definitions import DELETING
from .reconcile import collect_garbage
from .records import HostRecords

LOG = logging.getLogger(__name__)

GC_EVERY = 60.0   # seconds between runs of the janitor


def stale_endpoints(store, docker, stale_after, now=None):
    """IDs of endpoints older than stale_after that Docker does not have on
    their network.  docker.endpoints(network_id) gives the IDs Docker has,
    or None when it cannot tell (unreachable, network unknown): then
    nothing of that network is touched."""
    now = time.time() if now is None else now
    by_network = {}
    for ep in HostRecords(store).endpoints().values():
        if ep.state == DELETING or now - ep.created_at < stale_after:
            continue
        by_network.setdefault(ep.network_id, []).append(ep.endpoint_id)
    stale = []
    for network_id, ids in sorted(by_network.items()):
        known = docker.endpoints(network_id)
        if known is not None:
            stale += [eid for eid in ids if eid not in known]
    return stale


class Janitor(threading.Thread):
    """Now and then, between calls (under the driver's lock, so never in
    the middle of one): collect_garbage, and endpoints Docker does not know
    any more (after stale_after seconds) are removed."""

    def __init__(self, driver, docker=None, stale_after=60, every=None,
                 metrics=None):
        super().__init__(name="janitor", daemon=True)
        self.driver = driver
        self.metrics = metrics     # metrics.Metrics: counts removals
        self.docker = docker
        self.stale_after = stale_after
        self.every = every or max(1.0, min(GC_EVERY, stale_after / 2))
        self._halt = threading.Event()

    def run(self):
        while not self._halt.wait(self.every):
            try:
                self.run_once()
            except Exception as exc:   # OVSDB down: try again later
                LOG.warning("janitor: %s", exc)

    def run_once(self):
        driver = self.driver
        counts = driver.locked(collect_garbage, driver.store,
                               driver.dataplane, self.stale_after)
        if self.docker is not None:
            counts["unknown_to_docker"] = sum(
                bool(driver.locked(driver.forget_stale, endpoint_id))
                for endpoint_id in stale_endpoints(
                    driver.store, self.docker, self.stale_after))
        if self.metrics is not None:
            self.metrics.janitor_removed(counts)

    def stop(self):
        self._halt.set()
