"""In-memory stand-in for ``ovsgre.dataplane.Dataplane``.

It implements the interface the Driver and ``reconcile()`` use, records every
call, and keeps a small model of the world so tests can assert on state
rather than on call sequences:

- ``links``: kernel links in the *host* namespace, name -> dict.  A veth pair
  is two entries pointing at each other; deleting either end deletes both,
  as the kernel does.
- ``sandboxed``: links Docker moved into a container namespace (not visible
  to ``host_link``/``owned_links``, exactly like the real netlink calls made
  from the host namespace).
- ``ports``: OVS ports on the integration bridge, name -> {tag, external_ids,
  ofport}.  Ports may exist without a link (as in OVSDB).

``fail(method, exc, times=1)`` makes the next call(s) of a method raise.
"""

import copy
import threading
import time

from ovsgre import OWNER, names
from ovsgre.errors import DataplaneError
from ovsgre.cluster.kv import LocalKV

OWNER_KEY = "owner"


class Failing:
    """Records calls; `fail(method, exc, times)` makes the next calls of
    method raise exc."""

    def fail(self, method, exc, times=1):
        self._failures[method] = [exc, times]

    def _enter(self, method, *args):
        self.calls.append((method,) + args)
        failure = self._failures.get(method)
        if failure:
            exc, times = failure
            if times <= 1:
                del self._failures[method]
            else:
                failure[1] = times - 1
            raise exc


class FakeDataplane(Failing):
    def __init__(self, bridge="br-ovsgre", datapath="netdev"):
        self.bridge = bridge
        self.datapath = datapath
        self.links = {}
        self.sandboxed = {}
        self.ports = {}
        self.bridge_ensured = 0
        self.calls = []
        self._failures = {}
        self._next_ofport = 1

    # -- test helpers ---------------------------------------------------------
    def count(self, method):
        return sum(1 for c in self.calls if c[0] == method)

    def add_veth(self, host, peer, mtu=1450, mac="02:00:00:00:00:01"):
        """Create a pair behind the plugin's back (e.g. left by a crash)."""
        self.links[host] = {"name": host, "kind": "veth", "peer": peer,
                            "mtu": mtu, "address": None, "up": True}
        self.links[peer] = {"name": peer, "kind": "veth", "peer": host,
                            "mtu": mtu, "address": mac, "up": True}

    def add_foreign_link(self, name, kind="dummy"):
        self.links[name] = {"name": name, "kind": kind, "peer": None,
                            "mtu": 1500, "address": None, "up": True}

    def add_port_raw(self, name, tag=None, external_ids=None):
        """An OVS port created by someone (or something) else."""
        self.ports[name] = {"tag": tag,
                            "external_ids": dict(external_ids or {}),
                            "ofport": self._ofport()}

    def move_to_sandbox(self, name):
        """What Docker does with SrcName after Join."""
        self.sandboxed[name] = self.links.pop(name)

    def move_to_host(self, name):
        """What Docker does on Leave."""
        self.links[name] = self.sandboxed.pop(name)

    def kill_sandbox(self, name):
        """The container netns died: the veth pair goes with it."""
        link = self.sandboxed.pop(name, None) or self.links.pop(name, None)
        if link and link.get("peer"):
            self.links.pop(link["peer"], None)

    def _ofport(self):
        self._next_ofport += 1
        return self._next_ofport - 1

    def all_links(self):
        return set(self.links) | set(self.sandboxed)

    # -- link primitives (kernel semantics) -----------------------------------
    def _delete_link(self, name):
        link = self.links.pop(name, None)
        if link is None:
            return
        peer = link.get("peer")
        if peer:
            self.links.pop(peer, None)
            self.sandboxed.pop(peer, None)

    def _create_veth(self, host, peer, mtu, mac):
        current = self.links.get(host)
        if current is not None:
            if current["kind"] == "veth" and peer in self.links:
                current["mtu"] = mtu
                current["up"] = True
                return
            self._delete_link(host)
        if peer in self.links:
            self._delete_link(peer)
        if host in self.links or peer in self.links:
            raise AssertionError("fake: name still taken")
        if int(mac[:2], 16) & 1 or not int(mac.replace(":", ""), 16):
            # what Links.create_veth gets from the kernel (EADDRNOTAVAIL)
            raise DataplaneError(f"cannot create veth {host}: (99, 'Cannot "
                                 "assign requested address')")
        self.add_veth(host, peer, mtu, mac)

    def _add_port(self, name, tag, external_ids):
        port = self.ports.get(name)
        if port is None:
            port = self.ports[name] = {"tag": None, "external_ids": {},
                                       "ofport": self._ofport()}
        port["tag"] = tag
        port["external_ids"] = dict(external_ids)

    # -- the Dataplane interface ----------------------------------------------
    def close(self):
        self._enter("close")

    def ensure_bridge(self):
        self._enter("ensure_bridge")
        self.bridge_ensured += 1

    def plug(self, ep, tag):
        self._enter("plug", ep.endpoint_id, tag)
        self._create_veth(ep.host_if, ep.peer_if, ep.mtu, ep.mac)
        self._add_port(ep.host_if, tag,
                       _owner_ids(ep.network_id, ep.endpoint_id))

    def check_port_type(self, port_type, mtu):
        self._enter("check_port_type", port_type, mtu)

    def ensure_port(self, ep, tag):
        self._enter("ensure_port", ep.endpoint_id, tag)
        self._add_port(ep.host_if, tag,
                       _owner_ids(ep.network_id, ep.endpoint_id))

    def wait_forwarding(self, ep, timeout):
        """The fake vswitchd takes every port at once; fail() it to model
        a refused or late port."""
        self._enter("wait_forwarding", ep.endpoint_id, timeout)
        port = self.ports.get(ep.host_if)
        if port is None:
            raise DataplaneError(f"port {ep.host_if} is not in OVSDB")
        return {"type": "", "ofport": port["ofport"], "error": ""}

    def unplug(self, ep):
        self._enter("unplug", ep.endpoint_id)
        self._remove(ep.host_if, ep.peer_if)

    def _remove(self, host, peer):
        self.ports.pop(host, None)
        self._delete_link(host)
        if peer:
            self._delete_link(peer)

    def port(self, name):
        self._enter("port", name)
        port = self.ports.get(name)
        return copy.deepcopy(port) if port is not None else None

    def remove_port(self, name, wait=False):
        self._enter("remove_port", name)
        self.ports.pop(name, None)

    def remove_link(self, name):
        self._enter("remove_link", name)
        self._delete_link(name)

    def host_link(self, ep):
        self._enter("host_link", ep.endpoint_id)
        link = self.links.get(ep.host_if)
        return dict(link) if link is not None else None

    def has_host_link(self, ep):
        self._enter("has_host_link", ep.endpoint_id)
        return ep.host_if in self.links

    def owned_ports(self):
        self._enter("owned_ports")
        return {name: copy.deepcopy(p) for name, p in self.ports.items()
                if p["external_ids"].get(OWNER_KEY) == OWNER}

    def being_deleted(self):
        return set()

    def owned_links(self):
        self._enter("owned_links")
        return [name for name in self.links if names.is_ours(name)]


def _owner_ids(network_id, endpoint_id):
    return {OWNER_KEY: OWNER, "ovsgre_network": network_id,
            "ovsgre_endpoint": endpoint_id}


# -- multi-host stand-ins -----------------------------------------------------

class FakeRegistry(Failing):
    """Records define/release calls of ``NetworkRegistry``; keys from a
    counter (or the explicit one).  ``fail(method, exc, times=1)`` as above."""

    def __init__(self, first_key=100):
        self.defined = {}
        self.calls = []
        self._next = first_key
        self._failures = {}

    def define(self, name, ipv4, ipv6, key=None):
        self._enter("define", name, list(ipv4), list(ipv6), key)
        if name not in self.defined:
            if key is None:
                key = self._next
                self._next += 1
            self.defined[name] = key
        return self.defined[name]

    def release(self, name):
        self._enter("release", name)
        self.defined.pop(name, None)


class FakeTunnels:
    """Records ``Tunnels.sync(peers, networks)`` calls (and the holders of
    the last one); can fail on demand."""

    def __init__(self):
        self.syncs = []
        self.failures = 0
        self.announced = []          # (monotonic time, port, mac)
        self.announce_failures = 0
        self.flow_checks = 0
        self.intact = True
        self.instance = "100"       # the fake vswitchd's pid
        self.primes = 0
        self.lock = threading.Lock()

    def announce(self, port, mac):
        with self.lock:
            self.announced.append((time.monotonic(), port, mac))
            if self.announce_failures:
                self.announce_failures -= 1
                raise RuntimeError("port gone")

    def flows_intact(self):
        with self.lock:
            self.flow_checks += 1
            return self.intact

    def vswitchd_instance(self):
        return self.instance

    def forget_flows(self):
        self.intact = True          # the next sync reinstalls them

    def prime(self):
        with self.lock:
            self.primes += 1

    def sync(self, peers, networks, holders=None):
        with self.lock:
            self.syncs.append((set(peers), dict(networks)))
            self.holders = holders
            if self.failures:
                self.failures -= 1
                raise RuntimeError("vswitchd is restarting")
        return len(peers)


class FakePeers:
    """A peer source that reports nothing until the test calls ``report``."""

    def __init__(self):
        self.on_change = None
        self.stopped = False

    def start(self, on_change, on_holders=None):
        self.on_change = on_change
        self.on_holders = on_holders

    def report(self, peers):
        self.on_change(set(peers))

    def report_holders(self, holders):
        self.on_holders(holders)

    def stop(self):
        self.stopped = True


class FakeTunnelSync:
    """Records ``request(wait)`` calls the Driver makes."""

    def __init__(self, result=True):
        self.requests = []
        self.waits = []              # wait_installed(timeout) calls
        self.wait_error = None
        self.announced = []
        self.result = result
        self.last_error = None

    def request(self, wait=0):
        self.requests.append(wait)
        return self.result

    def wait_installed(self, timeout):
        self.waits.append(timeout)
        if self.wait_error is not None:
            raise self.wait_error

    def announce(self, port, mac):
        self.announced.append((port, mac))


class InterleavingKV(LocalKV):
    """Runs ``hook`` once, right after a get() of ``hook_key`` has read the
    store: another host acting between the read and the compare-and-swap."""

    hook_key = None
    hook = None

    def get(self, key):
        result = super().get(key)
        if key == self.hook_key and self.hook is not None:
            hook, self.hook = self.hook, None
            hook()
        return result
