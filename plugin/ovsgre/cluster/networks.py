"""Cluster-wide network definitions: one name, one GRE key, one subnet set.

A network is recognised across hosts by the name given with
``-o ovsgre.network=NAME``.  With etcd, the first host to create it records
its subnets and gets a key allocated (compare-and-swap, so two hosts never
get different keys or the same key for different networks); a host that
later asks for the same name with other subnets gets an error instead of a
silently broken network.  Without etcd (static peers) every host derives the
key from the name, or takes it from ``-o ovsgre.key=N``.
"""

import zlib

from ..errors import Conflict, Unavailable

NETS = "/ovsgre/networks/"
KEYS = "/ovsgre/keys/"
KEY_MIN, KEY_MAX = 1, (1 << 24) - 1
CAS_TRIES = 50


def derive_key(name):
    """Deterministic key for static mode (all hosts compute the same)."""
    return zlib.crc32(name.encode()) % KEY_MAX + 1


class NetworkRegistry:
    def __init__(self, kv, host_id):
        self.kv = kv
        self.host_id = host_id

    def define(self, name, ipv4, ipv6, key=None):
        """Record (or match) the network; return its GRE key."""
        wanted = {"name": name, "ipv4": sorted(ipv4), "ipv6": sorted(ipv6)}
        for _ in range(CAS_TRIES):
            current = self.kv.get(NETS + name)
            if current is None:
                current = self._create(wanted, key)
                if current is None:
                    continue   # lost a race; look again
            _check_same(current, wanted, key)
            if self.host_id in current["hosts"] or self.kv.replace(
                    NETS + name, current, dict(current, hosts=sorted(
                        current["hosts"] + [self.host_id]))):
                return current["key"]
        raise Unavailable(f"network {name!r}: too much contention, retry")

    def _create(self, wanted, key):
        name = wanted["name"]
        if key is None:
            key = self._allocate_key(name)
        elif not self.kv.create(f"{KEYS}{key}", {"name": name}):
            owner = (self.kv.get(f"{KEYS}{key}") or {}).get("name")
            if owner != name:
                raise Conflict(f"GRE key {key} is already used by network "
                               f"{owner!r}")
        record = dict(wanted, key=key, hosts=[self.host_id])
        if self.kv.create(NETS + name, record):
            return record
        # another host defined it at the same moment: theirs wins
        self._free_key(key, name)
        return None

    def _allocate_key(self, name):
        if not self.kv.shared:
            key = derive_key(name)
            if self.kv.create(f"{KEYS}{key}", {"name": name}) or \
                    (self.kv.get(f"{KEYS}{key}") or {}).get("name") == name:
                return key
            raise Conflict(f"network {name!r} hashes to GRE key {key}, "
                           "which another network uses: choose one with "
                           "-o ovsgre.key=N")
        used = {int(k[len(KEYS):]) for k in self.kv.list(KEYS)
                if k[len(KEYS):].isdigit()}
        for key in range(KEY_MIN, KEY_MAX + 1):
            if key not in used and self.kv.create(f"{KEYS}{key}",
                                                  {"name": name}):
                return key
        raise Conflict("no free GRE key")

    def _free_key(self, key, name):
        if (self.kv.get(f"{KEYS}{key}") or {}).get("name") == name:
            self.kv.delete(f"{KEYS}{key}")

    def release(self, name):
        """This host no longer has the network; the last one removes it
        (compare-and-delete, so a host joining meanwhile keeps it)."""
        for _ in range(CAS_TRIES):
            current = self.kv.get(NETS + name)
            if current is None or self.host_id not in current["hosts"]:
                return
            hosts = [h for h in current["hosts"] if h != self.host_id]
            if hosts:
                if self.kv.replace(NETS + name, current,
                                   dict(current, hosts=hosts)):
                    return
            elif self.kv.delete_if(NETS + name, current):
                self._free_key(current["key"], name)
                return
        raise Unavailable(f"network {name!r}: too much contention, retry")

    def list(self):
        return {k[len(NETS):]: v for k, v in self.kv.list(NETS).items()}

    def hosts_of(self, name):
        return sorted((self.kv.get(NETS + name) or {}).get("hosts", []))


def _check_same(current, wanted, key):
    name = wanted["name"]
    for family in ("ipv4", "ipv6"):
        if sorted(current.get(family, [])) != wanted[family]:
            have = ", ".join(current.get(family, [])) or "none"
            asked = ", ".join(wanted[family]) or "none"
            raise Conflict(
                f"network {name!r} exists in the cluster with {family} "
                f"subnets {have}; this host asked for {asked}")
    if key is not None and current["key"] != key:
        raise Conflict(f"network {name!r} exists in the cluster with GRE "
                       f"key {current['key']}, not {key}")
