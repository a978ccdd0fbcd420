"""The shapes of what the readers return and of the observation `collect`
builds.  They stay plain dicts at run time (status's --json output and
the tests' fakes are dicts of exactly these keys); these TypedDicts name
every key and its type in one place."""

from typing import Dict, List, Optional, Tuple, TypedDict


class Link(TypedDict):
    """A kernel link (kernel.links)."""
    index: int
    mtu: Optional[int]
    up: bool
    kind: Optional[str]
    peer_index: Optional[int]
    address: Optional[str]


class Bridge(TypedDict):
    datapath_type: str          # "system" when OVSDB has it empty
    fail_mode: Optional[str]
    ports: List[str]            # port names, sorted
    external_ids: Dict[str, str]


class Port(TypedDict):
    bridge: Optional[str]
    tag: Optional[int]
    interfaces: List[str]
    external_ids: Dict[str, str]


class Interface(TypedDict):
    type: str
    options: Dict[str, str]
    ofport: Optional[int]       # None until ovs-vswitchd took it, -1 refused
    error: Optional[str]
    external_ids: Dict[str, str]


class OvsdbSnapshot(TypedDict):
    """ovsdb.read_ovsdb: every bridge, port and interface by name."""
    bridges: Dict[str, Bridge]
    ports: Dict[str, Port]
    interfaces: Dict[str, Interface]
    cur_cfg: Optional[int]
    next_cfg: Optional[int]
    ovs_version: Optional[str]


class MalformedRecord(TypedDict, total=False):
    """A record the plugin cannot use (local store or etcd)."""
    kind: str
    id: str
    path: str
    problems: List[str]
    record: dict                # local store only


class Store(TypedDict):
    """localstore.read_store."""
    networks: Dict[str, dict]
    endpoints: Dict[str, dict]
    bad: List[str]              # "path: why" of unreadable files
    malformed: List[MalformedRecord]


class Vswitchd(TypedDict):
    ctl: str
    version: str


class Upcalls(TypedDict):
    lost: int
    lost_now: int               # lost during UPCALL_SAMPLE
    started: Optional[float]    # seconds after boot


class Offload(TypedDict, total=False):
    """TX checksum offload of an endpoint's container end."""
    where: str                  # "host" or "container"
    netns: str
    ifname: str
    tx: Optional[bool]          # None: not readable (error says why)
    error: Optional[str]


class Underlay(TypedDict):
    ip: str
    ifname: Optional[str]
    mtu: Optional[int]
    tx: Optional[bool]
    tx_error: Optional[str]


class DockerNames(TypedDict):
    networks: Dict[str, str]    # network id: name
    endpoints: Dict[str, str]   # endpoint id: container name
    containers: Dict[str, str]  # endpoint id: container id


class Peer(TypedDict, total=False):
    ip: str
    hostname: str
    version: str
    source: str                 # "etcd" or "static"


class Observation(TypedDict, total=False):
    """collect(): None for every part that could not be read (the reason
    under errors).  offload, underlay, ping, upcalls and flows only with
    deep=True (doctor)."""
    bridge: str
    tunnel_bridge: str
    multi_host: bool
    mode: str                   # "etcd", "static" or "single-host"
    state_dir: str
    ovsdb_remote: str
    rundir: str
    docker_host: str
    etcd: List[str]
    errors: Dict[str, str]      # subsystem: why it could not be read
    store: Optional[Store]
    ovsdb: Optional[OvsdbSnapshot]
    vswitchd: Optional[Vswitchd]
    links: Optional[Dict[str, Link]]
    ovs_module: Optional[str]
    datapath: Optional[str]
    datapath_source: str
    docker: Optional[DockerNames]
    local_ip: str
    local_ip_source: str
    registered: Optional[bool]
    etcd_malformed: List[MalformedRecord]
    peers: Optional[Dict[str, Peer]]   # None: etcd unreadable
    offload: Dict[str, Offload]
    underlay: Optional[Underlay]
    ping: Dict[str, Tuple[Optional[bool], str]]
    upcalls: Optional[Upcalls]
    flows: Optional[List[str]]
