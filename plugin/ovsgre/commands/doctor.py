"""`ovsgre doctor`: check this host and name a fix for every problem.

Checks, in order; each ends "ok", "fail" (findings, each with a fix),
"skip" (does not apply here: single host, kernel datapath) or "error"
(could not be done, e.g. links or OVSDB unreadable; the reason is listed
under not_checked, also for the parts of a check that could not be done):

  ovs        ovsdb-server answers on --ovsdb; ovs-vswitchd answers on its
             control socket (<rundir>/ovs-vswitchd.<pid>.ctl or .ctl)
  bridge     the integration bridge exists with the expected datapath
             (--datapath; with auto the bridge's own, as the plugin
             chose it; never loads a kernel module), and a system
             datapath only where the openvswitch module is loaded; with
             several hosts also the tunnel bridge and its patch port;
             with the kernel datapath, no upcalls being lost (the lost
             count of `ovs-appctl dpctl/show`, read twice) and
             ovs-vswitchd not started within 10 s of boot (OVS 3.1.0
             then runs no upcall handlers)
  endpoints  each endpoint's host veth is there, up, with the recorded MTU
             and an OVS port ovs-vswitchd took (ofport)
             (at most underlay MTU - 42 for cluster networks), the port's
             VLAN tag is the network's, and under the userspace datapath
             TX checksum offload is off on the container end
  underlay   userspace datapath with several hosts: the tunnel source
             address sits on an OVS bridge port with TX offload off (br-phy)
  tunnels    a GRE port for every peer, none for departed ones, every peer
             answers ping over the underlay, this host is registered
  flows      the tunnel bridge's table is what build_flows computes
             (learned flows ignored)
  stale      OVS ports and ovsgre-named links without a record, records
             without a port, unfinished deletions
  store      the state directory is readable, every record has the fields
             the plugin reads; etcd answers when configured

Read-only, like `status`; every external call is bounded.  Exit status:
0 when every check passed (or does not apply), 1 when a problem was found,
2 when none was found but a check could not be done (completely).
"""

import json
import sys

from .. import names
from ..definitions import (DELETING, GRE_OVERHEAD, JOINED, PATCH_INT,
                           PATCH_TUN, tunnel_port_name)
from ..hoststate.collect import UPCALL_SAMPLE, collect
from ..hoststate.derive import (expected_flows, expected_peers,
                                owned_endpoint_ports, port_of, tunnel_ports)
from ..hoststate.flowtable import compare_flows
from ..hoststate.probe import HostProbe
from .status import add_common_arguments

OVS_START = ("start Open vSwitch (run: systemctl restart openvswitch-switch, "
             "or /usr/share/openvswitch/scripts/ovs-ctl start)")
RESTART_PLUGIN = ("restart the plugin (run: systemctl restart ovsgre, or "
                  "stop and start `ovsgre serve`)")
MAX_LISTED_FLOWS = 6
# OVS 3.1.0's count_cpu_cores() answers 0 this long after boot, and an
# ovs-vswitchd started then runs no upcall handler threads (fixed in 3.1.1).
BOOT_SETTLE = 10
RESTART_VSWITCHD = "restart it (run: systemctl restart openvswitch-switch)"
EXIT_OK, EXIT_PROBLEMS, EXIT_NOT_CHECKED = 0, 1, 2


def add_arguments(parser):
    add_common_arguments(parser, "text")


def run(settings, args, probe=None, out=None):
    out = out or sys.stdout
    own = probe is None
    probe = probe or HostProbe(settings, args.timeout)
    try:
        obs = collect(settings, probe, deep=True, docker=True)
    finally:
        if own:
            probe.close()
    report = build_report(diagnose(obs))
    if args.json:
        json.dump(report, out, indent=2, sort_keys=True)
        out.write("\n")
    else:
        out.write(format_report(obs, report))
    return exit_status(report)


def build_report(results):
    """{ok, problems (findings), not_checked (checks not done completely),
    checks}: ok only when nothing was found and everything was checked."""
    problems = sum(len(r["findings"]) for r in results)
    not_checked = sum(1 for r in results if r["not_checked"])
    return {"ok": not problems and not not_checked, "problems": problems,
            "not_checked": not_checked, "checks": results}


def exit_status(report):
    if report["problems"]:
        return EXIT_PROBLEMS
    return EXIT_NOT_CHECKED if report["not_checked"] else EXIT_OK


# --------------------------------------------------------------- findings

def finding(subject, problem, fix, details=None):
    item = {"subject": subject, "problem": problem, "fix": fix}
    if details:
        item["details"] = list(details)
    return item


def _result(name, findings, summary, skipped=None, notes=(),
            not_checked=()):
    """skipped: the check does not apply here (reason).  not_checked: what
    could not be checked and why; with no summary the whole check could
    not be done ("error")."""
    not_checked = list(not_checked)
    if skipped is not None:
        status, summary = "skip", skipped
    elif findings:
        status = "fail"
    elif not_checked:
        status = "error"
        if not summary:
            summary = "not checked: " + "; ".join(not_checked)
    else:
        status = "ok"
    return {"name": name, "status": status, "summary": summary,
            "findings": list(findings), "notes": list(notes),
            "not_checked": not_checked}


def _cannot(name, reason):
    """A check that could not be done at all."""
    return _result(name, [], "", not_checked=[reason])


def diagnose(obs):
    """Run every check on an observation; list of results in order."""
    return [check(obs) for check in CHECKS]


# ----------------------------------------------------------------- checks

def check_ovs(obs):
    errors = obs["errors"]
    found = []
    parts = []
    if obs["ovsdb"] is None:
        found.append(finding(
            "ovsdb-server", errors.get("ovsdb", "no answer"),
            f"{OVS_START}; or point --ovsdb at its socket "
            f"(now {obs['ovsdb_remote']})"))
    else:
        version = obs["ovsdb"].get("ovs_version")
        parts.append(f"ovsdb-server answers at {obs['ovsdb_remote']}"
                     + (f" (OVS {version})" if version else ""))
    if obs["vswitchd"] is None:
        found.append(finding(
            "ovs-vswitchd", errors.get("vswitchd", "no answer"),
            "start ovs-vswitchd (run: systemctl restart openvswitch-switch,"
            " or /usr/share/openvswitch/scripts/ovs-ctl --no-ovsdb-server "
            f"start); its control socket is looked for in {obs['rundir']} "
            "(--ovs-rundir)"))
    else:
        parts.append(f"ovs-vswitchd answers ({obs['vswitchd']['ctl']})")
    return _result("ovs", found, "; ".join(parts))


def check_bridge(obs):
    ovsdb = obs["ovsdb"]
    if ovsdb is None:
        return _cannot("bridge", "OVSDB unreachable")
    want = obs["datapath"]
    module = obs.get("ovs_module")
    found, parts, notes = [], [], []
    wanted = [obs["bridge"]]
    if obs["multi_host"]:
        wanted.append(obs["tunnel_bridge"])
    for name in wanted:
        bridge = ovsdb["bridges"].get(name)
        what = "integration" if name == obs["bridge"] else "tunnel"
        if bridge is None:
            fix = f"{RESTART_PLUGIN}: it creates the bridge"
            if what == "integration":
                fix += (f"; or run: ovs-vsctl add-br {name} -- set bridge "
                        f"{name} datapath_type={want or 'netdev'}")
            found.append(finding(name, f"the {what} bridge is missing", fix))
            continue
        found += _bridge_datapath(obs, name, bridge)
        extra = ""
        if what == "tunnel":
            extra = f", fail_mode {bridge['fail_mode'] or 'standalone'}"
            found += _tunnel_bridge(obs, name, bridge)
        parts.append(f"{name} ({bridge['datapath_type']}{extra})")
    upcall_found, upcall_notes = _upcall_findings(obs)
    found += upcall_found
    notes += upcall_notes
    if module == "loaded" and obs.get("datapath_source") == "bridge" and \
            want == "netdev":
        notes.append("the openvswitch module is loaded now: started again "
                     "with --datapath=auto the plugin switches to the "
                     "kernel datapath; set --datapath=netdev to keep this "
                     "one")
    return _result("bridge", found, ", ".join(parts), notes=notes)


def _bridge_datapath(obs, name, bridge):
    """The bridge's datapath_type is the one the plugin uses, and a kernel
    datapath has its module."""
    want, module = obs["datapath"], obs.get("ovs_module")
    actual = bridge["datapath_type"]
    if actual == "system" and module in ("absent", "available"):
        fix = (f"run: ovs-vsctl set bridge {name} datapath_type=netdev "
               "(the userspace datapath)")
        if module == "available":
            fix += "; or load the module: modprobe openvswitch"
        if obs.get("datapath_source") != "setting":
            fix += ("; then restart the plugin (or set --datapath for "
                    "it)")
        return [finding(
            name, "datapath_type is system (the kernel datapath) but "
            "the openvswitch kernel module is not loaded: ovs-vswitchd "
            "cannot create the datapath, the bridge forwards nothing",
            fix)]
    if want and actual != want:
        return [finding(
            name, f"datapath_type is {actual}, the plugin uses {want}",
            f"run: ovs-vsctl set bridge {name} datapath_type={want} "
            f"(or set --datapath={actual} for the plugin)")]
    return []


def _tunnel_bridge(obs, name, bridge):
    """The tunnel bridge forwards only by ovsgre's flows (fail_mode
    secure) and is patched to the integration bridge."""
    found = []
    if bridge["fail_mode"] != "secure":
        found.append(finding(
            name, "fail_mode is not secure: the bridge may flood "
            "between tunnels (loops)",
            f"run: ovs-vsctl set-fail-mode {name} secure"))
    for patch, on in ((PATCH_INT, name), (PATCH_TUN, obs["bridge"])):
        port = port_of(obs, patch)
        if port is None or port["bridge"] != on:
            found.append(finding(
                patch, f"patch port missing on {on}",
                f"{RESTART_PLUGIN}: it re-creates the patch ports"))
    return found


def _upcall_findings(obs):
    """Kernel datapath: packets that miss its flow cache go up to
    ovs-vswitchd (an upcall); lost ones are dropped."""
    up = obs.get("upcalls")
    if obs.get("datapath") != "system" or not up:
        return [], []
    version = (obs.get("vswitchd") or {}).get("version", "")
    started = up.get("started")
    early = started is not None and started < BOOT_SETTLE
    trap = early and version.endswith(" 3.1.0")
    if up["lost_now"]:
        why = (f"ovs-vswitchd started {started:.0f} s after boot: OVS 3.1.0"
               " then runs no upcall handlers; " if trap else "")
        return [finding(
            "upcalls", f"the kernel datapath is losing upcalls: "
            f"{up['lost_now']} in {UPCALL_SAMPLE:g} s (packets that miss "
            "its flow cache: first packets, ARP, new flows, are dropped)",
            why + ("" if trap else "if ovs-vswitchd started within "
                   f"{BOOT_SETTLE} s of boot (OVS 3.1.0 then runs no "
                   "upcall handlers) or is short of CPU, ") +
            RESTART_VSWITCHD + "; see ovs-appctl upcall/show")], []
    if trap:
        return [finding(
            "ovs-vswitchd", f"started {started:.0f} s after boot: OVS "
            "3.1.0 then runs no upcall handler threads, and the kernel "
            "datapath drops every packet that misses its flow cache",
            RESTART_VSWITCHD)], []
    if up["lost"]:
        return [], [f"{up['lost']} upcalls lost since the kernel datapath "
                    f"was created, none in the last {UPCALL_SAMPLE:g} s"]
    return [], []


def check_endpoints(obs):
    store, links = obs["store"], obs["links"]
    if store is None:
        return _cannot("endpoints", "store unreadable")
    if links is None and obs["ovsdb"] is None:
        return _cannot("endpoints", "cannot read links: "
                       + obs["errors"].get("links", "?") + "; OVSDB "
                       "unreachable")
    containers = (obs.get("docker") or {}).get("endpoints", {})
    found, unchecked = [], []
    if links is None:
        unchecked.append("veths and MTUs: cannot read links: "
                         + obs["errors"].get("links", "?"))
    if obs["ovsdb"] is None:
        unchecked.append("OVS ports (tag, ofport): OVSDB unreachable")
    checked = 0
    for eid, ep in sorted(store["endpoints"].items()):
        net = store["networks"].get(ep.get("network_id"))
        if ep.get("state") == DELETING or net is None:
            continue   # the stale check names these
        checked += 1
        who = _who(eid, containers)
        found += _endpoint_links(obs, ep, who)
        found += _endpoint_underlay_mtu(obs, ep, net, who)
        found += _endpoint_port(obs, ep, net, who)
        offload_found, offload_unchecked = _endpoint_offload(obs, eid, ep,
                                                             who)
        found += offload_found
        unchecked += offload_unchecked
    summary = f"{checked} endpoint(s): veths present and up, MTU as recorded"
    if links is None:
        summary = f"{checked} endpoint(s): OVS ports as recorded"
    if obs.get("datapath") == "netdev" and links is not None:
        summary += ", TX offload off where visible"
    return _result("endpoints", found, summary, not_checked=unchecked)


def _endpoint_links(obs, ep, who):
    """The host veth is there, up, with the recorded MTU; so is the
    container end when it is still in this namespace."""
    links = obs["links"]
    if links is None:
        return []
    host_if, peer_if, mtu = ep["host_if"], ep["peer_if"], ep["mtu"]
    host = links.get(host_if)
    found = []
    if host is None:
        found.append(finding(host_if, f"host veth of {who} is missing",
                             _missing_veth_fix(ep, obs)))
    else:
        if not host["up"]:
            found.append(finding(host_if, f"host veth of {who} is down",
                                 f"run: ip link set {host_if} up"))
        if host["mtu"] != mtu:
            found.append(finding(
                host_if, f"MTU {host['mtu']} on the host veth of {who}, "
                f"recorded {mtu}",
                f"run: ip link set {host_if} mtu {mtu}"))
    peer = links.get(peer_if)
    if peer is not None and peer["mtu"] != mtu:
        found.append(finding(
            peer_if, f"MTU {peer['mtu']} on the container end of {who}, "
            f"recorded {mtu}", f"run: ip link set {peer_if} mtu {mtu}"))
    return found


def _endpoint_underlay_mtu(obs, ep, net, who):
    """A cluster network's MTU fits the underlay's minus GRE_OVERHEAD."""
    underlay = obs.get("underlay") or {}
    limit = underlay["mtu"] - GRE_OVERHEAD if underlay.get("mtu") else None
    mtu = ep["mtu"]
    if not (obs["multi_host"] and limit and net.get("key") and mtu > limit):
        return []
    return [finding(
        ep["host_if"], f"MTU {mtu} of {who} exceeds the underlay MTU "
        f"{underlay['mtu']} - {GRE_OVERHEAD} = {limit}: larger "
        "frames between hosts are dropped silently",
        "recreate the network with -o com.docker.network.driver.mtu="
        f"{limit} (or raise the underlay MTU to "
        f"{mtu + GRE_OVERHEAD})")]


def _endpoint_port(obs, ep, net, who):
    """ovs-vswitchd took the endpoint's OVS port, tagged with the
    network's VLAN."""
    host_if, links = ep["host_if"], obs["links"]
    port = port_of(obs, host_if)
    found = []
    if port and (links is None or host_if in links) and \
            obs.get("vswitchd") and \
            port["bridge"] == obs["bridge"] and \
            (port["ofport"] == -1 or port["error"]):
        found.append(finding(
            host_if, f"ovs-vswitchd did not take the OVS port of {who} "
            f"(ofport {port['ofport']}"
            + (f", {port['error']}" if port["error"] else "") + ")",
            f"see: ovs-vsctl list interface {host_if} and the "
            f"ovs-vswitchd log; then {RESTART_PLUGIN}"))
    if port and net.get("vlan") and port["tag"] != net["vlan"]:
        found.append(finding(
            host_if, f"OVS port tag {port['tag']}, the network's VLAN "
            f"is {net['vlan']}: {who} is on the wrong network",
            f"{RESTART_PLUGIN} (start-up fixes tags); or run: "
            f"ovs-vsctl set port {host_if} tag={net['vlan']}"))
    return found


def _endpoint_offload(obs, eid, ep, who):
    """(findings, not checked): TX checksum offload of the container end
    (read only under the userspace datapath)."""
    off = (obs.get("offload") or {}).get(eid)
    if off is None:
        return [], []
    if off["tx"] is None:
        return [], [f"TX offload of {who}: {off['error']}"]
    if not off["tx"]:
        return [], []
    inside = off["where"] == "container"
    fix = f"run: ethtool -K {off['ifname']} tx off"
    if inside:
        fix = (f"run: nsenter --net={off['netns']} ethtool -K "
               f"{off['ifname']} tx off")
    return [finding(
        ep["host_if"] if inside else off["ifname"],
        f"TX checksum offload is on on the container end of {who} "
        f"({off['ifname']}{' in its container' if inside else ''}): "
        "with the userspace datapath its TCP carries bad checksums "
        "(ping still works)", fix)], []


def _who(eid, containers):
    name = containers.get(eid)
    return f"endpoint {eid[:12]}" + (f" ({name})" if name else "")


def _missing_veth_fix(ep, obs):
    docker = obs.get("docker") or {}
    name = docker.get("endpoints", {}).get(ep["endpoint_id"])
    network = docker.get("networks", {}).get(ep["network_id"]) or \
        ep["network_id"][:12]
    if ep.get("state") == JOINED:
        if name:   # Docker still has the container on the network
            return (f"reconnect its container: run: docker network "
                    f"disconnect -f {network} {name} && docker network "
                    f"connect {network} {name} (or docker restart {name})")
        return (f"its container's network namespace is gone: run: docker "
                f"network disconnect -f {network} CONTAINER (or docker rm "
                "-f CONTAINER); the plugin's janitor also removes the "
                "record after a while")
    return f"{RESTART_PLUGIN}: start-up re-creates the veth pair and port"


def check_underlay(obs):
    if not obs["multi_host"]:
        return _result("underlay", [], "", skipped="single host")
    if obs.get("datapath") != "netdev":
        return _result("underlay", [], "",
                       skipped="kernel datapath: the kernel routes tunnels")
    ip = obs.get("local_ip")
    if not ip:
        return _result("underlay", [finding(
            "tunnel source", "cannot tell the tunnel source address"
            + (f": {obs['errors']['local_ip']}"
               if obs["errors"].get("local_ip") else ""),
            "set --local-ip (OVSGRE_LOCAL_IP) to this host's underlay "
            "address")], "")
    under = obs.get("underlay") or {}
    name = under.get("ifname")
    for what in ("links", "addresses"):
        if not name and obs["errors"].get(what):
            return _cannot("underlay", f"cannot read {what}: "
                           + obs["errors"][what])
    if not name:
        return _result("underlay", [finding(
            ip, f"no interface of this host has the tunnel source {ip}",
            "set --local-ip to an address of this host's underlay")], "")
    found = []
    iface = ((obs.get("ovsdb") or {}).get("interfaces") or {}).get(name)
    port = port_of(obs, name)
    bridge = ((obs.get("ovsdb") or {}).get("bridges") or {}).get(
        (port or {}).get("bridge"))
    if obs.get("ovsdb") is not None and (
            iface is None or iface["type"] != "internal" or
            bridge is None or bridge["datapath_type"] != "netdev"):
        found.append(finding(
            name, f"the tunnel source {ip} is on {name}, not on a userspace "
            "OVS bridge: ovs-vswitchd cannot send the tunnel packets",
            "move it onto an OVS bridge: ovs-vsctl add-br br-phy -- set "
            "bridge br-phy datapath_type=netdev; ovs-vsctl add-port br-phy "
            f"NIC; ip addr del {ip}/LEN dev {name}; ip addr add {ip}/LEN "
            "dev br-phy; ip link set br-phy up; ethtool -K br-phy tx off"))
    if under.get("tx"):
        found.append(finding(
            name, f"TX checksum offload is on on {name}, which holds the "
            f"tunnel source {ip}: this host's own TCP over it (etcd) fails "
            "while ping works", f"run: ethtool -K {name} tx off"))
    unchecked = []
    if obs.get("ovsdb") is None:
        unchecked.append(f"whether {name} is an OVS bridge port: OVSDB "
                         "unreachable")
    if under.get("tx") is None:
        unchecked.append(f"TX offload of {name}: "
                         f"{under.get('tx_error') or 'unreadable'}")
    return _result("underlay", found,
                   f"{ip} on {name} (MTU {under.get('mtu')})"
                   + ("" if unchecked else ", TX offload off"),
                   not_checked=unchecked)


def check_tunnels(obs):
    if not obs["multi_host"]:
        return _result("tunnels", [], "", skipped="single host")
    if obs["ovsdb"] is None:
        return _cannot("tunnels", "OVSDB unreachable")
    notes = []
    if obs["peers"] is None:
        notes.append("peers taken from the tunnel ports present (etcd "
                     "unreachable)")
    wanted = expected_peers(obs)
    ports = tunnel_ports(obs)
    found = _tunnel_ports(obs, wanted, ports)
    ping_found, unchecked = _pings(obs, wanted)
    found += ping_found
    if obs.get("registered") is False:
        found.append(finding(
            obs.get("local_ip") or "this host",
            "this host is not registered in etcd (/ovsgre/hosts/): peers "
            "have no tunnel to it",
            "start the plugin (ovsgre serve) and check its log; its "
            "--local-ip must be this address"))
    ping = obs.get("ping") or {}
    answered = sum(1 for p in wanted if (ping.get(p) or (None,))[0])
    return _result("tunnels", found,
                   f"{len(wanted)} peer(s), {len(ports)} tunnel port(s), "
                   f"{answered} answer ping", notes=notes,
                   not_checked=unchecked)


def _tunnel_ports(obs, wanted, ports):
    """A working GRE port to every peer, none to hosts that are not."""
    found = []
    for peer in sorted(wanted):
        name = tunnel_port_name(peer)
        port = ports.get(name)
        if port is None:
            found.append(finding(
                name, f"no tunnel port to peer {peer}",
                f"{RESTART_PLUGIN}: it re-creates the tunnel ports (its log "
                "says 'tunnel sync failed' when it cannot)"))
        elif not port["ofport"] or port["ofport"] < 1:
            found.append(finding(
                name, f"ovs-vswitchd did not take the tunnel port to {peer} "
                f"(ofport {port['ofport']}"
                + (f", {port['error']}" if port["error"] else "") + ")",
                f"see: ovs-vsctl list interface {name}; then "
                f"{RESTART_PLUGIN}"))
        elif port["remote_ip"] != peer:
            found.append(finding(
                name, f"tunnel port to {peer} has remote_ip "
                f"{port['remote_ip']}", RESTART_PLUGIN))
    if obs["peers"] is not None:
        for name, port in sorted(ports.items()):
            if port["peer"] not in wanted:
                found.append(finding(
                    name, f"tunnel port to {port['peer']}, which is not a "
                    "peer (not registered)",
                    f"{RESTART_PLUGIN}; or run: ovs-vsctl del-port "
                    f"{obs['tunnel_bridge']} {name}"))
    return found


def _pings(obs, wanted):
    """(findings, not checked): every peer answers ping over the
    underlay."""
    ping = obs.get("ping") or {}
    source = obs.get("local_ip") or "this host"
    found, unchecked = [], []
    for peer in sorted(wanted):
        answered, detail = ping.get(peer, (None, "not pinged"))
        if answered is None:
            unchecked.append(f"ping {peer}: {detail}")
        elif answered is False:
            found.append(finding(
                peer, f"peer does not answer ping over the underlay from "
                f"{source}" + (f" ({detail})" if detail else ""),
                f"check the underlay path to {peer} (address, routes, "
                "firewall; with the userspace datapath the source address "
                "must be on br-phy); is that host up?"))
    return found, unchecked


def check_flows(obs):
    if not obs["multi_host"]:
        return _result("flows", [], "", skipped="single host")
    tb = obs["tunnel_bridge"]
    if obs["ovsdb"] is None:
        return _cannot("flows", "OVSDB unreachable")
    if tb not in obs["ovsdb"]["bridges"]:
        return _cannot("flows", f"no {tb} to read")
    if obs.get("flows") is None:
        if obs["vswitchd"] is None:
            return _cannot("flows", "ovs-vswitchd down")
        return _result("flows", [finding(
            tb, "cannot read the flow table: "
            + obs["errors"].get("flows", "?"),
            f"check ovs-vswitchd and {obs['rundir']}/{tb}.mgmt "
            "(--ovs-rundir)")], "")
    bad = [m["id"][:12] for m in (obs.get("store") or {}).get("malformed", ())
           if m["kind"] == "networks"]
    if bad:
        return _cannot("flows", "malformed network record(s) "
                       + ", ".join(bad) + " (see store)")
    expected = expected_flows(obs)
    if expected is None:
        return _cannot("flows", f"{PATCH_INT} has no ofport or the store "
                       "is unreadable")
    missing, unexpected = compare_flows(expected, obs["flows"])
    found = []
    if missing or unexpected:
        details = [f"- {f}" for f in missing[:MAX_LISTED_FLOWS]] + \
            [f"+ {f}" for f in unexpected[:MAX_LISTED_FLOWS]]
        found.append(finding(
            tb, f"flow table differs from the computed one: "
            f"{len(missing)} missing, {len(unexpected)} unexpected",
            f"{RESTART_PLUGIN}: it re-installs the whole table (if this "
            "persists, its log says why)", details))
    return _result("flows", found, f"{tb}: {len(expected)} flows as "
                   "computed (learned flows ignored)")


def check_stale(obs):
    store = obs["store"]
    if store is None:
        return _cannot("stale", "store unreadable")
    if obs["ovsdb"] is None and obs["links"] is None:
        return _cannot("stale", "OVSDB and links unreadable")
    unchecked = []
    if obs["ovsdb"] is None:
        unchecked.append("OVS ports: OVSDB unreachable")
    if obs["links"] is None:
        unchecked.append("links: " + obs["errors"].get("links", "unreadable"))
    found = _orphans(obs, _known_names(store)) + _stale_records(obs, store)
    if obs["ovsdb"] is None:
        summary = "no orphan links"
    elif obs["links"] is None:
        summary = "no orphan OVS ports, every record has its port"
    else:
        summary = "no orphan ports or links, every record has its port"
    return _result("stale", found, summary, not_checked=unchecked)


def _known_names(store):
    """Interface names the store's records own; the names of malformed
    records are not orphans either: the store check names those records."""
    known = {ep[k] for ep in store["endpoints"].values()
             for k in ("host_if", "peer_if")}
    for bad in store.get("malformed", ()):
        if bad["kind"] == "endpoints":
            known |= _names_of(bad)
    return known


def _orphans(obs, known):
    """ovsgre's OVS ports and ovsgre-named links without a record."""
    found = []
    if obs["ovsdb"] is not None:
        for name, port in sorted(owned_endpoint_ports(obs).items()):
            if name not in known:
                found.append(finding(
                    name, "OVS port with owner=ovsgre but no endpoint record",
                    f"{RESTART_PLUGIN} (start-up removes orphans); or run: "
                    f"ovs-vsctl del-port {port['bridge'] or obs['bridge']} "
                    f"{name}"))
    if obs["links"] is not None:
        for name in sorted(obs["links"]):
            if names.is_ours(name) and name not in known:
                found.append(finding(
                    name, "ovsgre-named link without an endpoint record",
                    f"run: ip link del {name} (or {RESTART_PLUGIN})"))
    return found


def _stale_records(obs, store):
    """Unfinished deletions, endpoints of networks without a record, and
    records without their OVS port."""
    containers = (obs.get("docker") or {}).get("endpoints", {})
    bad_networks = {m["id"] for m in store.get("malformed", ())
                    if m["kind"] == "networks"}
    found = []
    for eid, ep in sorted(store["endpoints"].items()):
        who = _who(eid, containers)
        if ep.get("state") == DELETING:
            found.append(finding(
                eid[:12], f"deletion of {who} was interrupted",
                f"{RESTART_PLUGIN}: start-up finishes it"))
        elif ep["network_id"] in bad_networks:
            continue   # the store check names its malformed network
        elif ep.get("network_id") not in store["networks"]:
            found.append(finding(
                eid[:12], f"{who} belongs to network "
                f"{ep.get('network_id', '')[:12]}, which has no record",
                f"{RESTART_PLUGIN}: start-up removes it"))
        elif obs["ovsdb"] is not None:
            found += _record_without_port(obs, ep, who)
    return found


def _record_without_port(obs, ep, who):
    port = port_of(obs, ep["host_if"])
    if port is not None and port["bridge"] == obs["bridge"]:
        return []
    has_link = obs["links"] is None or ep["host_if"] in obs["links"]
    fix = (f"{RESTART_PLUGIN}: start-up re-adds the port" if has_link
           else _missing_veth_fix(ep, obs))
    return [finding(
        ep["host_if"], f"{who} has a record but no OVS port on "
        f"{obs['bridge']}", fix)]


def check_store(obs):
    found = []
    store = obs["store"]
    parts = []
    if store is None:
        found.append(finding(
            obs["state_dir"], obs["errors"].get("store", "unreadable"),
            "point --state-dir (OVSGRE_STATE_DIR) at the plugin's state "
            "directory (default /var/lib/ovsgre); the plugin creates it "
            "when it starts"))
    else:
        for bad in store["bad"]:
            found.append(finding(
                bad.split(":", 1)[0], "unreadable record: "
                + bad.split(":", 1)[-1].strip(),
                "move it out of the state directory, then "
                + RESTART_PLUGIN))
        for bad in store.get("malformed", ()):
            found.append(finding(
                bad["path"], f"malformed {bad['kind'][:-1]} record ("
                + ", ".join(bad["problems"]) + "): the plugin cannot use it",
                _malformed_fix(bad, obs)))
        parts.append(f"{obs['state_dir']}: {len(store['networks'])} "
                     f"network(s), {len(store['endpoints'])} endpoint(s)")
    if obs["mode"] == "etcd":
        if obs["peers"] is None:
            found.append(finding(
                "etcd", obs["errors"].get("etcd", "unreachable"),
                "start etcd or fix --etcd / --etcd-ca --etcd-cert "
                "--etcd-key (traffic keeps flowing; new networks, "
                "addresses and hosts need etcd)"))
        else:
            hosts = len(obs["peers"]) + (1 if obs.get("registered") else 0)
            parts.append(f"etcd answers ({hosts} host(s) registered)")
        for bad in obs.get("etcd_malformed", ()):
            what, effect, again = ETCD_MALFORMED.get(
                bad.get("kind"), ETCD_MALFORMED["hosts"])
            found.append(finding(
                bad["path"], f"malformed {what} record in etcd ("
                + ", ".join(bad["problems"]) + f"): {effect}",
                f"fix or delete it (etcdctl del {bad['path']}); {again}"))
    return _result("store", found, "; ".join(parts))


# kind of a malformed etcd record -> (what it is, what skipping it does,
# what deleting it does)
ETCD_MALFORMED = {
    "hosts": ("host", "no host gets a tunnel to it",
              "a host's plugin writes its own record again when it starts"),
    "networks": ("network", "no host can create or join that network",
                 "the next host creating the network defines it again"),
    "keys": ("GRE key reservation", "the network it names cannot be "
             "defined with that key", "the network's next definition "
             "reserves its key again"),
    "declared": ("declared network", "no host creates that network",
                 "declare it again with `ovsgre network create`"),
    "pools": ("IPAM pool", "networks of that subnet cannot be created and "
              "get no addresses", "the next network of that subnet "
              "claims the pool again (its addresses with it)"),
}


def _names_of(bad):
    """Interface names a malformed endpoint record may own: its own fields
    and every name the plugin derives from its ID."""
    record = bad["record"]
    out = {record.get(k) for k in ("host_if", "peer_if")
           if isinstance(record.get(k), str)}
    for attempt in range(names.MAX_ATTEMPTS):
        out.update(names.veth_names(bad["id"], attempt))
    return out


def _malformed_fix(bad, obs):
    fix = (f"move it out of the state directory (run: mv {bad['path']} "
           f"/root/), then {RESTART_PLUGIN}")
    if bad["kind"] == "endpoints":
        # start-up then removes its port and links as orphans
        name = (obs.get("docker") or {}).get("endpoints", {}).get(bad["id"])
        if name:
            fix += (f"; then reconnect {name}: docker network disconnect -f "
                    f"NETWORK {name} && docker network connect NETWORK "
                    f"{name}")
    else:
        fix += ("; then recreate the network: docker network rm NAME && "
                "docker network create -d ovsgre ...")
    return fix


CHECKS = (check_ovs, check_bridge, check_endpoints, check_underlay,
          check_tunnels, check_flows, check_stale, check_store)


# ----------------------------------------------------------------- output

def format_report(obs, report):
    head = (f"ovsgre doctor: bridge {obs['bridge']}, datapath "
            f"{obs.get('datapath') or '?'}, {obs['mode']}")
    if obs["multi_host"]:
        head += f", tunnel IP {obs.get('local_ip') or '?'}"
    lines = [head]
    for result in report["checks"]:
        mark = {"ok": "ok  ", "fail": "FAIL", "skip": "skip",
                "error": "ERR "}[result["status"]]
        summary = result["summary"]
        if result["status"] == "fail":
            count = len(result["findings"])
            summary = f"{count} problem{'s' if count != 1 else ''}"
        lines.append(f"{mark}  {result['name']:<10} {summary}".rstrip())
        for item in result["findings"]:
            lines.append(f"      {item['subject']}: {item['problem']}")
            for detail in item.get("details", ()):
                lines.append(f"          {detail}")
            lines.append(f"        fix: {item['fix']}")
        if not summary.startswith("not checked: "):   # else it says so
            for what in result["not_checked"]:
                lines.append(f"      not checked: {what}")
        for note in result["notes"]:
            lines.append(f"      note: {note}")
    n, m = report["problems"], report["not_checked"]
    incomplete = [r["name"] for r in report["checks"] if r["not_checked"]]
    if report["ok"]:
        lines.append("all checks passed")
    elif n:
        lines.append(f"{n} problem{'s' if n != 1 else ''} found"
                     + (f"; not checked completely: {', '.join(incomplete)}"
                        if m else ""))
    else:
        lines.append("no problem found, but not everything could be "
                     f"checked: {', '.join(incomplete)} (exit status 2)")
    return "\n".join(lines) + "\n"
