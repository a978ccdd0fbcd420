"""This host's networks and endpoints as typed records, and the typed view
of the local store the driver, the reconciler, the janitor and the tunnel
sync work with.

The store keeps each record as a JSON object (store.LocalStore); this
module is the one place that knows its fields.  A record read from disk is
input like any other (an operator may have edited it, another version may
have written it): `problems` says what is wrong with one, `from_json`
refuses it then.  Fields this version does not know are kept and written
back unchanged, so a downgrade does not lose what a newer ovsgre stored.
Standard library only (status and doctor import it).
"""

import json
import logging
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Optional

from .cluster.records import Malformed, parse_key
from .definitions import ENDPOINT_STATES
from .specs import PoolSpec

LOG = logging.getLogger(__name__)

NETWORKS, ENDPOINTS = "networks", "endpoints"   # the store's kinds


# A network keeps its pools as CreateNetwork gave them.
Pool = PoolSpec


@dataclass(frozen=True)
class Network:
    network_id: str
    vlan: int                     # this host's local tag for it
    mtu: int
    key: Optional[int] = None     # GRE key; None: stays on this host
    name: str = ""                # cluster network name
    gwbridge: bool = False
    port_type: str = ""           # "": the host's --port-type
    ipv4: tuple = ()              # of Pool
    ipv6: tuple = ()
    extra: dict = field(default_factory=dict, compare=False)

    def pools(self):
        return self.ipv4 + self.ipv6


@dataclass(frozen=True)
class Endpoint:
    network_id: str
    endpoint_id: str
    host_if: str                  # the veth end on the bridge
    peer_if: str                  # the end Docker moves into the sandbox
    mac: str
    mtu: int
    state: str                    # definitions.ENDPOINT_STATES
    port_type: str = ""
    address: str = ""             # IPv4 with prefix, "" if none
    address6: str = ""
    sandbox: str = ""             # set while joined
    created_at: float = 0.0       # epoch seconds
    extra: dict = field(default_factory=dict, compare=False)

    def but(self, **changes):
        """A copy with some fields changed."""
        return replace(self, **changes)


# Fields every record must have, with their types: a record without one of
# them is reported (doctor), set aside (the plugin), never used.
REQUIRED = {
    NETWORKS: {"network_id": str, "vlan": int, "mtu": int},
    ENDPOINTS: {"network_id": str, "endpoint_id": str, "host_if": str,
                "peer_if": str, "mac": str, "mtu": int, "state": str},
}
_TYPES = {NETWORKS: Network, ENDPOINTS: Endpoint}


def problems(kind, record):
    """What is wrong with a stored record (empty list when it is
    well-formed)."""
    found = []
    for name, typ in REQUIRED[kind].items():
        if name not in record:
            found.append(f"no {name}")
            continue
        value = record[name]
        if not isinstance(value, typ) or isinstance(value, bool) or \
                (typ is str and not value):
            found.append(f"{name} is {json.dumps(value)}")
    if kind == NETWORKS:
        found += _network_problems(record)
    elif isinstance(record.get("state"), str) and record["state"] and \
            record["state"] not in ENDPOINT_STATES:
        found.append(f"state is {json.dumps(record['state'])}")
    return found


def _network_problems(record):
    found = []
    if record.get("key") is not None:
        try:
            parse_key(record["key"])   # it goes into the tunnel table
        except Malformed as exc:
            found.append(str(exc))
    for family in ("ipv4", "ipv6"):
        pools = record.get(family) or []
        if not isinstance(pools, list) or not all(
                isinstance(p, dict) and isinstance(p.get("pool"), str)
                for p in pools):
            found.append(f"{family} is {json.dumps(pools)}")
    return found


def from_json(kind, record):
    """The typed record of a stored JSON object; Malformed if it is not
    one (see problems)."""
    wrong = problems(kind, record)
    if wrong:
        raise Malformed("; ".join(wrong))
    typ = _TYPES[kind]
    known = {f.name for f in fields(typ)} - {"extra"}
    values = {k: v for k, v in record.items() if k in known}
    extra = {k: v for k, v in record.items() if k not in known}
    if kind == NETWORKS:
        for family in ("ipv4", "ipv6"):
            values[family] = tuple(_pool(p) for p in values.get(family)
                                   or [])
    for name in ("port_type", "address", "address6", "sandbox", "name"):
        if name in values and values[name] is None:
            values[name] = ""
    return typ(**values, extra=extra)


def _pool(item):
    return Pool(pool=item["pool"], gateway=item.get("gateway") or "",
                aux=tuple(item.get("aux") or ()))


def to_json(record):
    """The JSON object a typed record is stored as."""
    out = dict(record.extra)
    for f in fields(record):
        if f.name == "extra":
            continue
        value = getattr(record, f.name)
        if f.name in ("ipv4", "ipv6"):
            value = [dict(asdict(p), aux=list(p.aux)) for p in value]
        out[f.name] = value
    return out


class HostRecords:
    """The typed view of the local store (store.LocalStore, or any object
    with its get/list/put/delete)."""

    def __init__(self, store):
        self.store = store

    def network(self, network_id) -> Optional[Network]:
        raw = self.store.get(NETWORKS, network_id)
        return None if raw is None else from_json(NETWORKS, raw)

    def networks(self):
        """{network ID: Network}"""
        return self._all(NETWORKS)

    def endpoint(self, endpoint_id) -> Optional[Endpoint]:
        raw = self.store.get(ENDPOINTS, endpoint_id)
        return None if raw is None else from_json(ENDPOINTS, raw)

    def endpoints(self):
        """{endpoint ID: Endpoint}"""
        return self._all(ENDPOINTS)

    def _all(self, kind):
        """The plugin's store sets malformed records aside when it loads
        them and writes only typed ones; should one slip in anyway, it is
        left out (and logged) rather than stop every other record's use."""
        out = {}
        for key, raw in self.store.list(kind).items():
            try:
                out[key] = from_json(kind, raw)
            except Malformed as exc:
                LOG.error("record %s/%s left out: %s", kind, key, exc)
        return out

    def put_network(self, net):
        self.store.put(NETWORKS, net.network_id, to_json(net))

    def put_endpoint(self, ep, durable=True):
        self.store.put(ENDPOINTS, ep.endpoint_id, to_json(ep), durable)

    def delete_network(self, network_id):
        self.store.delete(NETWORKS, network_id)

    def delete_endpoint(self, endpoint_id):
        self.store.delete(ENDPOINTS, endpoint_id)
