"""End-to-end tier: a real dockerd in its own network and mount namespace,
its own OVS, and ovsgre started as `ovsgre serve` (how the README runs it),
listening on /run/docker/plugins/ovsgre.sock as the host's dockerd sees it
(the host's plugins dir, bind-mounted there in dockerd's mount namespace):
dockerd discovers it by its socket, no spec file."""

import pytest

from tests.harness import TestHost
from tests.harness.fixtures import make_host, make_underlay  # noqa: F401
from tests.harness.sites import IMAGE, Site, start_site  # noqa: F401
# docker_gwbridge (ovsgre.gwbridge=true) takes its subnet from these pools
DAEMON_CONFIG = {"default-address-pools": [{"base": "198.19.128.0/17",
                                            "size": 24}]}


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
