"""Tearing down what DeleteEndpoint gave up, in the background.

Docker does not need to wait for it: the endpoint's record is gone when
DeleteEndpoint answers, and should the plugin die first, start-up removes
the leftovers (an owner-tagged OVS port, an ovsgre-named link).  Names are
gathered for a moment so that the containers of a burst go together: one
OVSDB transaction (one reconfiguration of ovs-vswitchd) for their ports,
then, once vswitchd has let go of them, one kernel operation for their veth
pairs (the kernel waits for RCU while holding the lock that every network
call, vswitchd's too, needs).
"""

import logging
import threading

LOG = logging.getLogger(__name__)

GATHER = 0.5           # seconds deletions may wait for others
VSWITCHD_WAIT = 10.0   # seconds to wait for vswitchd to drop the ports


class Reaper:
    def __init__(self, remove_ports, delete_links, gather=GATHER):
        """remove_ports(names): take the ports off the bridge and wait for
        ovs-vswitchd; delete_links(names): delete the links."""
        self._remove_ports = remove_ports
        self._delete_links = delete_links
        self._gather = gather
        self._cond = threading.Condition()
        self._doomed = set()      # names waiting for the thread
        self._urgent = False      # a waiting name is wanted again
        self._thread = None

    def delete_later(self, name):
        with self._cond:
            self._doomed.add(name)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run,
                                                name="reaper", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def pending(self):
        """Names waiting to be torn down."""
        with self._cond:
            return set(self._doomed)

    def settle(self, *names, timeout=10.0):
        """Wait until none of names is waiting (a new endpoint wants the
        name): the batch it is in goes at once."""
        with self._cond:
            if self._doomed.intersection(names):
                self._urgent = True
                self._cond.notify_all()
            self._cond.wait_for(
                lambda: not self._doomed.intersection(names), timeout)

    def _run(self):
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._doomed)
                self._cond.wait_for(lambda: self._urgent, self._gather)
                self._urgent = False
                batch = sorted(self._doomed)
            self._tear_down(batch)
            with self._cond:
                self._doomed.difference_update(batch)
                self._cond.notify_all()

    def _tear_down(self, names):
        # Ports first: a link vanishing under vswitchd makes it fail on the
        # port and log errors until the port goes.
        for step, what in ((self._remove_ports, "ports"),
                           (self._delete_links, "links")):
            try:
                step(names)
            except Exception as exc:  # the janitor finds what is left
                LOG.warning("removing %s %s failed: %s", what,
                            ", ".join(names), exc)
