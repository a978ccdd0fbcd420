"""`ovsgre trace SRC DST`: why can't container SRC reach DST?

Builds the packet SRC would send, has ovs-vswitchd trace it through this
host's bridges (a dry run: `ofproto/trace`), and says in one line where it
goes or where and why it is dropped; when it leaves through a tunnel, the
command that follows it on the peer (`ovsgre trace --from-tunnel KEY …`).
Read-only: it changes nothing on the host.  See docs/trace.md.
"""

import dataclasses
import ipaddress
import json
import sys

from ..definitions import KEY_RULE, MAC, tunnel_port_name, valid_key
from ..hoststate.command import ProbeError
from ..hoststate.probe import HostProbe
from ..records import ENDPOINTS, NETWORKS, from_json
from .. import tracing
from ..tracing import Local, Packet, Verdict

EXIT = {"delivered": 0, "tunnel": 0, "flooded": 0, "dropped": 1}


def add_arguments(parser):
    parser.add_argument("src", help="a container on this host (name or "
                        "ID); with --from-tunnel, the sender's address")
    parser.add_argument("dst", help="an address, or a container on this "
                        "host, on the same network")
    parser.add_argument("--proto", choices=tracing.PROTOCOLS,
                        default="icmp", help="default icmp")
    parser.add_argument("--port", type=int, default=0,
                        help="destination port (tcp, udp)")
    parser.add_argument("--size", type=int, default=84,
                        help="IP packet size in bytes (default 84: a "
                        "ping); try the MTU to find MTU trouble")
    parser.add_argument("--dst-mac", default="", help="the destination's "
                        "MAC (default: the container's on this host, or the "
                        "sender's ARP entry; with neither, the ARP request "
                        "the sender would broadcast is traced)")
    parser.add_argument("--src-mac", default="",
                        help="with --from-tunnel: the sender's MAC")
    parser.add_argument("--from-tunnel", type=int, metavar="KEY",
                        help="trace a packet arriving through a tunnel "
                        "with this GRE key (the command `trace` prints "
                        "for the peer)")
    parser.add_argument("--peer", default="", help="with --from-tunnel: "
                        "the underlay address of the host it comes from")
    parser.add_argument("--json", action="store_true",
                        help="the verdict and every step as JSON")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also every OpenFlow table the packet went "
                        "through")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="seconds per read of Docker, OVSDB or "
                        "ovs-vswitchd (default 5)")


def check_args(args):
    """Refuse what cannot be a packet, before anything is read."""
    if not 28 <= args.size <= 65535:
        raise ValueError(f"--size {args.size}: an IP packet of 28 to 65535 "
                         "bytes")
    if args.port and (args.proto == "icmp" or not 1 <= args.port <= 65535):
        raise ValueError(f"--port {args.port}: a port from 1 to 65535, with"
                         " --proto tcp or udp")
    for flag, mac in (("--dst-mac", args.dst_mac),
                      ("--src-mac", args.src_mac)):
        if mac and not MAC.fullmatch(mac):
            raise ValueError(f"{flag} {mac!r} is not a MAC address")
    if args.from_tunnel is not None and not valid_key(args.from_tunnel):
        raise ValueError(f"--from-tunnel {args.from_tunnel}: a GRE key is "
                         f"{KEY_RULE}")
    if args.timeout <= 0:
        raise ValueError("--timeout must be above 0 seconds")


def run(settings, args):
    try:
        check_args(args)
    except ValueError as exc:
        print(f"ovsgre trace: {exc}", file=sys.stderr)
        return 2
    probe = HostProbe(settings, args.timeout)
    try:
        if args.from_tunnel is not None:
            verdict, facts = trace_from_tunnel(probe, settings, args)
        else:
            verdict, facts = trace_from_container(probe, settings, args)
    except (ProbeError, ValueError) as exc:
        print(f"ovsgre trace: {exc}", file=sys.stderr)
        return 2
    finally:
        probe.close()
    show(verdict, facts, args.json, args.verbose)
    return EXIT[verdict.outcome]


def show(verdict, facts, as_json, verbose=False):
    if as_json:
        print(json.dumps(dict(dataclasses.asdict(verdict), **facts),
                         indent=2, sort_keys=True))
        return
    print(verdict.line)
    for command in verdict.next_hop:
        print(f"  then {command}")
    if verbose:
        if facts.get("flow"):
            print(f"  flow: {facts['flow']}")
        for step in verdict.steps:
            print(f"  {step.bridge} table {step.table}: {step.match} -> "
                  f"{', '.join(step.actions)}" +
                  "".join(f" ({note})" for note in step.notes))


# -- what the host says -------------------------------------------------------
def host_view(probe, settings):
    """tracing.Host from OVSDB, plus the store's networks and endpoints
    (typed) and this host's underlay address."""
    snapshot = probe.ovsdb()
    ofports, ports = {}, {}
    for bridge, info in snapshot["bridges"].items():
        names = {}
        for name in info["ports"]:
            iface = snapshot["interfaces"].get(name, {})
            port = snapshot["ports"].get(name, {})
            ports[name] = {"ofport": iface.get("ofport"),
                           "error": iface.get("error"),
                           "link_state": iface.get("link_state"),
                           "external_ids": port.get("external_ids", {}),
                           "tag": port.get("tag")}
            if iface.get("ofport"):
                names[iface["ofport"]] = name
        ofports[bridge] = names
    local_ip, _how = probe.local_ip()
    host = tracing.Host(settings.bridge, settings.tunnel_bridge, ofports,
                        ports, _underlay_mtu(probe, local_ip))
    raw = probe.store()
    networks = {k: from_json(NETWORKS, v) for k, v in raw[NETWORKS].items()}
    endpoints = {k: from_json(ENDPOINTS, v)
                 for k, v in raw[ENDPOINTS].items()}
    return host, networks, endpoints, local_ip


def _underlay_mtu(probe, local_ip):
    if not local_ip:
        return 0
    index = probe.addresses().get(local_ip)
    for link in probe.links().values():
        if link.get("index") == index:
            return link.get("mtu") or 0
    return 0


def local_side(probe, host, endpoints, network_id, skip="", dst_ip=""):
    """tracing.Local: container names of the network's ports here, how
    many of them (besides `skip`) OVSDB has, and which has dst_ip."""
    try:
        names = probe.docker().get("endpoints", {})
    except ProbeError:
        names = {}
    mine = [ep for ep in endpoints.values() if ep.network_id == network_id]
    return Local(names={ep.host_if: names.get(ep.endpoint_id,
                                               ep.endpoint_id[:12])
                        for ep in mine},
                 others_in_network=sum(1 for ep in mine
                                       if ep.host_if != skip and
                                       ep.host_if in host.ports),
                 owner=getattr(owner_of(endpoints, network_id, dst_ip),
                               "host_if", ""))


def learned_port(probe, bridge, vlan, mac):
    try:
        return probe.fdb(bridge).get((vlan, mac.lower()))
    except ProbeError:
        return None


def owner_of(endpoints, network_id, ip):
    """The endpoint on this host with that address on the network."""
    return next((ep for ep in endpoints.values()
                 if ep.network_id == network_id and ep.address and
                 ep.address.split("/")[0] == ip), None)


# -- from a container on this host ---------------------------------------------
def ovsgre_networks(container, networks):
    """{network ID: Docker's endpoint settings} of the container's ovsgre
    networks on this host."""
    settings = (container.get("NetworkSettings") or {}).get("Networks") or {}
    return {v.get("NetworkID"): dict(v, name=k) for k, v in settings.items()
            if v.get("NetworkID") in networks}


def trace_from_container(probe, settings, args):
    host, networks, endpoints, local_ip = host_view(probe, settings)
    src = probe.container(args.src)
    mine = ovsgre_networks(src, networks)
    if not mine:
        raise ValueError(f"container {args.src} is on no ovsgre network of "
                         "this host")
    network_id, dst_ip, dst_mac, wrong = pick_destination(
        probe, args, mine, networks)
    facts = {"src": args.src, "dst": args.dst, "network_id": network_id,
             "dst_ip": dst_ip}
    if wrong:
        return Verdict("dropped", f"dropped: {wrong}",
                       cause="wrong network"), facts
    ep = endpoints.get(mine[network_id].get("EndpointID"))
    if ep is None:
        raise ValueError(f"the plugin has no record of {args.src}'s "
                         "endpoint (is this the container's host?)")
    dst_mac = args.dst_mac or dst_mac or _known_mac(
        probe, src["Id"], endpoints, network_id, dst_ip)
    packet = Packet(ep.mac, dst_mac or tracing.BROADCAST,
                    mine[network_id]["IPAddress"], dst_ip,
                    args.proto if dst_mac else "arp", args.port, args.size)
    facts["dst_mac"] = dst_mac
    verdict = container_verdict(probe, host, networks[network_id], ep,
                                packet, endpoints)
    facts.update(flow=packet.flow(ep.host_if), port=ep.host_if,
                 vlan=networks[network_id].vlan)
    if verdict.peers and verdict.key is not None:
        verdict.next_hop = [f"on {peer}: " + next_command(packet, verdict.key,
                                                          local_ip)
                            for peer in verdict.peers]
    return verdict, facts


def _known_mac(probe, container_id, endpoints, network_id, ip):
    """dst's MAC: a container's on this host, or the sender's ARP entry
    ("" when neither: the sender would ask with ARP first)."""
    here = owner_of(endpoints, network_id, ip)
    if here is not None:
        return here.mac
    try:
        return probe.neighbour(container_id, ip)
    except ProbeError:
        return ""


def container_verdict(probe, host, net, ep, packet, endpoints):
    problem = tracing.port_problem(host, ep.host_if)
    if problem:
        return Verdict("dropped", f"dropped: {problem} (the sender's)",
                       cause="port down")
    if packet.size > ep.mtu:
        return Verdict(
            "dropped", f"dropped: a {packet.size}-byte packet is larger "
            f"than the network's MTU {ep.mtu}: the container fragments it "
            "or, with don't-fragment set, refuses to send it",
            cause="MTU")
    text = probe.ofproto_trace(host.bridge, packet.flow(ep.host_if))
    steps, _ = tracing.parse_trace(text)
    fdb_port = learned_port(probe, host.bridge, net.vlan, packet.dst_mac)
    local = local_side(probe, host, endpoints, net.network_id, ep.host_if,
                       packet.dst_ip)
    return tracing.from_container(packet, host, steps, fdb_port, local)


def pick_destination(probe, args, mine, networks):
    """(network ID, dst IP, dst MAC, why it is the wrong network or "")."""
    try:
        dst_ip = str(ipaddress.IPv4Address(args.dst))
    except ValueError:
        return _container_destination(probe, args, mine)
    for network_id, entry in mine.items():
        subnet = ipaddress.ip_interface(
            f"{entry['IPAddress']}/{entry['IPPrefixLen']}").network
        if ipaddress.ip_address(dst_ip) in subnet:
            return network_id, dst_ip, "", ""
    subnets = ", ".join(f"{e['name']} {e['IPAddress']}/{e['IPPrefixLen']}"
                        for e in mine.values())
    first = next(iter(mine))
    return first, dst_ip, "", (
        f"{dst_ip} is on none of {args.src}'s ovsgre networks ({subnets}):"
        " networks are isolated from each other")


def _container_destination(probe, args, mine):
    dst = probe.container(args.dst)
    theirs = ovsgre_networks(dst, {k: None for k in mine}) or {}
    if not theirs:
        others = ", ".join(((dst.get("NetworkSettings") or {})
                            .get("Networks") or {}))
        ours = ", ".join(v["name"] for v in mine.values())
        return next(iter(mine)), "", "", (
            f"{args.src} (on {ours}) and {args.dst} (on {others or 'none'})"
            " share no ovsgre network: networks are isolated from each "
            "other")
    network_id = next(iter(theirs))
    entry = theirs[network_id]
    return network_id, entry["IPAddress"], entry["MacAddress"], ""


def next_command(packet, key, local_ip):
    """The command that follows the packet on the peer."""
    argv = ["ovsgre", "trace", "--from-tunnel", str(key), "--peer",
            local_ip, "--src-mac", packet.src_mac]
    if not packet.arp:
        argv += ["--dst-mac", packet.dst_mac]
    if packet.proto not in ("icmp", "arp"):
        argv += ["--proto", packet.proto]
        if packet.port:
            argv += ["--port", str(packet.port)]
    if packet.size != 84:
        argv += ["--size", str(packet.size)]
    return " ".join(argv + [packet.src_ip, packet.dst_ip])


# -- arriving through a tunnel ----------------------------------------------
def trace_from_tunnel(probe, settings, args):
    host, networks, endpoints, local_ip = host_view(probe, settings)
    key = args.from_tunnel
    if not args.peer or not args.src_mac:
        raise ValueError("--from-tunnel needs --peer and --src-mac (copy "
                         "the command `ovsgre trace` printed on the "
                         "sending host)")
    peer = str(ipaddress.IPv4Address(args.peer))
    packet = Packet(args.src_mac, args.dst_mac or tracing.BROADCAST,
                    str(ipaddress.IPv4Address(args.src)),
                    str(ipaddress.IPv4Address(args.dst)),
                    args.proto if args.dst_mac else "arp", args.port,
                    args.size)
    facts = {"src": packet.src_ip, "dst": packet.dst_ip, "peer": peer,
             "key": key}
    port = tunnel_port_name(peer)
    if port not in host.ports:
        return Verdict(
            "dropped", f"dropped: no tunnel from {peer}: this host has no "
            f"GRE port {port} (it does not know {peer} as a peer; see "
            "`ovsgre status`)", cause="no tunnel to the peer",
            key=key), facts
    net = next((n for n in networks.values() if n.key == key), None)
    flow = packet.flow(port, f"tun_id={key},tun_src={peer},"
                             f"tun_dst={local_ip}")
    steps, _ = tracing.parse_trace(probe.ofproto_trace(host.tun_bridge,
                                                       flow))
    facts["flow"] = flow
    fdb_port = learned_port(probe, host.bridge, net.vlan, packet.dst_mac) \
        if net else None
    local = local_side(probe, host, endpoints,
                       net.network_id if net else "", dst_ip=packet.dst_ip)
    return tracing.from_tunnel(packet, host, steps, fdb_port, local, key,
                               peer), facts
