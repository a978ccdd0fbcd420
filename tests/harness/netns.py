"""Network namespaces for the harness (never touches the root namespace)."""
from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
from typing import Mapping, Optional, Sequence, Union

from ._proc import CommandError, merged_env, run as _run

log = logging.getLogger("ovsgre.harness")

PREFIX_BASE = "ovgt"
NETNS_DIR = "/run/netns"


def unique_prefix() -> str:
    """A fresh harness prefix such as 'ovgt-ab12cd'."""
    return f"{PREFIX_BASE}-{secrets.token_hex(3)}"


class Netns:
    """A named network namespace (`ip netns`)."""

    def __init__(self, name: str):
        if "/" in name or not name or len(name) > 200:
            raise ValueError(f"bad netns name {name!r}")
        self.name = name

    def __repr__(self) -> str:
        return f"Netns({self.name!r})"

    @property
    def path(self) -> str:
        return os.path.join(NETNS_DIR, self.name)

    def exists(self) -> bool:
        return os.path.exists(self.path)

    def create(self) -> "Netns":
        _run(["ip", "netns", "add", self.name])
        _run(["ip", "-n", self.name, "link", "set", "lo", "up"])
        return self

    def delete(self) -> None:
        """`ip netns del`; idempotent. Kills nothing."""
        if not self.exists():
            return
        cp = _run(["ip", "netns", "del", self.name], check=False)
        if cp.returncode != 0 and self.exists():
            log.warning("ip netns del %s failed: %s", self.name,
                        cp.stderr.strip())

    def pids(self) -> list:
        """PIDs whose network namespace is this one (`ip netns pids`)."""
        if not self.exists():
            return []
        cp = _run(["ip", "netns", "pids", self.name], check=False)
        return [int(x) for x in cp.stdout.split() if x.isdigit()]

    def exec_argv(self, argv: Sequence[str]) -> list:
        return ["ip", "netns", "exec", self.name, *[str(a) for a in argv]]

    def run(self, argv: Sequence[str], check: bool = True, timeout: float = 60,
            env: Optional[Mapping[str, str]] = None,
            input: Optional[str] = None) -> subprocess.CompletedProcess:
        """Run argv inside the namespace; text stdout/stderr captured.

        env: extra variables layered on top of os.environ (None = inherit).
        """
        return _run(self.exec_argv(argv), check=check, timeout=timeout,
                    env=env, input=input)

    def popen(self, argv: Sequence[str], env: Optional[Mapping[str, str]] = None,
              **kw) -> subprocess.Popen:
        """subprocess.Popen of argv inside the namespace (caller owns it)."""
        return subprocess.Popen(self.exec_argv(argv), env=merged_env(env), **kw)


NsLike = Union[Netns, str, None]


def _ns_name(ns: NsLike) -> Optional[str]:
    if ns is None:
        return None
    return ns.name if isinstance(ns, Netns) else str(ns)


def _ip_json(ns: NsLike, args: Sequence[str]):
    argv = ["ip"]
    name = _ns_name(ns)
    if name:
        argv += ["-n", name]
    argv += ["-j", "-d", *args]
    cp = _run(argv)
    return json.loads(cp.stdout or "[]")


def link_json(ns: NsLike, ifname: Optional[str] = None) -> list:
    """Parsed `ip -j -d link show [dev IF]` in ns (list of dicts)."""
    args = ["link", "show"]
    if ifname:
        args += ["dev", ifname]
    return _ip_json(ns, args)


def addr_json(ns: NsLike, ifname: Optional[str] = None) -> list:
    """Parsed `ip -j -d addr show [dev IF]` in ns (list of dicts)."""
    args = ["addr", "show"]
    if ifname:
        args += ["dev", ifname]
    return _ip_json(ns, args)


def ethtool_features(ns: NsLike, ifname: str) -> dict:
    """`ethtool -k IF` in ns as {feature-name: bool}; '[fixed]' ignored."""
    argv = ["ethtool", "-k", ifname]
    name = _ns_name(ns)
    if name:
        argv = Netns(name).exec_argv(argv)
    cp = _run(argv)
    feats = {}
    for line in cp.stdout.splitlines():
        if line.startswith("Features for") or ":" not in line:
            continue
        key, _, val = line.strip().partition(":")
        words = val.split()
        if not words:
            continue
        feats[key.strip()] = words[0] == "on"
    return feats


__all__ = ["Netns", "unique_prefix", "link_json", "addr_json",
           "ethtool_features", "CommandError"]
