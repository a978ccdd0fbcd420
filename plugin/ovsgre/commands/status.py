"""`ovsgre status`: networks, endpoints, peers and tunnels of this host.

Read-only: it reads the store without its lock (the running plugin holds
it), OVSDB, kernel links, etcd and the Docker API, and changes nothing.
Works with the plugin stopped.  `--json` prints one object with stable keys
(see `build_report`); the default is a table.

Exit status: 0, or 1 when the state directory cannot be read.
"""

import json
import sys

from ..definitions import tunnel_port_name
from ..hoststate.collect import collect
from ..hoststate.derive import port_of, tunnel_ports
from ..hoststate.probe import DEFAULT_TIMEOUT, HostProbe


def add_common_arguments(parser, what):
    """--json and --timeout, shared by `ovsgre status` and `ovsgre doctor`."""
    parser.add_argument("--json", action="store_true",
                        help=f"print JSON (stable keys) instead of {what}")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        metavar="SECONDS",
                        help="bound of each external call "
                             f"(default {DEFAULT_TIMEOUT:g})")


def add_arguments(parser):
    add_common_arguments(parser, "tables")
    parser.add_argument("--no-docker", action="store_true",
                        help="do not ask the Docker API for network and "
                             "container names")


def run(settings, args, probe=None, out=None):
    out = out or sys.stdout
    own = probe is None
    probe = probe or HostProbe(settings, args.timeout)
    try:
        obs = collect(settings, probe, deep=False,
                      docker=not getattr(args, "no_docker", False))
    finally:
        if own:
            probe.close()
    report = build_report(obs)
    if args.json:
        json.dump(report, out, indent=2, sort_keys=True)
        out.write("\n")
    else:
        out.write(format_report(report))
    return 0 if obs["store"] is not None else 1


# ----------------------------------------------------------------- report

def build_report(obs):
    """The status as plain data.  Keys (stable):

    host: bridge, tunnel_bridge, datapath, mode (etcd|static|single-host),
          tunnel_ip, tunnel_ip_source, registered (bool|null), state_dir,
          ovsdb, vswitchd, docker, etcd (each "ok", "-" or the error)
    networks[]: id, name, cluster_name, key, vlan, mtu, subnets[],
          gateways[], endpoints (count)
    endpoints[]: id, network_id, network, container, ip, ipv6, mac, mtu,
          host_if, peer_if, veth (host end present), port, ofport, tag,
          state (store record: created|joined|deleting), problems[]
    peers[]: ip, hostname, source (etcd|static|port), port, present,
          ofport, state (up|no port|no ofport|not registered)
    malformed[]: kind, id, path, problems[] (records the plugin cannot
          use: missing fields; `ovsgre doctor` names the fix)
    errors: {what: message}
    """
    store = obs.get("store") or {"networks": {}, "endpoints": {}}
    docker = obs.get("docker") or {}
    malformed = [{k: m[k] for k in ("kind", "id", "path", "problems")}
                 for m in list(store.get("malformed", ())) +
                 list(obs.get("etcd_malformed", ()))]
    return {"host": _host(obs),
            "networks": _networks(store, docker.get("networks", {})),
            "endpoints": _endpoints(obs, store, docker),
            "peers": _peers(obs), "malformed": malformed,
            "errors": dict(obs.get("errors", {}))}


def _host(obs):
    errors = obs.get("errors", {})
    ovsdb = obs.get("ovsdb")
    bridge = (ovsdb or {}).get("bridges", {}).get(obs["bridge"])

    def health(key, value):
        if key in errors:
            return errors[key]
        return "ok" if value is not None else "-"

    return {
        "bridge": obs["bridge"],
        "tunnel_bridge": obs["tunnel_bridge"] if obs["multi_host"] else "",
        "datapath": bridge["datapath_type"] if bridge else obs["datapath"],
        "mode": obs["mode"],
        "tunnel_ip": obs.get("local_ip", ""),
        "tunnel_ip_source": obs.get("local_ip_source", ""),
        "registered": obs.get("registered"),
        "state_dir": obs["state_dir"],
        "ovsdb": health("ovsdb", ovsdb),
        "vswitchd": health("vswitchd", obs.get("vswitchd")),
        "docker": health("docker", obs.get("docker")),
        "etcd": health("etcd", obs.get("peers")) if obs["mode"] == "etcd"
        else "-",
    }


def _networks(store, docker_nets):
    counts = {}
    for ep in store["endpoints"].values():
        counts[ep.get("network_id")] = counts.get(ep.get("network_id"), 0) + 1
    networks = []
    for nid, net in sorted(store["networks"].items(),
                           key=lambda kv: (kv[1].get("vlan") or 0, kv[0])):
        pools = (net.get("ipv4") or []) + (net.get("ipv6") or [])
        networks.append({
            "id": nid,
            "name": docker_nets.get(nid, ""),
            "cluster_name": net.get("name") or "",
            "key": net.get("key"),
            "vlan": net.get("vlan"),
            "mtu": net.get("mtu"),
            "subnets": [p.get("pool", "") for p in pools],
            "gateways": [p.get("gateway") for p in pools
                         if p.get("gateway")],
            "endpoints": counts.get(nid, 0),
        })
    return networks


def _endpoints(obs, store, docker):
    return [_endpoint(obs, store, docker, eid, ep)
            for eid, ep in sorted(store["endpoints"].items(),
                                  key=lambda kv: (kv[1].get("network_id", ""),
                                                  kv[0]))]


def _endpoint_problems(obs, ep, net, port, veth):
    links, host_if = obs.get("links"), ep.get("host_if", "")
    problems = []
    if veth is False:
        problems.append("no veth")
    elif veth and links[host_if]["mtu"] != ep.get("mtu"):
        problems.append(f"mtu {links[host_if]['mtu']}")
    if obs.get("ovsdb") is not None and (port is None or
                                         port["bridge"] != obs["bridge"]):
        problems.append("no port")
    elif port and net.get("vlan") and port["tag"] != net["vlan"]:
        problems.append(f"tag {port['tag']}")
    return problems


def _endpoint(obs, store, docker, eid, ep):
    links = obs.get("links")
    host_if = ep.get("host_if", "")
    port = port_of(obs, host_if)
    net = store["networks"].get(ep.get("network_id")) or {}
    veth = None if links is None else host_if in links
    return {
        "id": eid,
        "network_id": ep.get("network_id", ""),
        "network": docker.get("networks", {}).get(ep.get("network_id"), ""),
        "container": docker.get("endpoints", {}).get(eid, ""),
        "ip": ep.get("address", ""),
        "ipv6": ep.get("address6", ""),
        "mac": ep.get("mac", ""),
        "mtu": ep.get("mtu"),
        "host_if": host_if,
        "peer_if": ep.get("peer_if", ""),
        "veth": veth,
        "port": host_if if port else None,
        "ofport": port["ofport"] if port else None,
        "tag": port["tag"] if port else None,
        "state": ep.get("state", ""),
        "problems": _endpoint_problems(obs, ep, net, port, veth),
    }


def _peer_state(obs, ip, tunnel):
    known = obs.get("peers")
    if tunnel is None:
        return "no port" if obs.get("ovsdb") is not None else "unknown"
    if not tunnel["ofport"] or tunnel["ofport"] < 1:
        return "no ofport"
    if known is not None and ip not in known:
        return "not registered"
    return "up"


def _peers(obs):
    known = obs.get("peers")
    ports = tunnel_ports(obs)
    by_peer = {p["peer"]: name for name, p in ports.items() if p["peer"]}
    peers = []
    for ip in sorted(set(known or ()) | set(by_peer), key=_ip_key):
        info = (known or {}).get(ip, {})
        name = by_peer.get(ip) or tunnel_port_name(ip)
        tunnel = ports.get(name)
        peers.append({
            "ip": ip,
            "hostname": info.get("hostname", ""),
            "source": info.get("source", "port"),
            "port": name,
            "present": tunnel is not None,
            "ofport": tunnel["ofport"] if tunnel else None,
            "state": _peer_state(obs, ip, tunnel),
        })
    return peers


def _ip_key(ip):
    try:
        return tuple(int(p) for p in ip.split("."))
    except ValueError:
        return (999, ip)


# ------------------------------------------------------------------ tables

def table(headers, rows):
    """Left-aligned columns, two spaces apart; '-' for empty cells."""
    cells = [[("-" if c in (None, "") else str(c)) for c in row]
             for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells])
              for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    for row in cells:
        lines.append("  ".join(c.ljust(w)
                               for c, w in zip(row, widths)).rstrip())
    return "\n".join(lines) + "\n"


def format_report(report):
    parts = [_format_host(report["host"])]
    parts.append(f"\nNETWORKS ({len(report['networks'])})\n")
    if report["networks"]:
        parts.append(table(
            ["NAME", "ID", "CLUSTER NAME", "KEY", "VLAN", "MTU", "SUBNETS",
             "ENDPOINTS"],
            [[n["name"], n["id"][:12], n["cluster_name"], n["key"],
              n["vlan"], n["mtu"], ",".join(n["subnets"]), n["endpoints"]]
             for n in report["networks"]]))
    parts.append(_format_endpoints(report["endpoints"]))
    if report["host"]["mode"] != "single-host" or report["peers"]:
        parts.append(f"\nPEERS ({len(report['peers'])})\n")
        if report["peers"]:
            parts.append(table(
                ["PEER", "HOSTNAME", "SOURCE", "TUNNEL PORT", "OFPORT",
                 "STATE"],
                [[p["ip"], p["hostname"], p["source"], p["port"],
                  p["ofport"], p["state"]] for p in report["peers"]]))
    parts.append(_format_errors(report))
    return "".join(parts)


def _format_host(h):
    tunnel = h["tunnel_ip"] or "-"
    if h["mode"] != "single-host":
        tunnel += f" ({h['tunnel_ip_source']})" if h["tunnel_ip_source"] \
            else ""
    lines = [
        f"host      bridge {h['bridge']}"
        + (f" + {h['tunnel_bridge']}" if h["tunnel_bridge"] else "")
        + f", datapath {h['datapath'] or '-'}, mode {h['mode']}"
        + (f", tunnel IP {tunnel}" if h["mode"] != "single-host" else ""),
        f"services  ovsdb {_short(h['ovsdb'])}, ovs-vswitchd "
        f"{_short(h['vswitchd'])}, docker {_short(h['docker'])}"
        + (f", etcd {_short(h['etcd'])}" if h["mode"] == "etcd" else "")
        + ("" if h["registered"] in (None, True)
           else ", this host NOT registered in etcd"),
        f"store     {h['state_dir']}",
    ]
    return "\n".join(lines) + "\n"


def _format_endpoints(endpoints):
    # The endpoint ID is in the host veth's name (ovgh + 11 hex digits) and
    # shown instead of a container name Docker did not give; --json has it
    # whole.  OVS PORT is "-" when the endpoint has no port on the bridge.
    text = f"\nENDPOINTS ({len(endpoints)})\n"
    if not endpoints:
        return text
    return text + table(
        ["CONTAINER", "NETWORK", "IP", "MAC", "HOST VETH", "OVS PORT",
         "OFPORT", "TAG", "STATE"],
        [[e["container"] or "(" + e["id"][:12] + ")",
          e["network"] or e["network_id"][:12],
          ",".join(a for a in (e["ip"], e["ipv6"]) if a), e["mac"],
          e["host_if"], e["port"], e["ofport"], e["tag"],
          e["state"] + (f" ({', '.join(e['problems'])})"
                        if e["problems"] else "")]
         for e in endpoints])


def _format_errors(report):
    if not (report["errors"] or report["malformed"]):
        return ""
    parts = ["\nERRORS\n"]
    for what, message in sorted(report["errors"].items()):
        parts.append(f"  {what}: {message}\n")
    for bad in report["malformed"]:
        parts.append(f"  malformed record {bad['path']}: "
                     f"{', '.join(bad['problems'])} (see ovsgre "
                     "doctor)\n")
    return "".join(parts)


def _short(text):
    if text in ("ok", "-"):
        return text
    return "UNREACHABLE"
