"""`ovsgre host forget IP`: remove what a host that is gone for good still
holds in the cluster store.

A host that dies keeps its holds: its name on the networks it had, its
holds on IPAM pools and the addresses its containers had (a host that comes
back needs them: dockerd does not ask for them again).  Once it will not
come back, this releases them: networks and pools it alone held go (their
GRE keys and addresses with them), and its containers' addresses are free
again.  It refuses while the host is registered (its plugin runs), unless
--force.  Needs etcd.
"""

import ipaddress
import sys

from ..cluster.networks import NetworkRegistry
from ..errors import OvsgreError
from ..ipam import Ipam
from ..definitions import HOSTS_PREFIX
from . import cluster_kv


def add_arguments(parser):
    sub = parser.add_subparsers(dest="action", required=True)
    forget = sub.add_parser("forget", help="release what a dead host holds")
    forget.add_argument("ip", help="the host's tunnel IP (as in `ovsgre "
                        "network ls` and `ovsgre status`)")
    forget.add_argument("--force", action="store_true",
                        help="even while the host is registered")


def run(settings, args):
    kv = cluster_kv(settings, "host")
    if kv is None:
        return 2
    try:
        counts = forget(kv, args.ip, args.force)
    except (OvsgreError, ValueError) as exc:
        print(f"ovsgre host forget: {exc}", file=sys.stderr)
        return 1
    finally:
        kv.close()
    print(f"forgot {args.ip}: released {counts['networks']} network "
          f"hold(s), {counts['pools']} pool hold(s), "
          f"{counts['addresses']} address(es)")
    return 0


def forget(kv, ip, force=False):
    ip = str(ipaddress.ip_address(ip))
    if not force and kv.get(HOSTS_PREFIX + ip) is not None:
        raise ValueError(f"host {ip} is registered (its plugin runs); stop "
                         "it first, or use --force")
    registry = NetworkRegistry(kv, ip)
    held = [name for name, net in registry.list().items()
            if ip in net.hosts]
    for name in held:
        registry.release(name)
    pools, addresses = Ipam(kv, ip).forget_host()
    return {"networks": len(held), "pools": pools, "addresses": addresses}
