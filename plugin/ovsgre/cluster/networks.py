"""Cluster-wide network definitions: one name, one GRE key, one subnet set.

A network is recognised across hosts by the name given with
``-o ovsgre.network=NAME``.  With etcd, the first host to create it records
its subnets and gets a key allocated (compare-and-swap, so two hosts never
get different keys or the same key for different networks); a host that
later asks for the same name with other subnets gets an error instead of a
silently broken network.  Without etcd (static peers) every host derives the
key from the name, or takes it from ``-o ovsgre.key=N``.

A definition lives while someone holds it: the hosts that have the Docker
network (``hosts``, from CreateNetwork until DeleteNetwork) and, in a swarm,
the swarm networks the manager reserved it for (``swarm``, from
AllocateNetwork until FreeNetwork; the manager is not a host of it).  The
last holder to let go deletes it and frees the key (compare-and-delete).
"""

import logging

from ..definitions import KEY_MAX, KEY_MIN, derive_key
from ..errors import Conflict
from .kv import RETRY, compare_and_swap
from .records import (Malformed, MalformedLog, parse_key_owner,
                      parse_network)

LOG = logging.getLogger(__name__)

NETS = "/ovsgre/networks/"
KEYS = "/ovsgre/keys/"
SWARM = "swarm"   # swarm network IDs reserving a definition (manager)


class NetworkRegistry:
    def __init__(self, kv, host_id):
        self.kv = kv
        self.host_id = host_id
        self.malformed = MalformedLog(LOG, "network")

    def define(self, name, ipv4, ipv6, key=None):
        """Record (or match) the network and hold it for this host (which
        has the Docker network); return its GRE key."""
        return self._hold(name, ipv4, ipv6, key, "hosts", self.host_id)

    def reserve(self, name, ipv4, ipv6, network_id, key=None):
        """Swarm manager (AllocateNetwork): record (or match) the network
        for swarm network `network_id` without making this host a holder
        (it may never run a container on it); return its GRE key.  The
        nodes hold it from their CreateNetwork; `free` drops the
        reservation."""
        return self._hold(name, ipv4, ipv6, key, SWARM, network_id)

    def _hold(self, name, ipv4, ipv6, key, field, holder):
        wanted = {"name": name, "ipv4": sorted(ipv4), "ipv6": sorted(ipv6)}

        def attempt():
            current = self.kv.get(NETS + name)
            if current is None:
                current = self._create(wanted, key, field, holder)
                if current is None:
                    return RETRY   # lost a race; look again
            net = self._trusted(name, current)
            _check_same(net, wanted, key)
            held = list(getattr(net, field))
            if holder in held or self.kv.replace(
                    NETS + name, current,
                    dict(current, **{field: sorted(held + [holder])})):
                return net.key
            return RETRY
        return compare_and_swap(f"network {name!r}", attempt)

    def _trusted(self, name, record):
        """The record at NETS + name as a typed value, refused unless it
        parses and its key is reserved for this very name: a record that
        claims another network's key would bridge the two across hosts."""
        try:
            net = parse_network(NETS + name, record, NETS)
            owner = self.kv.get(f"{KEYS}{net.key}")
            if owner is None and self.kv.create(f"{KEYS}{net.key}",
                                                {"name": name}):
                return net
            owner = parse_key_owner(owner)
        except Malformed as exc:
            self.malformed.skip(NETS + name, exc)
            raise Conflict(f"network {name!r}: its cluster record is "
                           f"malformed ({exc}); fix or remove "
                           f"{NETS}{name} in etcd") from None
        if owner != name:
            raise Conflict(f"network {name!r}: its cluster record claims "
                           f"GRE key {net.key}, which is reserved for "
                           f"network {owner!r}; refused")
        return net

    def _create(self, wanted, key, field, holder):
        name = wanted["name"]
        if key is None:
            key = self._allocate_key(name)
        elif not self.kv.create(f"{KEYS}{key}", {"name": name}):
            owner = self._key_owner(key)
            if owner != name:
                raise Conflict(f"GRE key {key} is already used by network "
                               f"{owner!r}")
        record = dict(wanted, key=key, hosts=[])
        record[field] = [holder]
        if self.kv.create(NETS + name, record):
            return record
        # another host defined it at the same moment: theirs wins
        self._free_key(key, name)
        return None

    def _allocate_key(self, name):
        if not self.kv.shared:
            key = derive_key(name)
            if self.kv.create(f"{KEYS}{key}", {"name": name}):
                return key
            owner = self._key_owner(key)
            if owner == name:
                return key
            raise Conflict(
                f"networks {name!r} and {owner!r} both get GRE key {key} "
                "from their names (without etcd a key is a hash of the "
                f"name): create {name!r} with -o ovsgre.key=N, the same N "
                "on every host and one no other network uses, or choose "
                "another name")
        used = {int(k[len(KEYS):]) for k in self.kv.list(KEYS)
                if k[len(KEYS):].isdigit()}
        for key in range(KEY_MIN, KEY_MAX + 1):
            if key not in used and self.kv.create(f"{KEYS}{key}",
                                                  {"name": name}):
                return key
        raise Conflict("no free GRE key")

    def _free_key(self, key, name):
        if self._key_owner(key) == name:
            self.kv.delete(f"{KEYS}{key}")

    def _key_owner(self, key):
        """The network a GRE key is reserved for; None when no record, or
        "(malformed record)" when the record does not parse (logged)."""
        record = self.kv.get(f"{KEYS}{key}")
        if record is None:
            return None
        try:
            return parse_key_owner(record)
        except Malformed as exc:
            self.malformed.skip(f"{KEYS}{key}", exc)
            return "(malformed record)"

    def release(self, name):
        """This host no longer has the network; the last holder removes it
        (compare-and-delete, so a host joining meanwhile keeps it)."""
        self._drop(name, "hosts", self.host_id)

    def free(self, network_id):
        """Swarm manager (FreeNetwork): swarm network `network_id` is gone;
        drop its reservation, and the definition with its key once no host
        holds it either.  Returns the names it was reserving."""
        names = sorted(name for name, net in self.list().items()
                       if network_id in net.swarm)
        for name in names:
            self._drop(name, SWARM, network_id)
        return names

    def _drop(self, name, field, holder):
        def attempt():
            current = self.kv.get(NETS + name)
            if current is None:
                return None
            try:
                net = parse_network(NETS + name, current, NETS)
            except Malformed as exc:     # left for an operator: see status
                self.malformed.skip(NETS + name, exc)
                return None
            if holder not in getattr(net, field):
                return None
            rest = [h for h in getattr(net, field) if h != holder]
            updated = dict(current, **{field: rest})
            if not updated.get(SWARM):
                updated.pop(SWARM, None)   # plain records keep their shape
            if updated.get("hosts") or updated.get(SWARM):
                return None if self.kv.replace(NETS + name, current,
                                               updated) else RETRY
            if not self.kv.delete_if(NETS + name, current):
                return RETRY
            self._free_key(net.key, name)
            return None
        compare_and_swap(f"network {name!r}", attempt)

    def list(self):
        """{name: Network} of the records that parse; the others are
        skipped (logged once, see self.malformed)."""
        out = {}
        items = self.kv.list(NETS)
        for path, record in items.items():
            try:
                net = parse_network(path, record, NETS)
            except Malformed as exc:
                self.malformed.skip(path, exc)
                continue
            out[net.name] = net
        self.malformed.keep_only(set(items) - {NETS + n for n in out})
        return out

    def hosts_of(self, name):
        net = self.list().get(name)
        return sorted(net.hosts) if net else []


def _check_same(net, wanted, key):
    name = wanted["name"]
    for family in ("ipv4", "ipv6"):
        if net.subnets(family) != wanted[family]:
            have = ", ".join(net.subnets(family)) or "none"
            asked = ", ".join(wanted[family]) or "none"
            raise Conflict(
                f"network {name!r} exists in the cluster with {family} "
                f"subnets {have}; this host asked for {asked}")
    if key is not None and net.key != key:
        raise Conflict(f"network {name!r} exists in the cluster with GRE "
                       f"key {net.key}, not {key}")
