"""The observation: every reader's answer in one plain dict that `status`
formats and `doctor` checks.  What a reader cannot read is recorded under
`errors` (by subsystem) and its part is None, so a half-broken host still
gives a useful picture.  Reads are one after the other, each bounded;
pings and the offload of container ends run in parallel."""

import concurrent.futures
import os
import time

from ..cluster.records import shown_url
from ..definitions import DELETING
from .cluster import malformed_records, parse_hosts
from .command import ProbeError
from .derive import tunnel_ports
from .records import Observation, Offload, Underlay, Upcalls

UPCALL_SAMPLE = 1.0   # seconds between the two reads of the lost count


def _try(errors, what, func, *args):
    try:
        return func(*args), None
    except ProbeError as exc:
        errors[what] = str(exc)
        return None, str(exc)


def collect(settings, probe, deep=False, docker=True) -> Observation:
    """The observation: one dict of everything status shows and doctor
    checks.  deep=True also reads what only doctor needs (offload of
    container ends and of the tunnel source's port, pings of the peers,
    the tunnel bridge's flows).  Never loads a kernel module (the expected
    datapath is judged as in HostProbe.datapath)."""
    errors = {}
    obs = _settings_part(settings, errors)
    _collect_ovs(settings, probe, obs, errors)
    obs["docker"] = None
    if docker:
        obs["docker"], _ = _try(errors, "docker", probe.docker)
    local = None
    if settings.multi_host or settings.local_ip:
        local, _ = _try(errors, "local_ip", probe.local_ip)
    obs["local_ip"], obs["local_ip_source"] = local or ("", "")
    _collect_peers(settings, probe, obs, errors)
    if deep:
        _collect_deep(settings, probe, obs, errors)
    return obs


def _settings_part(settings, errors):
    return {
        "bridge": settings.bridge,
        "tunnel_bridge": settings.tunnel_bridge,
        "multi_host": settings.multi_host,
        "mode": "etcd" if settings.etcd else
        ("static" if settings.peers else "single-host"),
        "state_dir": os.path.abspath(settings.state_dir),
        "ovsdb_remote": settings.ovsdb,
        "rundir": settings.rundir,
        "docker_host": settings.docker_host,
        "etcd": [shown_url(url) for url in settings.etcd],
        "errors": errors,
    }


def _collect_ovs(settings, probe, obs, errors):
    """Store, OVSDB, ovs-vswitchd, links, and the datapath expected."""
    obs["store"], _ = _try(errors, "store", probe.store)
    obs["ovsdb"], _ = _try(errors, "ovsdb", probe.ovsdb)
    obs["vswitchd"], _ = _try(errors, "vswitchd", probe.vswitchd)
    obs["links"], _ = _try(errors, "links", probe.links)
    obs["ovs_module"], _ = _try(errors, "ovs_module", probe.kernel_module)
    existing = (((obs["ovsdb"] or {}).get("bridges") or {})
                .get(settings.bridge) or {}).get("datapath_type", "")
    chosen, _ = _try(errors, "datapath", probe.datapath, existing,
                     obs["ovs_module"])
    obs["datapath"], obs["datapath_source"] = chosen or (None, "")


def _collect_peers(settings, probe, obs, errors):
    """Peers: the registry (etcd) or the static list, minus this host."""
    obs["registered"] = None
    obs["etcd_malformed"] = []
    if settings.etcd:
        _collect_registry(probe, obs, errors)
    elif settings.peers:
        obs["peers"] = {ip: {"ip": ip, "source": "static"}
                        for ip in settings.peers if ip != obs["local_ip"]}
    else:
        obs["peers"] = {}


def _collect_registry(probe, obs, errors):
    raw, _ = _try(errors, "etcd", probe.etcd_hosts)
    if raw is None:
        obs["peers"] = None   # unknown
        return
    hosts, obs["etcd_malformed"] = parse_hosts(raw)
    obs["etcd_malformed"] += malformed_records(
        lambda prefix: _try(errors, "etcd", probe.etcd_list, prefix)[0])
    obs["registered"] = bool(obs["local_ip"]) and obs["local_ip"] in hosts
    obs["peers"] = {ip: dict(info, source="etcd")
                    for ip, info in hosts.items() if ip != obs["local_ip"]}


def _collect_deep(settings, probe, obs, errors):
    obs["offload"] = _offload(probe, obs)
    obs["underlay"] = None
    if settings.multi_host and obs["local_ip"]:
        obs["underlay"] = _underlay(probe, obs, errors)
    obs["ping"] = {}
    if settings.multi_host:
        targets = set(obs["peers"] or ()) | set(
            p["peer"] for p in tunnel_ports(obs).values() if p["peer"])
        obs["ping"] = probe.ping(sorted(targets), obs["local_ip"])
    obs["upcalls"] = None
    if obs["datapath"] == "system" and obs["vswitchd"]:
        obs["upcalls"] = _upcalls(probe, obs["vswitchd"]["ctl"], errors)
    obs["flows"] = None
    ovsdb = obs["ovsdb"]
    if settings.multi_host and ovsdb and \
            settings.tunnel_bridge in ovsdb["bridges"]:
        obs["flows"], _ = _try(errors, "flows", probe.dump_flows,
                               settings.tunnel_bridge)


def _offload(probe, obs) -> dict[str, Offload]:
    """TX offload of container ends under the userspace datapath: in this
    namespace, or in the container's when readable."""
    if obs["datapath"] != "netdev":
        return {}
    links = obs["links"] or {}
    store = obs["store"] or {}
    offload, inside = {}, []
    for eid, ep in sorted((store.get("endpoints") or {}).items()):
        peer = ep.get("peer_if", "")
        if peer in links:
            value, err = _try({}, "", probe.tx_checksum, peer)
            offload[eid] = {"where": "host", "ifname": peer,
                            "tx": value, "error": err}
        elif ep.get("state") != DELETING:
            inside.append(ep)
    if inside:   # a few subprocesses each: in parallel, each bounded
        with concurrent.futures.ThreadPoolExecutor(
                min(8, len(inside))) as pool:
            found = pool.map(lambda ep: _container_offload(
                probe, obs, ep, links.get(ep.get("host_if"))), inside)
            for ep, result in zip(inside, found):
                offload[ep["endpoint_id"]] = result
    return offload


def _underlay(probe, obs, errors) -> Underlay:
    """The interface holding the tunnel source address."""
    links = obs["links"] or {}
    addrs, _ = _try(errors, "addresses", probe.addresses)
    index = (addrs or {}).get(obs["local_ip"])
    name = next((n for n, l in links.items() if l["index"] == index),
                None) if index is not None else None
    under = {"ip": obs["local_ip"], "ifname": name, "mtu": None,
             "tx": None, "tx_error": None}
    if name:
        under["mtu"] = links[name]["mtu"]
        under["tx"], under["tx_error"] = _try({}, "", probe.tx_checksum,
                                              name)
    return under


def _upcalls(probe, ctl, errors) -> Upcalls | None:
    """The kernel datapath's lost upcalls: a second read UPCALL_SAMPLE
    later when some were lost, to tell losing now from lost once; and when
    ovs-vswitchd started (the OVS 3.1.0 trap: started within 10 s of boot
    it runs no upcall handlers)."""
    first, _ = _try(errors, "upcalls", probe.upcalls, ctl)
    if first is None:
        return None
    out = {"lost": first["lost"], "lost_now": 0,
           "started": probe.vswitchd_started()}
    if first["lost"]:
        time.sleep(UPCALL_SAMPLE)
        second, _ = _try(errors, "upcalls", probe.upcalls, ctl)
        if second is not None:
            out["lost"] = second["lost"]
            out["lost_now"] = max(0, second["lost"] - first["lost"])
    return out


def _netns_paths(probe, obs, ep, errors):
    """Where a container end may be read: the container's namespace
    through the Docker API (/proc/PID/ns/net), and the sandbox path
    recorded at Join when it is visible here."""
    paths = []
    cid = ((obs.get("docker") or {}).get("containers") or {}).get(
        ep.get("endpoint_id"))
    if cid:
        path, err = _try({}, "", probe.container_netns, cid)
        if path:
            paths.append(path)
        else:
            errors.append(err)
    sandbox = ep.get("sandbox") or ""
    if sandbox and os.path.exists(sandbox):
        paths.append(sandbox)
    return paths


def _container_offload(probe, obs, ep, host) -> Offload:
    """TX offload of a container end Docker moved into its container."""
    out = {"where": "container", "netns": "", "ifname": "", "tx": None,
           "error": "moved into its container"}
    if not host or not host.get("peer_index"):
        return out
    errors = []
    for path in _netns_paths(probe, obs, ep, errors):
        got, err = _try({}, "", probe.tx_checksum_in, path,
                        host["peer_index"])
        if got:
            return {"where": "container", "netns": path, "ifname": got[0],
                    "tx": got[1], "error": None}
        errors.append(err)
    if errors:
        out["error"] += " (not readable here: " + "; ".join(errors) + ")"
    else:
        out["error"] += " (its network namespace is not visible here)"
    return out
