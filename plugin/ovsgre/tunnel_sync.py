"""The tunnel sync thread: tunnels and flows follow the peers and networks.

Whenever the peer set (from a source in `peers`) or this host's networks
change, one background thread recomputes the tunnel ports and the flow
table.  Until the first peer list is known (etcd down at start-up) nothing
is touched, so a restart never tears down tunnels that carry traffic; and
an etcd outage keeps the last known peers, so traffic keeps flowing.  The
same thread puts the flows back when ovs-vswitchd restarts, and sends the
gratuitous announcements of a joined container's MAC.
"""

import logging
import threading
import time

from .errors import DataplaneError
from .records import HostRecords

LOG = logging.getLogger(__name__)

# Seconds between idle checks for a vswitchd restart: a restarted vswitchd
# has no tunnel flows, and other hosts' containers cannot reach this one's
# until they are back.  A check reads one pid file.
VERIFY_EVERY = 0.25
# Dumping the flow table costs ovs-vswitchd's main thread, which under the
# userspace datapath also forwards packets: between restarts (seen as a new
# pid), the table itself is read only this often.
FULL_CHECK_EVERY = 30.0
# When to send each copy of an announcement, in seconds after Join.  The
# userspace datapath drops a tunnel packet while it resolves the remote
# end's underlay MAC, and a lost announcement leaves peers sending the MAC
# to its old host for minutes; hypervisors repeat theirs for the same
# reason.
ANNOUNCE_AT = (0.0, 0.2, 0.6, 1.5)


class TunnelSync(threading.Thread):
    """Keeps this host's tunnel ports and flow table in line with the
    peers and networks; Join waits on it (wait_installed) before
    answering."""

    def __init__(self, store, tunnels, peer_source):
        super().__init__(name="tunnel-sync", daemon=True)
        self.store = store
        self.tunnels = tunnels
        self.peer_source = peer_source
        self.peers = None          # unknown until the first report
        self.holders = None        # {key: hosts}; None: flood to all
        self._cond = threading.Condition()
        self._wanted = 0
        self._done = 0
        self._stopped = False
        self._announce = []        # (due, port, mac), see ANNOUNCE_AT
        self._vswitchd = None      # vswitchd instance holding our table
        self._checked = 0.0        # monotonic time of the last full check
        self._recheck = False      # a Join saw another vswitchd instance
        self.last_error = None

    def begin(self):
        self.start()
        self.peer_source.start(self.set_peers, self.set_holders)

    def set_holders(self, holders):
        """Which hosts hold each network (etcd): where its broadcasts go."""
        with self._cond:
            if holders == self.holders:
                return
            self.holders = dict(holders)
        self.request()

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

    def wait_installed(self, timeout):
        """Block until the running ovs-vswitchd holds the tunnel table: it
        forgets every flow when it restarts, and a container started
        before they are back could not reach other hosts.  Costs one read
        of vswitchd's pid file when nothing changed.  Raises
        DataplaneError after timeout seconds."""
        instance = self.tunnels.vswitchd_instance()
        with self._cond:
            if self._installed_in(instance):
                return
            self._recheck = True
            self._cond.notify_all()
            if self._cond.wait_for(lambda: self._stopped or
                                   self._installed_in(instance), timeout):
                return
        raise DataplaneError(
            f"the tunnel flows are not back in ovs-vswitchd (pid {instance})"
            f" after {timeout:g} s: {self.last_error or 'sync pending'}")

    def _installed_in(self, instance):
        """Call with the lock held.  Unknown peers (etcd not reached yet)
        or an unreadable pid file: nothing to wait for."""
        return self.peers is None or instance is None or \
            instance == self._vswitchd

    def announce(self, port, mac):
        """Tell the other hosts, asynchronously, where this MAC is now."""
        now = time.monotonic()
        with self._cond:
            self._announce += [(now + at, port, mac) for at in ANNOUNCE_AT]
            self._cond.notify_all()

    def _due_announcements(self):
        """Take the announcements due now (call with the lock held)."""
        now = time.monotonic()
        due = [a for a in self._announce if a[0] <= now]
        self._announce = [a for a in self._announce if a[0] > now]
        return due

    def _wait_timeout(self):
        if not self._announce:
            return VERIFY_EVERY
        soonest = min(a[0] for a in self._announce) - time.monotonic()
        return max(0.0, min(VERIFY_EVERY, soonest))

    def _send(self, announcements):
        for _, port, mac in announcements:
            try:
                self.tunnels.announce(port, mac)
            except Exception as exc:  # the port may be gone already
                LOG.info("announce %s from %s skipped: %s", mac, port, exc)

    def _sync_wanted(self):
        return self._wanted > self._done and self.peers is not None

    def run(self):
        idle_since = time.monotonic()
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: self._stopped or self._sync_wanted() or
                    self._recheck or any(
                        a[0] <= time.monotonic() for a in self._announce),
                    timeout=self._wait_timeout())
                if self._stopped:
                    return
                ticket, peers = self._wanted, set(self.peers or ())
                holders = self.holders
                sync = self._sync_wanted()
                due = self._due_announcements()
                recheck, self._recheck = self._recheck, False
            self._send(due)
            if not sync:
                if recheck or time.monotonic() - idle_since >= VERIFY_EVERY:
                    self._verify()
                    idle_since = time.monotonic()
                continue
            idle_since = time.monotonic()
            instance = self.tunnels.vswitchd_instance()
            try:
                self._sync(peers, holders)
            except Exception as exc:
                self.last_error = str(exc)
                LOG.error("tunnel sync failed (retrying): %s", exc)
                time.sleep(1)
                continue
            self.last_error = None
            with self._cond:
                self._done = max(self._done, ticket)
                self._vswitchd, self._checked = instance, time.monotonic()
                self._cond.notify_all()

    def _verify(self):
        """Idle check: reinstall flows that ovs-vswitchd lost (restart)."""
        if self.peers is None:
            return
        instance = self.tunnels.vswitchd_instance()
        if instance is not None and instance == self._vswitchd and \
                time.monotonic() - self._checked < FULL_CHECK_EVERY:
            return
        try:
            intact = self.tunnels.flows_intact()
        except Exception as exc:
            LOG.warning("cannot verify tunnel flows: %s", exc)
            return   # checked again next time, whatever the pid says
        if not intact:
            # The sync records the instance once the table is back.
            LOG.warning("tunnel flows missing (ovs-vswitchd restarted?);"
                        " reinstalling")
            self.tunnels.forget_flows()
            self.request()
            return
        with self._cond:
            self._vswitchd, self._checked = instance, time.monotonic()
            self._cond.notify_all()
        try:
            self.tunnels.prime()    # keeps vswitchd's underlay MACs fresh
        except Exception as exc:
            LOG.info("priming the tunnels failed: %s", exc)

    def _sync(self, peers, holders=None):
        start = time.monotonic()
        networks = {n.vlan: n.key
                    for n in HostRecords(self.store).networks().values()
                    if n.key}
        count = self.tunnels.sync(peers, networks, holders)
        LOG.info("tunnels synced: %d peers, %d networks in %.0f ms", count,
                 len(networks), (time.monotonic() - start) * 1000)

    def stop(self):
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self.peer_source.stop()
