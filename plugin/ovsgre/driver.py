"""libnetwork NetworkDriver semantics, independent of HTTP.

Every call is idempotent: dockerd re-sends a call when the connection drops
and tolerates no surprises.  Intent is written to the store before the
dataplane is touched (a new endpoint's record before its veth pair, a
deleted endpoint's record removed before its port), so after a crash at any
point the start-up reconciler can finish the job from the store: records
without a port get one, owner-tagged ports and links without a record go.
A delete the dataplane refused leaves a "deleting" record for a retry.
"""

import ipaddress
import logging
import threading
import time
from dataclasses import replace

from . import names
from .crash_points import crash_point
from .config import DEFAULTS
from .definitions import CREATED, DELETING, JOINED, derive_key
from .errors import (Conflict, DataplaneError, InvalidRequest, NotFound,
                     OvsgreError, Unavailable)
from .records import Endpoint, HostRecords, Network
from .schema import OPT_NAME
from .specs import ChosenInterface, EndpointInfo, Joined

LOG = logging.getLogger(__name__)

VLAN_MIN, VLAN_MAX = 1, 4094


READY_TIMEOUT = DEFAULTS["ready_timeout"]   # s Join waits for forwarding


class Driver:
    def __init__(self, store, dataplane, default_mtu, registry=None,
                 tunnel_sync=None, ready_timeout=READY_TIMEOUT, ipam=None,
                 scope="local"):
        self.store = store
        self.records = HostRecords(store)
        self.scope = scope           # see capabilities()
        self.ipam = ipam             # ovsgre's IPAM: keeps aux addresses
        self.dataplane = dataplane
        self.default_mtu = default_mtu
        self.ready_timeout = ready_timeout
        self.registry = registry     # cluster network definitions
        self.tunnel_sync = tunnel_sync   # tunnels and flows, multi-host only
        self._lock = threading.RLock()
        self._host_ifs = None   # {host veth: endpoint ID}, see _name_index

    def locked(self, func, *args):
        """Run func between calls (background reconcilers)."""
        with self._lock:
            result = func(*args)
            self._host_ifs = None   # the store may have changed
            return result

    # -- capabilities -----------------------------------------------------
    def capabilities(self):
        # Local scope: each daemon keeps its own network definitions;
        # global (managed plugin in a swarm): swarm-scope networks.
        # Global connectivity either way: endpoints reach other hosts.
        return {"Scope": self.scope, "ConnectivityScope": "global"}

    # -- swarm --------------------------------------------------------------
    def allocate_network(self, spec):
        """Swarm manager: fix the network's key once and return it; with
        the name it goes into the options every node's CreateNetwork
        receives.  With etcd, the name and key are reserved for the swarm
        network (the manager does not become a host of it: it may never run
        a container there) until FreeNetwork.  Without, the key is the one
        given or derived from the name."""
        name, key = spec.name, spec.key
        if self.registry is None or not self.registry.kv.shared:
            return derive_key(name) if key is None else key
        if spec.pools_error:
            raise InvalidRequest(spec.pools_error)
        ipv4 = [p.pool for p in spec.ipv4]
        ipv6 = [p.pool for p in spec.ipv6]
        try:
            return self.registry.reserve(name, ipv4, ipv6, spec.network_id,
                                         key)
        except Unavailable as exc:
            if key is None:
                raise
            # The key is fixed already (-o ovsgre.key, or the manager
            # re-allocating after a restart or leader change, which passes
            # the options it returned before): the nodes record it.
            LOG.warning("network %s: key %s not reserved in etcd: %s",
                        name, key, exc)
            return key

    def free_network(self, network_id):
        """Swarm manager: the swarm network is gone; drop its reservation
        (the definition goes with the last node's DeleteNetwork, or now if
        no node has it)."""
        if self.registry is None or not self.registry.kv.shared:
            return
        for name in self.registry.free(network_id):
            LOG.info("network %s: swarm reservation of %s dropped",
                     network_id[:12], name)

    # -- networks ---------------------------------------------------------
    def create_network(self, spec):
        network_id = spec.network_id
        net = Network(
            network_id=network_id, vlan=0,
            mtu=self.default_mtu if spec.mtu is None else spec.mtu,
            gwbridge=spec.gwbridge, name=spec.name, port_type=spec.port_type,
            ipv4=spec.ipv4, ipv6=spec.ipv6)
        with self._lock:
            existing = self.records.network(network_id)
            if existing is not None:
                if _same_network(existing, net):
                    return
                raise Conflict(f"network {network_id} exists with a "
                               "different configuration")
            self.dataplane.check_port_type(net.port_type, net.mtu)
            # Local resources before the cluster record (a refusal must not
            # leave this host in the network's hosts); then the cluster's
            # view, which names a subnet disagreement, before the name
            # check (when that fails, this host holds the name already).
            net = replace(net, vlan=self._free_vlan())
            net = replace(net, key=self._cluster_key(net, spec.key))
            self._check_name_free(net.name)
            self.records.put_network(net)
        self._keep_aux(net)
        LOG.info("network %s: vlan %d mtu %d name %s key %s",
                 network_id[:12], net.vlan, net.mtu, net.name or "-",
                 net.key or "-")
        self._resync(wait=10)

    def _keep_aux(self, net):
        """Docker asked the IPAM for each --aux-address just before this
        call, on every host that creates the network: the first host's
        claims become reservations of the pool, which the other hosts'
        requests then share (see Ipam.keep_aux)."""
        if self.ipam is None:
            return
        for pool in net.pools():
            if not pool.aux:
                continue
            try:
                self.ipam.keep_aux(pool.pool, list(pool.aux))
            except OvsgreError as exc:
                # the network works; other hosts' creates fail until then
                LOG.warning("network %s: aux addresses %s not shared with "
                            "other hosts: %s", net.network_id[:12],
                            ", ".join(pool.aux), exc)

    def _check_name_free(self, name):
        """One Docker network per cluster network on a host: two would share
        one GRE key (which local VLAN would its frames go to?), and
        removing one would release the name under the other."""
        if not name:
            return
        for other in self.records.networks().values():
            if other.name == name:
                raise Conflict(
                    f"option {OPT_NAME}={name} is already used by network "
                    f"{other.network_id[:12]} on this host; one Docker "
                    "network per cluster network and host")

    def _cluster_key(self, net, key):
        """Define a named network cluster-wide (or join its definition) and
        return its GRE key (the one asked for, or the cluster's); None for
        a network that stays on this host."""
        if not net.name or self.registry is None:
            return None
        return self.registry.define(
            net.name, [p.pool for p in net.ipv4], [p.pool for p in net.ipv6],
            key)

    def _resync(self, wait=0):
        sync = self.tunnel_sync
        if sync is not None and not sync.request(wait):
            LOG.warning("tunnel flows not updated yet: %s",
                        sync.last_error or "sync pending")

    def delete_network(self, network_id):
        with self._lock:
            net = self.records.network(network_id)
            if net is None:
                return
            failures = []
            for ep in self._endpoints_of(network_id):
                try:
                    self._delete_endpoint(ep)
                except Exception as exc:  # left "deleting" for reconcile
                    failures.append(f"{ep.endpoint_id[:12]}: {exc}")
            # Docker never re-sends DeleteNetwork: release it regardless.
            self.records.delete_network(network_id)
        self._release(net)
        self._resync()
        if failures:
            raise DataplaneError("network deleted, but cleaning up "
                                 f"endpoints failed: {'; '.join(failures)}")

    def _release(self, net):
        if not net.name or self.registry is None:
            return
        try:
            self.registry.release(net.name)
        except Exception as exc:  # etcd down: the definition stays
            LOG.warning("network %s: cluster record not released: %s",
                        net.name, exc)

    def _free_vlan(self):
        used = {n.vlan for n in self.records.networks().values()}
        for vlan in range(VLAN_MIN, VLAN_MAX + 1):
            if vlan not in used:
                return vlan
        raise Conflict("no free VLAN tag: at most 4094 networks per host")

    def _network(self, network_id):
        net = self.records.network(network_id)
        if net is None:
            raise NotFound(f"network {network_id} not found")
        return net

    # -- endpoints --------------------------------------------------------
    def create_endpoint(self, spec):
        """Returns what was chosen for the values Docker left empty."""
        network_id, endpoint_id = spec.network_id, spec.endpoint_id
        with self._lock:
            net = self._network(network_id)
            ep = self.records.endpoint(endpoint_id)
            if ep is not None and ep.state == DELETING:
                self._delete_endpoint(ep)  # finish the interrupted delete
                ep = None
            if ep is not None:
                if ep.network_id != network_id:
                    raise Conflict(f"endpoint {endpoint_id} belongs to "
                                   f"network {ep.network_id}")
                _check_repeat(ep, spec)
                self._replug(ep, net.vlan)
                return _chosen(spec, ep)
            ep = self._new_endpoint(net, spec)
            self.records.put_endpoint(ep)
            self._name_index()[ep.host_if] = endpoint_id
            crash_point("CreateEndpoint:after_record")
            try:
                self.dataplane.plug(ep, net.vlan)
            except Exception:
                self._undo_endpoint(ep)
                raise
            crash_point("CreateEndpoint:after_plug")
        return _chosen(spec, ep)

    def _replug(self, ep, vlan):
        """A repeated CreateEndpoint.  Once joined, the container end lives
        in the sandbox: re-creating the pair would cut the container off,
        so only the OVS port is made sure of, and only while the host end
        exists."""
        if ep.state != JOINED:
            self.dataplane.plug(ep, vlan)
        elif self.dataplane.has_host_link(ep):
            self.dataplane.ensure_port(ep, vlan)

    def _new_endpoint(self, net, spec):
        endpoint_id = spec.endpoint_id
        _check_not_aux(net, spec)
        mac = spec.mac or names.mac_for(endpoint_id)
        host_if, peer_if = self._free_names(endpoint_id)
        return Endpoint(
            network_id=net.network_id, endpoint_id=endpoint_id,
            host_if=host_if, peer_if=peer_if, mac=mac, mtu=net.mtu,
            port_type=net.port_type, address=spec.address,
            address6=spec.address6, state=CREATED, sandbox="",
            created_at=round(time.time(), 3))

    def _free_names(self, endpoint_id):
        taken = self._name_index()
        for attempt in range(names.MAX_ATTEMPTS):
            host_if, peer_if = names.veth_names(endpoint_id, attempt)
            if taken.get(host_if, endpoint_id) == endpoint_id:
                return host_if, peer_if
        raise Conflict(f"no free interface name for endpoint {endpoint_id}")

    def _name_index(self):
        """Host veth names in use, kept in memory so that creating an
        endpoint costs the same with 10 or 1,000 others (call with the
        lock held)."""
        if self._host_ifs is None:
            self._host_ifs = {e.host_if: e.endpoint_id for e in
                              self.records.endpoints().values()}
        return self._host_ifs

    def endpoint_info(self, network_id, endpoint_id):
        ep = self._endpoint(network_id, endpoint_id)
        net = self._network(network_id)
        return EndpointInfo(host_if=ep.host_if, peer_if=ep.peer_if,
                            mac=ep.mac, vlan=net.vlan, mtu=ep.mtu,
                            state=ep.state)

    def _endpoint(self, network_id, endpoint_id):
        ep = self.records.endpoint(endpoint_id)
        if ep is None or ep.state == DELETING:
            raise NotFound(f"endpoint {endpoint_id} not found")
        if ep.network_id != network_id:
            raise NotFound(f"endpoint {endpoint_id} is not on network "
                           f"{network_id}")
        return ep

    def delete_endpoint(self, network_id, endpoint_id):
        with self._lock:
            ep = self.records.endpoint(endpoint_id)
            if ep is None or ep.network_id != network_id:
                return
            self._delete_endpoint(ep)

    def _delete_endpoint(self, ep):
        # Record first: should the plugin die before the port and the veth
        # pair are gone, they are orphans (owner-tagged port, ovsgre-named
        # link) that the start-up reconciler removes.
        self.records.delete_endpoint(ep.endpoint_id)
        index = self._name_index()
        if index.get(ep.host_if) == ep.endpoint_id:
            del index[ep.host_if]
        crash_point("DeleteEndpoint:after_record")
        try:
            self.dataplane.unplug(ep)
        except Exception:
            # Keep the job for Docker's retry or the start-up reconciler.
            self.records.put_endpoint(ep.but(state=DELETING))
            index[ep.host_if] = ep.endpoint_id
            raise
        crash_point("DeleteEndpoint:after_unplug")

    def forget_stale(self, endpoint_id):
        """Remove an endpoint Docker does not know (see reconcile.Janitor);
        call through locked()."""
        ep = self.records.endpoint(endpoint_id)
        if ep is None:
            return False
        LOG.warning("removing endpoint %s of network %s: Docker does not "
                    "know it (dockerd restarted, or a call was interrupted "
                    "by a crash)",
                    endpoint_id[:12], ep.network_id[:12])
        self._delete_endpoint(ep)
        return True

    def _undo_endpoint(self, ep):
        try:
            self._delete_endpoint(ep)
        except Exception as exc:  # the reconciler finishes it later
            LOG.error("cleanup of endpoint %s failed: %s",
                      ep.endpoint_id[:12], exc)

    def _endpoints_of(self, network_id):
        return [e for e in self.records.endpoints().values()
                if e.network_id == network_id]

    # -- join / leave -----------------------------------------------------
    def join(self, spec):
        """Answer only once the container's port forwards: Docker starts
        the container's process right after, and its first packets (a
        connect, a DNS lookup) must not be lost while ovs-vswitchd is
        still adding the port."""
        network_id, endpoint_id = spec.network_id, spec.endpoint_id
        with self._lock:
            ep = self._endpoint(network_id, endpoint_id)
            net = self._network(network_id)
            if not self.dataplane.has_host_link(ep):
                # The pair vanished (its old sandbox died, or the host
                # rebooted): give the endpoint a fresh one.
                self.dataplane.plug(ep, net.vlan)
        # Outside the lock: other containers' calls go on meanwhile.
        self.dataplane.wait_forwarding(ep, self.ready_timeout)
        if self.tunnel_sync is not None and net.key:
            self.tunnel_sync.wait_installed(self.ready_timeout)
        with self._lock:
            ep = self._endpoint(network_id, endpoint_id).but(
                state=JOINED, sandbox=spec.sandbox_key)
            # Not fsync'ed: "joined" and "created" differ only in what the
            # reconciler does with a missing veth, and either is safe.
            self.records.put_endpoint(ep, durable=False)
            crash_point("Join:after_record")
        if self.tunnel_sync is not None and net.key:
            self.tunnel_sync.announce(ep.host_if, ep.mac)
        return Joined(peer_if=ep.peer_if, disable_gateway=not net.gwbridge)

    def leave(self, network_id, endpoint_id):
        with self._lock:
            ep = self.records.endpoint(endpoint_id)
            if ep is None or ep.network_id != network_id \
                    or ep.state != JOINED:
                return
            # Docker moves the peer back to the host namespace itself; the
            # pair stays until DeleteEndpoint.
            self.records.put_endpoint(ep.but(state=CREATED, sandbox=""),
                                      durable=False)
            crash_point("Leave:after_record")


def _check_not_aux(net, spec):
    """An address reserved with --aux-address is no container's (Docker's
    own IPAM refuses it too; ovsgre's cannot tell the two requests apart)."""
    for value in (spec.address, spec.address6):
        if not value:
            continue
        ip = str(ipaddress.ip_interface(value).ip)
        if any(ip in pool.aux for pool in net.pools()):
            raise Conflict(f"address {ip} is reserved on this network "
                           "(--aux-address)")


def _check_repeat(ep, spec):
    """A repeated CreateEndpoint must ask for what the endpoint has: an
    answer of 200 with the old values would leave Docker believing in
    addresses or a MAC the container does not get."""
    asked = spec.mac
    if asked and asked.lower() != ep.mac.lower():
        raise Conflict(f"endpoint {ep.endpoint_id[:12]} exists with MAC "
                       f"{ep.mac}, not {asked}")
    for field, key in (("Address", "address"), ("AddressIPv6", "address6")):
        asked, has = getattr(spec, key), getattr(ep, key)
        if _same_interface(asked, has):
            continue
        raise Conflict(f"endpoint {ep.endpoint_id[:12]} exists with "
                       f"{field} {has or '(none)'}, not {asked or '(none)'}")


def _same_interface(a, b):
    if not a or not b:
        return a == b
    return ipaddress.ip_interface(a) == ipaddress.ip_interface(b)


def _same_network(a, b):
    """What CreateNetwork asks for, compared (not what this host chose:
    VLAN tag, key)."""
    return (a.mtu, a.gwbridge, a.ipv4, a.ipv6, a.name, a.port_type) == \
        (b.mtu, b.gwbridge, b.ipv4, b.ipv6, b.name, b.port_type)


def _chosen(spec, ep):
    """The values the endpoint has where Docker left the choice to the
    driver (changing one Docker gave is refused in _check_repeat)."""
    return ChosenInterface(mac="" if spec.mac else ep.mac)
