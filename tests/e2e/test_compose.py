"""Docker Compose (Debian's docker-compose 1.29) on two hosts, with the
very file docs/compose.md shows: a network Compose creates with
`driver: ovsgre` (its options and ovsgre's IPAM), one declared `external`,
services reaching each other across hosts by IP and on one host by
service name, and `docker-compose down` leaving nothing behind."""

import os
import subprocess

import pytest

from tests.harness.cluster import Cluster
from tests.harness.image import BUSYBOX_TAG
from tests.harness.sites import start_mesh, stop_sites

HERE = os.path.dirname(os.path.abspath(__file__))
COMPOSE_FILE = os.path.join(HERE, "..", "..", "docs", "compose",
                            "docker-compose.yml")
SHARED = ("--ipam-driver", "ovsgre", "--subnet", "198.18.61.0/24",
          "-o", "ovsgre.network=shared")

@pytest.fixture(scope="module")
def pair():
    cluster = Cluster(n_hosts=2, etcd=True)
    sites = []
    try:
        sites = start_mesh(cluster, network=None)
        for site in sites:
            site.docker("network", "create", "-d", "ovsgre", *SHARED,
                        "shared")
        yield sites
    finally:
        stop_sites(cluster, getattr(cluster, "mesh_sites", sites))


def compose(site, *args, check=True):
    """docker-compose with the docs' file, against the site's dockerd."""
    env = dict(os.environ, DOCKER_HOST=site.host.docker.base_url,
               IMAGE=BUSYBOX_TAG)
    proc = subprocess.run(
        ["docker-compose", "-f", COMPOSE_FILE, "-p", "demo", *args],
        env=env, capture_output=True, text=True, timeout=180,
        stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker-compose {' '.join(args)}: "
                             f"{proc.stdout}{proc.stderr}")
    return proc


def fetch(site, container, url):
    # busybox wget's own -T crashes this build: timeout(1) bounds it
    return site.docker("exec", container, "timeout", "20", "wget", "-q",
                       "-O", "-", url, check=False)


def test_compose_up_across_hosts_and_down_leaves_nothing(pair):
    a, b = pair
    before = [site.leftovers() for site in pair]
    try:
        compose(a, "up", "-d")
        compose(b, "up", "-d", "client")
        web, client_a, client_b = "demo_web_1", "demo_client_1", \
            "demo_client_1"
        assert a.out("network", "inspect", "-f", "{{.Driver}}",
                     "demo_app") == "ovsgre"
        # by service name on the same host (Docker's DNS is per host)
        got = fetch(a, client_a, "http://web:8080/")
        assert got.stdout.strip() == "hello from web", got
        # by IP across hosts, over the network Compose created on each
        web_ip = a.ip(web, "demo_app")
        assert web_ip.startswith("198.18.60.")
        got = fetch(b, client_b, f"http://{web_ip}:8080/")
        assert got.stdout.strip() == "hello from web", got
        ips = {a.ip(client_a, "demo_app"), b.ip(client_b, "demo_app"),
               web_ip}
        assert len(ips) == 3, ips          # ovsgre's IPAM: each once
        # the external network, made beforehand on both hosts
        other = b.ip(client_b, "shared")
        assert other.startswith("198.18.61.")
        ping = a.docker("exec", client_a, "ping", "-c", "3", "-W", "2",
                        other, check=False)
        assert ping.returncode == 0, ping.stdout + ping.stderr
    finally:
        down = [compose(site, "down", check=False) for site in pair]
    assert all(d.returncode == 0 for d in down), \
        [d.stdout + d.stderr for d in down]
    for site, was in zip(pair, before):
        assert site.out("ps", "-aq") == ""
        assert "demo_app" not in site.out("network", "ls", "--format",
                                          "{{.Name}}").split()
        assert _sorted(site.wait_leftovers(was)) == _sorted(was)


def _sorted(leftovers):
    return {kind: sorted(names) for kind, names in leftovers.items()}
