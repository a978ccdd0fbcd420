"""End-to-end tier: a real dockerd in its own network and mount namespace,
its own OVS, and ovsgre started as `ovsgre serve` (how the README runs it),
found by dockerd through a spec file in the host's /etc/docker/plugins."""

import json
import os
import time

import pytest

from tests.harness import TestHost, import_busybox, link_json
from tests.harness.fixtures import make_host, make_underlay  # noqa: F401
from tests.harness.image import BUSYBOX_TAG
from tests.harness.plugin import PluginProcess

IMAGE = BUSYBOX_TAG
# docker_gwbridge (ovsgre.gwbridge=true) takes its subnet from these pools
DAEMON_CONFIG = {"default-address-pools": [{"base": "198.19.128.0/17",
                                            "size": 24}]}


class Site:
    """One namespace host running dockerd + OVS + the ovsgre plugin."""

    def __init__(self, host, plugin):
        self.host = host
        self.plugin = plugin

    def docker(self, *args, check=True, timeout=120):
        return self.host.docker.cli(*args, check=check, timeout=timeout)

    def out(self, *args, **kw):
        return self.docker(*args, **kw).stdout.strip()

    def run_bg(self, name, network, *cmd, extra=()):
        """Detached container; --init so `docker rm -f` is quick."""
        self.docker("run", "-d", "--init", "--name", name, "--network",
                    network, *extra, IMAGE, *cmd)

    def run_rm(self, network, *cmd, extra=(), check=True, timeout=120):
        return self.docker("run", "--rm", "--network", network, *extra,
                           IMAGE, *cmd, check=check, timeout=timeout)

    def ip(self, container, network, family=4):
        key = "IPAddress" if family == 4 else "GlobalIPv6Address"
        fmt = "{{json .NetworkSettings.Networks}}"
        nets = json.loads(self.out("inspect", "-f", fmt, container))
        return nets[network][key]

    def pid(self, container):
        return int(self.out("inspect", "-f", "{{.State.Pid}}", container))

    def leftovers(self):
        """Everything ovsgre made that still exists on this host."""
        links = [l["ifname"] for l in link_json(self.host.netns)
                 if l["ifname"].startswith("ovg")]
        ports = [p for p in self.host.ovs.vsctl(
            "list-ports", "br-ovsgre").split() if p]
        records = []
        for kind in ("networks", "endpoints"):
            folder = os.path.join(self.plugin.state_dir, kind)
            records += [f"{kind}/{n}" for n in os.listdir(folder)]
        return {"links": links, "ports": ports, "records": records}

    def wait_no_leftovers(self, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            left = self.leftovers()
            if not any(left.values()) or time.monotonic() > deadline:
                return left
            time.sleep(0.2)


def start_site(host):
    host.start()
    import_busybox(host.docker)
    plugin = PluginProcess(host.netns, os.path.join(host.run_dir, "plugin"),
                           host.ovs.db_remote)
    plugin.start()
    host.docker.write_plugin_spec("ovsgre", plugin.socket)
    return Site(host, plugin)


@pytest.fixture(scope="module")
def site():
    host = TestHost("e2e", daemon_config=DAEMON_CONFIG)
    s = None
    try:
        s = start_site(host)
        yield s
    finally:
        try:
            if host.docker:
                host.docker.remove_all_containers()
            if s:
                s.plugin.stop()
        finally:
            host.stop()


@pytest.fixture
def network(site, request):
    """Factory: network(name, *docker network create args); removed after."""
    made = []

    def create(name, *args):
        site.docker("network", "create", "-d", "ovsgre", *args, name)
        made.append(name)
        return name

    yield create
    site.host.docker.remove_all_containers()
    for name in made:
        site.docker("network", "rm", name, check=False)
