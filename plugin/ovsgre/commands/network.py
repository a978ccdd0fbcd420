"""`ovsgre network create|ls|rm`: networks declared once for the cluster.

    ovsgre network create NAME --subnet CIDR [--subnet CIDR6 --ipv6]
                          [--internal] [-o KEY=VALUE ...]
    ovsgre network ls [--json]
    ovsgre network rm NAME

Needs etcd (--etcd).  Every host's plugin creates (or removes) the matching
Docker network itself; `ls` shows on which hosts each network exists.
HOSTS lists the hosts holding a network's definition; one whose plugin is
not registered now (its lease under /ovsgre/hosts/ expired: the host or
its plugin died, or it lost etcd for longer than the TTL) is marked
"(down)" (JSON: "down_hosts", the live ones in "hosts").  Its hold stays
until its plugin deletes the network.  "(swarm)": reserved by the swarm
manager for a swarm network (JSON: "swarm": true).
"""

import ipaddress
import json
import sys

from ..cluster.networks import NetworkRegistry
from ..cluster.records import Malformed, parse_declared, printable
from ..declared_networks import PREFIX, check_name
from ..errors import OvsgreError
from ..definitions import HOSTS_PREFIX
from . import cluster_kv


def add_arguments(parser):
    sub = parser.add_subparsers(dest="action", required=True)
    create = sub.add_parser("create", help="declare a network everywhere")
    create.add_argument("name")
    create.add_argument("--subnet", action="append", required=True,
                        help="subnet (repeat for IPv6)")
    create.add_argument("--ipv6", action="store_true")
    create.add_argument("--internal", action="store_true")
    create.add_argument("-o", "--opt", action="append", default=[],
                        metavar="KEY=VALUE", help="driver option")
    listing = sub.add_parser("ls", help="the cluster's networks and hosts")
    listing.add_argument("--json", action="store_true")
    remove = sub.add_parser("rm", help="remove a declared network "
                            "everywhere")
    remove.add_argument("name")


def run(settings, args):
    kv = cluster_kv(settings, "network")
    if kv is None:
        return 2
    try:
        return {"create": _create, "ls": _list, "rm": _remove}[
            args.action](kv, args)
    except (OvsgreError, ValueError) as exc:
        print(f"ovsgre network {args.action}: {exc}", file=sys.stderr)
        return 1
    finally:
        kv.close()


def _record(args):
    subnets = [str(ipaddress.ip_network(s, strict=False))
               for s in args.subnet]
    versions = {ipaddress.ip_network(s).version for s in subnets}
    if 6 in versions and not args.ipv6:
        raise ValueError("an IPv6 subnet needs --ipv6")
    options = {}
    for item in args.opt:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"option {item!r} is not KEY=VALUE")
        options[key] = value
    return {"name": check_name(args.name), "subnets": subnets,
            "ipv6": args.ipv6, "internal": args.internal,
            "options": options}


def _create(kv, args):
    record = _record(args)
    if kv.create(PREFIX + record["name"], record):
        print(f"declared {record['name']}: every host creates it")
        return 0
    if kv.get(PREFIX + record["name"]) == record:
        print(f"{record['name']} is already declared")
        return 0
    print(f"ovsgre network create: {record['name']} is already declared "
          "with other settings (ovsgre network rm it first)",
          file=sys.stderr)
    return 1


def _declared(kv):
    """{name: Declared}; malformed records named on stderr, skipped."""
    out = {}
    for path, record in kv.list(PREFIX).items():
        try:
            item = parse_declared(path, record, PREFIX)
        except Malformed as exc:
            print(f"skipped malformed record {printable(path)}: {exc}",
                  file=sys.stderr)
            continue
        out[item.name] = item
    return out


def _list(kv, args):
    declared = _declared(kv)
    registry = NetworkRegistry(kv, "")
    defined = registry.list()
    for path, problem in registry.malformed.current().items():
        print(f"skipped malformed record {printable(path)}: {problem}",
              file=sys.stderr)
    live = _live_hosts(kv)
    rows = []
    for name in sorted(set(declared) | set(defined)):
        net = defined.get(name)
        holders = sorted(net.hosts) if net else []
        rows.append({
            "name": name,
            "declared": name in declared,
            "subnets": list(declared[name].subnets) if name in declared
            else (net.subnets("ipv4") + net.subnets("ipv6") if net else []),
            "key": net.key if net else None,
            "hosts": [h for h in holders if h in live],
            "down_hosts": [h for h in holders if h not in live],
            "swarm": bool(net and net.swarm),
        })
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
        return 0
    print(f"{'NAME':<20} {'DECLARED':<9} {'KEY':<9} {'SUBNETS':<34} HOSTS")
    for row in rows:
        hosts = row["hosts"] + [f"{h} (down)" for h in row["down_hosts"]]
        if row["swarm"]:
            hosts.append("(swarm)")
        print(f"{row['name']:<20} {'yes' if row['declared'] else 'no':<9} "
              f"{row['key'] or '-'!s:<9} {', '.join(row['subnets']):<34} "
              f"{', '.join(hosts) or '-'}")
    return 0


def _live_hosts(kv):
    """Host IDs (tunnel addresses) registered now: a registration lives
    under a lease, so a host whose plugin died is gone within the TTL."""
    return {key[len(HOSTS_PREFIX):] for key in kv.list(HOSTS_PREFIX)}


def _remove(kv, args):
    name = check_name(args.name)
    if kv.get(PREFIX + name) is None:
        print(f"ovsgre network rm: {name} is not declared", file=sys.stderr)
        return 1
    kv.delete(PREFIX + name)
    print(f"removed {name}: every host removes its Docker network once no "
          "container uses it")
    return 0
