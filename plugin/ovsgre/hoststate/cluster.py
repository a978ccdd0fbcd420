"""The cluster's records in etcd, read through the plugin's own etcd
client and parsed with its parsers (cluster.records): the host registry,
and the network, key, declared-network and pool records that do not
parse."""

import re

from ..cluster import etcd
from ..cluster.networks import KEYS, NETS
from ..cluster.records import (Malformed, parse_declared, parse_host,
                               parse_key, parse_key_owner, parse_network,
                               parse_pool, printable)
from ..declared_networks import PREFIX as DECLARED
from ..definitions import HOSTS_PREFIX
from ..ipam import POOLS
from .command import ProbeError


def etcd_list(settings, timeout, prefix):
    """{etcd key: record as found} under prefix."""
    try:
        kv = etcd.EtcdKV.from_settings(settings, timeout)
    except ValueError as exc:
        raise ProbeError(str(exc)) from exc
    try:
        items = kv.list(prefix)
    except Exception as exc:
        # some client errors carry no text: say what happened
        text = re.sub(r": (?=;|$)", ": no answer (connection failed or "
                      "timed out)", str(exc))
        raise ProbeError(text) from exc
    finally:
        kv.close()
    return items


def malformed_records(list_prefix):
    """Network definitions, GRE key reservations, declared networks and
    IPAM pools in etcd that do not parse (the plugin skips them).
    list_prefix(prefix) reads one prefix ({key: value}, or None when it
    could not be read: an error, not a finding)."""
    bad = []
    for kind, prefix, parse in (("networks", NETS, parse_network),
                                ("keys", KEYS, _parse_key_record),
                                ("declared", DECLARED, parse_declared),
                                ("pools", POOLS, parse_pool)):
        for path, value in sorted((list_prefix(prefix) or {}).items()):
            try:
                parse(path, value, prefix)
            except Malformed as exc:
                bad.append(_bad(kind, path, prefix, exc))
    return bad


def _bad(kind, path, prefix, exc):
    return {"kind": kind, "id": printable(path[len(prefix):]),
            "path": printable(path), "problems": [str(exc)]}


def _parse_key_record(path, value, prefix):
    """A GRE key reservation at prefix + KEY: {"name": NAME}."""
    parse_key(int(path[len(prefix):])
              if path[len(prefix):].isdigit() else path[len(prefix):])
    return parse_key_owner(value)


def parse_hosts(items):
    """({ip: {ip, hostname, version}}, [malformed]) from host records as
    etcd holds them: only what parses, in printable text."""
    hosts, bad = {}, []
    for path, value in sorted(items.items()):
        try:
            host = parse_host(path, value, HOSTS_PREFIX)
        except Malformed as exc:
            bad.append(_bad("hosts", path, HOSTS_PREFIX, exc))
            continue
        hosts[str(host.ip)] = {"ip": str(host.ip), "hostname": host.hostname,
                               "version": host.version}
    return hosts, bad
