"""Subcommands of the `ovsgre` command line (see ovsgre.cli)."""

import sys


def cluster_kv(settings, command):
    """The etcd client for a cluster-wide command, or None (after saying
    why) when no etcd is configured."""
    if not settings.etcd:
        print(f"ovsgre {command}: needs etcd (--etcd or OVSGRE_ETCD)",
              file=sys.stderr)
        return None
    from ..cluster.etcd import EtcdKV
    return EtcdKV.from_settings(settings)
