"""The IPAM driver: pools and addresses in the cluster store.

With etcd every address is claimed with an atomic create-if-absent, so no
address is ever handed out twice in the cluster, also when several hosts
start containers at the same moment.  Without etcd the same code runs on
the local store (one host, or static peers each with its own ``--ip-range``).

Address spaces: pools with the same subnet in one space are one pool
(the same network on several hosts).  ``--ipam-opt ovsgre.network=NAME``
gives a network a space of its own, so two networks may use overlapping
subnets; in the shared "default" space overlapping subnets are refused.

Addresses are handed out in turn, from the one after the address handed
out last, wrapping around at the end of the pool (as Docker's own IPAM does
for overlay networks): Docker derives a container's MAC from its address,
so an address given again at once to a container on another host would
move a MAC between hosts while switches and ARP caches still send it to
the old place, and the new container's first packets would be lost.

Every RequestPool is a holder of its own: the PoolID carries a token
(``SPACE/SUBNET[/RANGE]#TOKEN``) and ReleasePool gives back only that
token.  Two Docker networks on one host that share a pool (or a network
Docker refused after its pool was granted) therefore never release each
other's addresses; the pool and its addresses go when the last holder
releases it.
"""

import ipaddress
import itertools
import logging
import urllib.parse
import uuid

from .cluster.kv import RETRY, compare_and_swap
from .definitions import valid_name
from .cluster.records import (TOKEN, TOKEN_LEN, Malformed, MalformedLog,
                              parse_claim, parse_pool)
from .errors import Conflict, InvalidRequest, NotFound, Unavailable
from .schema import SPACE_OPT
from .specs import GrantedPool

LOG = logging.getLogger(__name__)

POOLS = "/ovsgre/ipam/pools/"
ADDRS = "/ovsgre/ipam/addrs/"
LAST = "/ovsgre/ipam/last/"   # per pool: the address handed out last
MAX_SCAN = 1 << 16
TOKEN_SEP = "#"


def _q(cidr):
    return urllib.parse.quote(cidr, safe="")


class Ipam:
    def __init__(self, kv, host_id):
        self.kv = kv
        self.host_id = host_id
        # pools and claims are written by every host: parsed before use
        self.malformed = MalformedLog(LOG, "IPAM")

    def _parsed_pool(self, key, record):
        """The Pool a record read at key holds, or None when it does not
        parse (logged once; what it would decide is left alone)."""
        try:
            return parse_pool(key, record, POOLS)
        except Malformed as exc:
            self.malformed.skip(key, exc)
            return None

    def _read_claim(self, key):
        """(record as stored, its Claim) at key; (None, None) when absent,
        (record, None) when it does not parse (logged once)."""
        record = self.kv.get(key)
        return record, (self._parsed_claim(key, record)
                        if record is not None else None)

    def _parsed_claim(self, key, record):
        try:
            return parse_claim(key, record)
        except Malformed as exc:
            self.malformed.skip(key, exc)
            return None

    def _usable_pool(self, key, record):
        """A pool this call must use: a malformed one is an error that
        says which record to fix."""
        pool = self._parsed_pool(key, record)
        if pool is None:
            raise Unavailable(
                f"the IPAM record {key} is malformed "
                f"({self.malformed.current().get(key)}): fix or delete it "
                f"(etcdctl del {key})")
        return pool

    @staticmethod
    def capabilities():
        return {"RequiresMACAddress": False, "RequiresRequestReplay": False}

    @staticmethod
    def default_spaces():
        return {"LocalDefaultAddressSpace": "ovsgre-local",
                "GlobalDefaultAddressSpace": "ovsgre-global"}

    # -- pools --------------------------------------------------------------
    def request_pool(self, request):
        """Hold the pool of a (checked) PoolRequest; returns its PoolID."""
        space, net = request.space, ipaddress.ip_network(request.pool)
        token = uuid.uuid4().hex[-TOKEN_LEN:]
        self._claim_pool(space, net, token)
        sub = request.subpool
        pool_id = f"{space}/{net}" + (f"/{sub}" if sub else "") + \
            f"{TOKEN_SEP}{token}"
        return GrantedPool(pool_id=pool_id, pool=str(net))

    def _claim_pool(self, space, net, token):
        """Hold the pool of net in space.  The overlap check and the write
        are one transaction: two hosts claiming different, overlapping
        subnets at the same moment cannot both succeed."""
        prefix = f"{POOLS}{space}/"
        key = f"{prefix}{_q(str(net))}"

        def attempt():
            pools, revision = self.kv.list_with_revision(prefix)
            _check_no_overlap(space, net, [
                p.net for p in map(self._parsed_pool, pools, pools.values())
                if p is not None])
            record = pools.get(key)
            if record is not None:
                self._usable_pool(key, record)
            # a new incarnation: addresses of a released pool of the same
            # subnet can never mix with this one's
            new = {"pool": str(net), "id": uuid.uuid4().hex,
                   "holders": {token: self.host_id}} if record is None \
                else _with_holder(record, token, self.host_id)
            return None if self.kv.write_if_unchanged(
                prefix, revision, key, record, new) else RETRY
        compare_and_swap(f"pool {net}", attempt)

    def release_pool(self, pool_id):
        space, net, _, token = _parse_pool_id(pool_id)
        # not (or no longer) a holder: a repeat, nothing to do
        self._drop_holders(space, net,
                     lambda r: _without_holder(r, token, self.host_id))

    def forget_host(self):
        """A host that is gone for good (``ovsgre host forget``): drop its
        holds on pools (a pool it held alone goes, with its addresses) and
        free the addresses its containers had.  Returns (pools, addresses)
        released."""
        pools = addresses = 0
        for key, record in self.kv.list(POOLS).items():
            pool = self._parsed_pool(key, record)
            if pool is None:
                continue
            space, net = pool.space, pool.net
            left, changed = self._drop_holders(
                space, net, lambda r: _without_host(r, self.host_id))
            pools += changed
            if left is not None:
                addresses += self._forget_addresses(space, net, left)
        return pools, addresses

    def _drop_holders(self, space, net, without):
        """Drop holders of a pool: without(record) is the record without
        them, or None when none of them holds it.  The last holder to go
        deletes the pool, and this incarnation's addresses go with it.
        Returns (the record as left or None when gone, whether it changed)."""
        key = f"{POOLS}{space}/{_q(str(net))}"

        def attempt():
            record = self.kv.get(key)
            if record is None or self._parsed_pool(key, record) is None:
                return None, False
            rest = without(record)
            if rest is None:
                return record, False
            if any(_holders(rest)):
                return (rest, True) if self.kv.replace(key, record, rest) \
                    else RETRY
            if not self.kv.delete_if(key, record):
                return RETRY
            for addr in self.kv.list(self._prefix(space, net, record)):
                self.kv.delete(addr)
            self.kv.delete(self._last_key(space, net, record))
            return None, True
        return compare_and_swap(f"pool {net}", attempt)

    def _forget_addresses(self, space, net, pool):
        count = 0
        prefix = self._prefix(space, net, pool)
        for key, record in self.kv.list(prefix).items():
            claim = self._parsed_claim(key, record)
            if claim and claim.host == self.host_id and \
                    not claim.gateway and not claim.aux and \
                    self.kv.delete_if(key, record):
                count += 1
        return count

    def _pool(self, space, net):
        key = f"{POOLS}{space}/{_q(str(net))}"
        record = self.kv.get(key)
        if record is None:
            raise NotFound(f"pool {net} in space {space!r} is not "
                           "allocated (released, or never requested)")
        self._usable_pool(key, record)
        return record

    @staticmethod
    def _prefix(space, net, record):
        return f"{ADDRS}{space}/{_q(str(net))}/{record['id']}/"

    @staticmethod
    def _last_key(space, net, record):
        return f"{LAST}{space}/{_q(str(net))}/{record['id']}"

    # -- addresses ----------------------------------------------------------
    def request_address(self, request):
        """Claim the address of an AddressRequest (or a free one); returns
        it with the pool's prefix length."""
        address = request.address
        space, net, sub, _ = _parse_pool_id(request.pool_id)
        pool = self._pool(space, net)
        prefix = self._prefix(space, net, pool)
        if request.gateway:
            ip = self._gateway(prefix, net, address)
        elif address:
            ip = _address_in(address, net)
            self._claim(prefix + str(ip), ip)
        else:
            ip = self._allocate(prefix, self._last_key(space, net, pool),
                                net, sub or net)
        return f"{ip}/{net.prefixlen}"

    def _claim(self, key, ip):
        """A given address.  One kept with --aux-address (see keep_aux) is
        given to every host that asks: Docker asks on each host that creates
        the network, with a request no different from a container's --ip
        (the network driver refuses it to containers)."""
        if self.kv.create(key, self._owner()):
            return
        _, claim = self._read_claim(key)
        if claim is not None and claim.aux:
            return
        raise Conflict(f"address {ip} is already in use (by a container, or "
                       "as --aux-address of a network another host is "
                       "creating this moment: then try again)")

    def keep_aux(self, pool, addresses):
        """Make this host's claims of `addresses` in the pools of subnet
        `pool` reservations of the pool: shared by every host, released
        by none (ReleaseAddress leaves them), gone with the pool when its
        last holder releases it."""
        net = ipaddress.ip_network(pool)
        for space, pool in self._pools_of(net):
            prefix = self._prefix(space, net, pool)
            for ip in addresses:
                key = prefix + str(ip)
                record, claim = self._read_claim(key)
                if claim and claim.host == self.host_id and \
                        not claim.gateway and not claim.aux:
                    self.kv.replace(key, record, dict(record, aux=True))

    def _pools_of(self, net):
        """(space, record) of every pool of subnet net."""
        for key, record in self.kv.list(POOLS).items():
            pool = self._parsed_pool(key, record)
            if pool is not None and pool.net == net:
                yield pool.space, record

    def _owner(self, gateway=False):
        return {"host": self.host_id, "gateway": gateway}

    def _gateway(self, prefix, net, address):
        """The gateway is one address for the whole network: every host
        asks for it when it creates the network, and all get it."""
        # hosts() of a /32 or /128 is a list, not an iterator
        ip = _address_in(address, net) if address else \
            next(iter(net.hosts()))
        key = prefix + str(ip)
        if self.kv.create(key, self._owner(gateway=True)):
            return ip
        _, claim = self._read_claim(key)
        if claim is not None and claim.gateway:
            return ip
        raise Conflict(f"gateway address {ip} is in use by a container")

    def _allocate(self, prefix, last_key, net, rng):
        taken = {k[len(prefix):] for k in self.kv.list(prefix)}
        last = _last_given(self.kv.get(last_key), rng)
        for ip in itertools.islice(_candidates(net, rng, last), MAX_SCAN):
            if str(ip) in taken:
                continue
            if self.kv.create(prefix + str(ip), self._owner()):
                # No compare-and-swap: hosts racing here write addresses
                # given out a moment ago, and any of them will do.
                self.kv.put(last_key, {"address": str(ip)})
                return ip
            taken.add(str(ip))   # another host won it a moment ago
        raise Conflict(f"no free address in {rng}")

    def release_address(self, pool_id, address):
        space, net, _, _ = _parse_pool_id(pool_id)
        ip = _address_in(address, net)
        pool_key = f"{POOLS}{space}/{_q(str(net))}"
        pool = self.kv.get(pool_key)
        if pool is None or self._parsed_pool(pool_key, pool) is None:
            return
        key = self._prefix(space, net, pool) + str(ip)
        record, claim = self._read_claim(key)
        # Any host may release (a host's id changes with its address), but
        # only the claim just read: compare-and-delete.  The gateway and
        # --aux-address reservations go with the pool.
        if claim and not claim.gateway and not claim.aux:
            self.kv.delete_if(key, record)


def _check_no_overlap(space, net, subnets):
    for theirs in subnets:
        if theirs != net and theirs.version == net.version and \
                theirs.overlaps(net):
            raise Conflict(
                f"subnet {net} overlaps {theirs}, which is in use in "
                f"address space {space!r} (by another network, or by "
                f"this network with another subnet on another host); "
                f"use the same subnet on every host, or give a "
                f"different network its own space with --ipam-opt "
                f"{SPACE_OPT}=NAME")


def _holders(record):
    """Who holds a pool: tokens of RequestPool calls, and hosts of records
    written before tokens existed (their PoolIDs carry no token)."""
    return dict(record.get("holders") or {}), list(record.get("hosts") or [])


def _with_holder(record, token, host_id):
    holders, hosts = _holders(record)
    holders[token] = host_id
    return dict(record, holders=holders, hosts=hosts)


def _without_host(record, host_id):
    """The record without any hold of host_id, or None when it has none."""
    holders, hosts = _holders(record)
    if host_id not in hosts and host_id not in holders.values():
        return None
    return dict(record, hosts=[h for h in hosts if h != host_id],
                holders={t: h for t, h in holders.items() if h != host_id})


def _without_holder(record, token, host_id):
    """The record without this holder, or None when it is not one."""
    holders, hosts = _holders(record)
    if token is not None and token in holders:
        del holders[token]
    elif token is None and host_id in hosts:
        hosts.remove(host_id)
    else:
        return None
    return dict(record, holders=holders, hosts=hosts)


def _last_given(record, rng):
    """The address handed out last, from the cluster store (written by any
    host: checked), or None."""
    try:
        ip = ipaddress.ip_address(record["address"])
    except (TypeError, KeyError, ValueError):
        return None
    return ip if ip in rng else None


def _candidates(net, rng, after=None):
    """Addresses of rng that may be handed out, starting after `after` and
    wrapping around; by integer, so a large pool costs nothing to skip."""
    low, high = int(rng.network_address), int(rng.broadcast_address)
    start = int(after) + 1 if after is not None else low
    if not low <= start <= high:
        start = low
    excluded = {int(ip) for ip in _never_given(net)}
    for value in itertools.chain(range(start, high + 1), range(low, start)):
        if value not in excluded:
            yield ipaddress.ip_address(value) if net.version == 4 else \
                ipaddress.IPv6Address(value)


def _network(text, field):
    try:
        return ipaddress.ip_network(text, strict=False)
    except (ValueError, TypeError):
        raise InvalidRequest(f"{field} {text!r} is not a subnet") from None


def _address_in(text, net):
    try:
        ip = ipaddress.ip_interface(text).ip
    except (ValueError, TypeError):
        raise InvalidRequest(f"Address {text!r} is not an address") from None
    if ip not in net:
        raise InvalidRequest(f"Address {ip} is not in {net}")
    if ip in _never_given(net):
        what = "network or broadcast address" if net.version == 4 else \
            "subnet-router anycast address (RFC 4291)"
        raise InvalidRequest(f"Address {ip} is the {what} of {net}")
    return ip


def _never_given(net):
    """Addresses of net no container may have, whatever range it asks
    from: IPv4's network and broadcast addresses, IPv6's subnet-router
    anycast address (every router of the link answers it)."""
    if net.version == 4:
        return (net.network_address, net.broadcast_address) \
            if net.prefixlen < 31 else ()
    return (net.network_address,) if net.prefixlen < 127 else ()


def _parse_pool_id(pool_id):
    """SPACE/SUBNET[/RANGE][#TOKEN] -> (space, net, range, token)."""
    text, sep, token = (pool_id or "").partition(TOKEN_SEP)
    if sep and not TOKEN.fullmatch(token):
        raise NotFound(f"unknown PoolID {pool_id!r}")
    parts = text.split("/")
    if len(parts) not in (3, 5) or not valid_name(parts[0]):
        raise NotFound(f"unknown PoolID {pool_id!r}")
    net = _network("/".join(parts[1:3]), "PoolID")
    sub = _network("/".join(parts[3:5]), "PoolID") if len(parts) == 5 \
        else None
    return parts[0], net, sub, (token if sep else None)
