"""Typed requests the driver and the IPAM take, and the values they return.

The protocol layer (schema.py) parses Docker's bodies into these and builds
Docker's replies from the results, so the driver and the IPAM never see a
wire field name.  Every value here is already valid as far as it can be
checked without state.  Standard library only.
"""

from dataclasses import dataclass, field
from typing import Optional


# -- NetworkDriver ------------------------------------------------------------
@dataclass(frozen=True)
class PoolSpec:
    """One IPv4Data/IPv6Data entry: the subnet (normalised), its gateway
    ("" when Docker gave none) and the --aux-address reservations inside
    it (sorted addresses)."""
    pool: str
    gateway: str = ""
    aux: tuple = ()


@dataclass(frozen=True)
class NetworkSpec:
    """CreateNetwork."""
    network_id: str
    name: str = ""                  # cluster network name; "" = this host
    key: Optional[int] = None       # GRE key asked for (needs a name)
    mtu: Optional[int] = None       # None: the host's default MTU
    port_type: str = ""             # "": the host's --port-type
    gwbridge: bool = False          # containers get docker_gwbridge
    ipv4: tuple = ()                # of PoolSpec
    ipv6: tuple = ()


@dataclass(frozen=True)
class AllocationSpec:
    """AllocateNetwork (swarm manager): the options as given (all strings),
    the cluster name (the one given or derived from the network ID) and the
    key asked for, if any.  The pools matter only to reserve them in etcd:
    when they do not parse, pools_error says why, and only a manager with
    etcd refuses the call for it."""
    network_id: str
    name: str
    key: Optional[int] = None
    options: dict = field(default_factory=dict)
    ipv4: tuple = ()
    ipv6: tuple = ()
    pools_error: str = ""


@dataclass(frozen=True)
class EndpointSpec:
    """CreateEndpoint: "" where Docker leaves the choice to the driver."""
    network_id: str
    endpoint_id: str
    address: str = ""       # IPv4 address with prefix
    address6: str = ""      # IPv6 address with prefix
    mac: str = ""


@dataclass(frozen=True)
class JoinSpec:
    network_id: str
    endpoint_id: str
    sandbox_key: str


@dataclass(frozen=True)
class ChosenInterface:
    """What CreateEndpoint chose for the values Docker left empty ("" for
    the ones Docker gave)."""
    mac: str = ""


@dataclass(frozen=True)
class EndpointInfo:
    """EndpointOperInfo's value."""
    host_if: str
    peer_if: str
    mac: str
    vlan: int
    mtu: int
    state: str


@dataclass(frozen=True)
class Joined:
    """Join: the container end of the veth pair Docker moves into the
    sandbox, and whether the container must stay off docker_gwbridge."""
    peer_if: str
    disable_gateway: bool


# -- IpamDriver ---------------------------------------------------------------
@dataclass(frozen=True)
class PoolRequest:
    """RequestPool: the subnet, the range addresses come from ("" = the
    whole subnet) and the address space (the network's own, or the
    shared default)."""
    pool: str
    subpool: str
    space: str


@dataclass(frozen=True)
class GrantedPool:
    pool_id: str
    pool: str


@dataclass(frozen=True)
class AddressRequest:
    pool_id: str
    address: str = ""       # "" = any free address
    gateway: bool = False   # the network's gateway, shared by every host
