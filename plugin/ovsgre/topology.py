"""The peer reconciler: tunnels and flows follow the peers and networks.

Peers come from etcd (host registry under a lease, watched) or from the
static `--peers` list.  Whenever the peer set or this host's networks
change, one background thread recomputes the tunnel ports and the flow
table.  Until the first peer list is known (etcd down at start-up) nothing
is touched, so a restart never tears down tunnels that carry traffic; and
an etcd outage keeps the last known peers, so traffic keeps flowing.
"""

import logging
import socket
import threading
import time

from . import __version__
from .cluster.etcd import Registration, Watcher

LOG = logging.getLogger(__name__)

HOSTS = "/ovsgre/hosts/"
VERIFY_EVERY = 2.0   # seconds between idle checks of the flow table


class StaticPeers:
    def __init__(self, peers, local_ip):
        self.peers = set(peers) - {local_ip}

    def start(self, on_change):
        on_change(set(self.peers))

    def stop(self):
        pass


class EtcdPeers:
    """Registers this host under a lease and watches the others."""

    def __init__(self, kv, local_ip, ttl):
        self.local_ip = local_ip
        info = {"ip": local_ip, "hostname": socket.gethostname(),
                "version": __version__}
        self.registration = Registration(kv, HOSTS + local_ip, info, ttl,
                                         on_trouble=self._trouble)
        self.watcher = Watcher(kv, HOSTS, self._changed)
        self._on_change = None

    def start(self, on_change):
        self._on_change = on_change
        self.registration.start()
        self.watcher.start()

    def _changed(self, items):
        peers = {v.get("ip") for v in items.values()
                 if isinstance(v, dict) and v.get("ip")}
        self._on_change(peers - {self.local_ip})

    def _trouble(self):
        self.watcher.kick()   # a watch on a dead member may hang silently

    def stop(self):
        self.registration.stop()   # revoke first: peers drop us at once
        self.watcher.stop()


class Topology(threading.Thread):
    def __init__(self, store, tunnels, peer_source):
        super().__init__(name="topology", daemon=True)
        self.store = store
        self.tunnels = tunnels
        self.peer_source = peer_source
        self.peers = None          # unknown until the first report
        self._cond = threading.Condition()
        self._wanted = 0
        self._done = 0
        self._stopped = False
        self._announce = []        # (port, mac) of newly joined endpoints
        self.last_error = None

    def begin(self):
        self.start()
        self.peer_source.start(self.set_peers)

    def set_peers(self, peers):
        with self._cond:
            if peers == self.peers:
                return
            LOG.info("peers: %s", ", ".join(sorted(peers)) or "none")
            self.peers = set(peers)
        self.request()

    def request(self, wait=0):
        """Ask for a sync; with wait > 0, block up to that many seconds
        for it to finish.  Returns True when done (or not yet possible)."""
        with self._cond:
            self._wanted += 1
            ticket = self._wanted
            self._cond.notify_all()
            if not wait or self.peers is None:
                return True
            self._cond.wait_for(lambda: self._done >= ticket or
                                self._stopped, timeout=wait)
            return self._done >= ticket

    def announce(self, port, mac):
        """Tell the other hosts, asynchronously, where this MAC is now."""
        with self._cond:
            self._announce.append((port, mac))
            self._cond.notify_all()

    def _send_announcements(self):
        with self._cond:
            pending, self._announce = self._announce, []
        for port, mac in pending:
            try:
                self.tunnels.announce(port, mac)
            except Exception as exc:  # the port may be gone already
                LOG.info("announce %s from %s skipped: %s", mac, port, exc)

    def run(self):
        while True:
            with self._cond:
                woke = self._cond.wait_for(
                    lambda: self._stopped or self._announce or (
                        self._wanted > self._done and
                        self.peers is not None), timeout=VERIFY_EVERY)
                if self._stopped:
                    return
                ticket, peers = self._wanted, set(self.peers or ())
                sync = self._wanted > self._done and self.peers is not None
            if not woke:
                self._verify()
                continue
            self._send_announcements()
            if not sync:
                continue
            try:
                self._sync(peers)
            except Exception as exc:
                self.last_error = str(exc)
                LOG.error("tunnel sync failed (retrying): %s", exc)
                time.sleep(1)
                continue
            self.last_error = None
            with self._cond:
                self._done = max(self._done, ticket)
                self._cond.notify_all()

    def _verify(self):
        """Idle check: reinstall flows that ovs-vswitchd lost (restart)."""
        try:
            if self.peers is not None and not self.tunnels.flows_intact():
                LOG.warning("tunnel flows missing (ovs-vswitchd restarted?);"
                            " reinstalling")
                self.tunnels.forget_flows()
                self.request()
        except Exception as exc:
            LOG.warning("cannot verify tunnel flows: %s", exc)

    def _sync(self, peers):
        start = time.monotonic()
        networks = {n["vlan"]: n["key"]
                    for n in self.store.list("networks").values()
                    if n.get("key")}
        count = self.tunnels.sync(peers, networks)
        LOG.info("tunnels synced: %d peers, %d networks in %.0f ms", count,
                 len(networks), (time.monotonic() - start) * 1000)

    def stop(self):
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self.peer_source.stop()
