"""The IPAM driver: pools and addresses in the cluster store.

With etcd every address is claimed with an atomic create-if-absent, so no
address is ever handed out twice in the cluster, also when several hosts
start containers at the same moment.  Without etcd the same code runs on
the local store (one host, or static peers each with its own ``--ip-range``).

Address spaces: pools with the same subnet in one space are one pool
(the same network on several hosts).  ``--ipam-opt ovsgre.network=NAME``
gives a network a space of its own, so two networks may use overlapping
subnets; in the shared "default" space overlapping subnets are refused.
"""

import ipaddress
import itertools
import re
import urllib.parse

from .errors import Conflict, InvalidRequest, NotFound

POOLS = "/ovsgre/ipam/pools/"
POOL_REFS = "/ovsgre/ipam/poolrefs/"
ADDRS = "/ovsgre/ipam/addrs/"
SPACE_OPT = "ovsgre.network"
DEFAULT_SPACE = "default"
GATEWAY_TYPE = "com.docker.network.gateway"
MAX_SCAN = 1 << 16
_SPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _q(cidr):
    return urllib.parse.quote(cidr, safe="")


class Ipam:
    def __init__(self, kv, host_id):
        self.kv = kv
        self.host_id = host_id

    @staticmethod
    def capabilities():
        return {"RequiresMACAddress": False, "RequiresRequestReplay": False}

    @staticmethod
    def default_spaces():
        return {"LocalDefaultAddressSpace": "ovsgre-local",
                "GlobalDefaultAddressSpace": "ovsgre-global"}

    # -- pools --------------------------------------------------------------
    def request_pool(self, pool, subpool, options, v6):
        if not pool:
            raise InvalidRequest("the ovsgre IPAM driver needs an explicit "
                                 "subnet (--subnet)")
        net = _network(pool, "Pool")
        if net.version != (6 if v6 else 4):
            raise InvalidRequest(f"Pool {pool} is not IPv{6 if v6 else 4}")
        sub = _network(subpool, "SubPool") if subpool else None
        if sub is not None and not sub.subnet_of(net):
            raise InvalidRequest(f"SubPool {subpool} is not inside {pool}")
        space = (options or {}).get(SPACE_OPT) or DEFAULT_SPACE
        if not isinstance(space, str) or not _SPACE.fullmatch(space):
            raise InvalidRequest(f"option {SPACE_OPT}={space!r}: letters, "
                                 "digits, '_', '.', '-' (at most 64)")
        self._claim_pool(space, net)
        pool_id = f"{space}/{net}" + (f"/{sub}" if sub else "")
        return {"PoolID": pool_id, "Pool": str(net), "Data": {}}

    def _claim_pool(self, space, net):
        prefix = f"{POOLS}{space}/"
        for other in self.kv.list(prefix).values():
            theirs = ipaddress.ip_network(other["pool"])
            if theirs != net and theirs.version == net.version and \
                    theirs.overlaps(net):
                raise Conflict(
                    f"subnet {net} overlaps {theirs} in address space "
                    f"{space!r}; give one network its own space with "
                    f"--ipam-opt {SPACE_OPT}=NAME")
        self.kv.create(f"{prefix}{_q(str(net))}", {"pool": str(net)})
        self.kv.put(f"{POOL_REFS}{space}/{_q(str(net))}/{self.host_id}",
                    {"host": self.host_id})

    def release_pool(self, pool_id):
        space, net, _ = _parse_pool_id(pool_id)
        refs = f"{POOL_REFS}{space}/{_q(str(net))}/"
        self.kv.delete(refs + self.host_id)
        if self.kv.list(refs):
            return   # other hosts still use it
        for key in self.kv.list(f"{ADDRS}{space}/{_q(str(net))}/"):
            self.kv.delete(key)
        self.kv.delete(f"{POOLS}{space}/{_q(str(net))}")

    # -- addresses ----------------------------------------------------------
    def request_address(self, pool_id, address, options):
        space, net, sub = _parse_pool_id(pool_id)
        prefix = f"{ADDRS}{space}/{_q(str(net))}/"
        if (options or {}).get("RequestAddressType") == GATEWAY_TYPE:
            ip = self._gateway(prefix, net, address)
        elif address:
            ip = _address_in(address, net)
            if not self.kv.create(prefix + str(ip), self._owner()):
                raise Conflict(f"address {ip} is already in use")
        else:
            ip = self._allocate(prefix, net, sub or net)
        return {"Address": f"{ip}/{net.prefixlen}", "Data": {}}

    def _owner(self, gateway=False):
        return {"host": self.host_id, "gateway": gateway}

    def _gateway(self, prefix, net, address):
        """The gateway is one address for the whole network: every host
        asks for it when it creates the network, and all get it."""
        ip = _address_in(address, net) if address else next(net.hosts())
        if self.kv.create(prefix + str(ip), self._owner(gateway=True)):
            return ip
        if (self.kv.get(prefix + str(ip)) or {}).get("gateway"):
            return ip
        raise Conflict(f"gateway address {ip} is in use by a container")

    def _allocate(self, prefix, net, rng):
        taken = {k[len(prefix):] for k in self.kv.list(prefix)}
        for ip in itertools.islice(_candidates(net, rng), MAX_SCAN):
            if str(ip) in taken:
                continue
            if self.kv.create(prefix + str(ip), self._owner()):
                return ip
            taken.add(str(ip))   # another host won it a moment ago
        raise Conflict(f"no free address in {rng}")

    def release_address(self, pool_id, address):
        space, net, _ = _parse_pool_id(pool_id)
        ip = _address_in(address, net)
        key = f"{ADDRS}{space}/{_q(str(net))}/{ip}"
        record = self.kv.get(key)
        if record and not record.get("gateway"):
            self.kv.delete(key)


def _candidates(net, rng):
    hosts = net.hosts() if rng == net else rng
    first, last = net.network_address, net.broadcast_address
    for ip in hosts:
        if net.version == 4 and ip in (first, last):
            continue
        yield ip


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
    return ip


def _parse_pool_id(pool_id):
    parts = (pool_id or "").split("/")
    if len(parts) not in (3, 5) or not _SPACE.fullmatch(parts[0]):
        raise NotFound(f"unknown PoolID {pool_id!r}")
    net = _network("/".join(parts[1:3]), "PoolID")
    sub = _network("/".join(parts[3:5]), "PoolID") if len(parts) == 5 \
        else None
    return parts[0], net, sub
