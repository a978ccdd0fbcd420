"""One host, real dockerd, real containers, real traffic."""

import os
import re
import signal
import subprocess
import time

import pytest

from tests.harness.datapath import KERNEL
from tests.harness.sites import received, wait_for

SERVE_12MB = ("dd if=/dev/urandom of=/srv/f bs=1M count=12 2>/dev/null && "
              "md5sum /srv/f | cut -d' ' -f1 > /srv/sum && "
              "exec httpd -f -p 8080 -h /srv")


def start_file_server(site, name, network, extra=()):
    site.docker("run", "-d", "--init", "--name", name, "--network", network,
                *extra, "--entrypoint", "sh", "ovsgre-test/busybox:latest",
                "-c", "mkdir -p /srv && " + SERVE_12MB)
    wait_for(lambda: site.docker("exec", name, "cat", "/srv/sum",
                                 check=False).returncode == 0,
             what=f"{name} to write its file")
    return site.out("exec", name, "cat", "/srv/sum")


def fetch_md5(site, network, url, extra=()):
    proc = site.run_rm(network, "sh", "-c",
                       f"timeout 60 wget -q -O - {url} | md5sum", extra=extra)
    return proc.stdout.split()[0]


def test_dockerd_discovers_the_plugin_by_its_socket(site, network):
    """As the README has it: ovsgre listens on /run/docker/plugins/
    ovsgre.sock (as dockerd sees it) and dockerd finds it there; no spec
    file anywhere dockerd looks for one."""
    docker = site.host.docker
    assert site.plugin.socket == docker.plugin_socket("ovsgre")
    inside = docker.DOCKERD_PLUGINS_DIR + "/ovsgre.sock"
    # the very socket the plugin made, seen from dockerd's mount namespace
    ino = docker.run_in_mntns(["stat", "-L", "-c", "%F %i", inside]).stdout
    assert ino.split()[-1] == str(os.stat(site.plugin.socket).st_ino), ino
    assert ino.startswith("socket"), ino
    specs = docker.run_in_mntns(
        ["find", "/etc/docker/plugins", "/usr/lib/docker/plugins",
         "-maxdepth", "1", "-name", "ovsgre.*"], check=False).stdout
    assert specs.strip() == "", specs
    assert os.listdir(docker.spec_dir) == []
    network("found", "--subnet", "198.18.11.0/24")
    reply = site.run_rm("found", "ip", "-4", "-o", "addr", "show", "eth0")
    # an ovsgre network dockerd could only create and join through the
    # plugin it found by that socket
    assert "198.18.11." in reply.stdout, reply.stdout


@pytest.mark.kernel_datapath
def test_ping_by_name_and_ip_and_tcp_transfer(site, network):
    network("blue", "--subnet", "198.18.10.0/24")
    expected = start_file_server(site, "web", "blue")
    web_ip = site.ip("web", "blue")
    assert web_ip.startswith("198.18.10.")
    by_name = site.run_rm("blue", "ping", "-c", "3", "web")
    assert received(by_name.stdout) == (3, 3)
    by_ip = site.run_rm("blue", "ping", "-c", "3", web_ip)
    assert received(by_ip.stdout) == (3, 3)
    # 12 MB over TCP: breaks silently with a wrong MTU or checksum offload.
    assert fetch_md5(site, "blue", "http://web:8080/f") == expected


@pytest.mark.kernel_datapath
def test_container_interface_mtu_offload_and_single_nic(site, network):
    network("blue", "--subnet", "198.18.10.0/24")
    site.run_bg("probe", "blue", "sleep", "600")
    links = site.out("exec", "probe", "ip", "-o", "link")
    assert "eth0" in links and "eth1" not in links  # no docker_gwbridge
    mtu = site.out("exec", "probe", "cat", "/sys/class/net/eth0/mtu")
    assert mtu == "1458"  # underlay 1500 - 42 bytes of GRE
    routes = site.out("exec", "probe", "ip", "route")
    assert "default" not in routes
    # offload state as seen inside the container's namespace: off only
    # where userspace OVS would leave partial checksums unfinished
    ns_path = f"/proc/{site.pid('probe')}/ns/net"
    out = subprocess.run(["nsenter", "--net=" + ns_path, "ethtool", "-k",
                          "eth0"], capture_output=True, text=True, check=True)
    want = "on" if KERNEL else "off"
    assert re.search(rf"^tx-checksumming: {want}", out.stdout, re.M), \
        out.stdout


def test_mac_address_given_by_user_is_kept(site, network):
    network("blue", "--subnet", "198.18.10.0/24")
    site.run_bg("macd", "blue", "sleep", "600",
                extra=("--mac-address", "02:42:c6:12:0a:99"))
    mac = site.out("exec", "macd", "cat", "/sys/class/net/eth0/address")
    assert mac == "02:42:c6:12:0a:99"


@pytest.mark.kernel_datapath
def test_networks_are_isolated_at_layer2(site, network):
    network("blue", "--subnet", "198.18.10.0/24")
    network("red", "--subnet", "198.18.20.0/24")
    site.run_bg("bweb", "blue", "sleep", "600")
    target = site.ip("bweb", "blue")
    spoof = (f"ip addr add 198.18.10.200/24 dev eth0 && "
             f"ping -c 3 -W 1 {target}")
    intruder = site.run_rm("red", "sh", "-c", spoof,
                           extra=("--cap-add", "NET_ADMIN"), check=False)
    assert intruder.returncode != 0, intruder.stdout
    assert received(intruder.stdout)[1] == 0
    # control: the same trick inside blue works, so the check is real
    friend = site.run_rm("blue", "sh", "-c",
                         spoof.replace(".200/", ".201/"),
                         extra=("--cap-add", "NET_ADMIN"))
    assert received(friend.stdout) == (3, 3)
    # and red's own containers reach each other
    site.run_bg("rweb", "red", "sleep", "600")
    ok = site.run_rm("red", "ping", "-c", "2", "rweb")
    assert received(ok.stdout) == (2, 2)


@pytest.mark.kernel_datapath
def test_rm_and_network_rm_leave_nothing_behind(site, network):
    site.wait_no_leftovers()
    assert site.leftovers() == {"links": [], "ports": [], "records": []}
    network("blue", "--subnet", "198.18.10.0/24")
    network("red", "--subnet", "198.18.20.0/24")
    for i in range(3):
        site.run_bg(f"c{i}", "blue" if i % 2 else "red", "sleep", "600")
    site.run_rm("blue", "true")
    # the short-lived container's port goes in the background
    wait_for(lambda: len(site.leftovers()["ports"]) == 3, 10,
             "the --rm container's port to go")
    for i in range(3):
        site.docker("rm", "-f", f"c{i}")
    site.docker("network", "rm", "blue", "red")
    assert site.wait_no_leftovers() == {"links": [], "ports": [],
                                        "records": []}
    tags = site.host.ovs.vsctl("--columns=tag", "--bare", "list", "Port")
    assert tags.split() == []


@pytest.mark.kernel_datapath
def test_dual_stack(site, network):
    network("dual", "--ipv6", "--subnet", "198.18.30.0/24",
            "--subnet", "fd00:198:18:30::/64")
    expected = start_file_server(site, "v6web", "dual")
    ip6 = site.ip("v6web", "dual", family=6)
    ip4 = site.ip("v6web", "dual")
    assert ip6.startswith("fd00:198:18:30:") and ip4.startswith("198.18.30.")
    # DAD may hold a fresh address briefly; retry pings a few times.
    script = (f"for i in 1 2 3 4 5; do ping -6 -c 2 -W 2 {ip6} && exit 0; "
              f"sleep 1; done; exit 1")
    assert site.run_rm("dual", "sh", "-c", script).returncode == 0
    assert received(site.run_rm("dual", "ping", "-c", "2", ip4).stdout) \
        == (2, 2)
    assert fetch_md5(site, "dual", f"http://[{ip6}]:8080/f") == expected


@pytest.mark.kernel_datapath
@pytest.mark.reliability("fault", "plugin killed (SIGKILL) with traffic running")
def test_plugin_kill9_keeps_traffic_and_recovers(site, network):
    network("keep", "--subnet", "198.18.40.0/24")
    site.run_bg("k1", "keep", "sleep", "600")
    site.run_bg("k2", "keep", "sleep", "600")
    k2 = site.ip("k2", "keep")
    pinger = subprocess.Popen(
        ["/usr/bin/docker", "exec", "k1", "ping", "-c", "8", k2],
        stdout=subprocess.PIPE, text=True,
        env=dict(os.environ, **site.host.docker.cli_env))
    time.sleep(1.5)
    site.plugin.kill9()
    time.sleep(1)
    site.plugin.start()
    out, _ = pinger.communicate(timeout=60)
    sent, got = received(out)
    assert sent == 8 and got >= 7, out  # the dataplane never stopped
    # the old network survived the restart: a new container joins it
    site.run_bg("k3", "keep", "sleep", "600")
    reply = site.run_rm("keep", "ping", "-c", "2", "k1")
    assert received(reply.stdout) == (2, 2)
    reply = site.out("exec", "k3", "ping", "-c", "2", k2)
    assert received(reply) == (2, 2)
    for name in ("k1", "k2", "k3"):
        site.docker("rm", "-f", name)
    site.docker("network", "rm", "keep")
    assert site.wait_no_leftovers() == {"links": [], "ports": [],
                                        "records": []}


def test_gwbridge_option_gives_outbound_interface_and_publishing(
        site, network):
    network("out", "--subnet", "198.18.50.0/24", "-o", "ovsgre.gwbridge=true")
    site.docker("run", "-d", "--init", "--name", "pub", "--network", "out",
                "-p", "18080:8080", "--entrypoint", "sh",
                "ovsgre-test/busybox:latest", "-c",
                "mkdir -p /srv && echo hello-ovsgre > /srv/index.html && "
                "exec httpd -f -p 8080 -h /srv")
    links = site.out("exec", "pub", "ip", "-o", "link")
    assert "eth0" in links and "eth1" in links  # eth1: docker_gwbridge
    routes = site.out("exec", "pub", "ip", "route")
    assert re.search(r"^default via \S+ dev eth1", routes, re.M), routes
    fetch = ("import urllib.request as u; print(u.urlopen("
             "'http://127.0.0.1:18080/', timeout=5).read().decode())")
    # -p: from the host's own namespace, through Docker's port publishing
    result = {}

    def published():
        result["r"] = site.host.run(["python3", "-c", fetch], check=False)
        return result["r"].returncode == 0

    wait_for(published, what="published port 18080")
    assert "hello-ovsgre" in result["r"].stdout
    # ovsgre's own side is unchanged: the ovsgre network still works
    site.run_bg("peer", "out", "sleep", "600")
    reply = site.out("exec", "peer", "ping", "-c", "2", "pub")
    assert received(reply) == (2, 2)


def test_everyday_operations(site, network):
    """What users do next: connect a running container to a second network
    and disconnect it, restart it, pin an address, set a network's MTU,
    create an internal network; traffic works after each, nothing leaks."""
    network("blue", "--subnet", "198.18.10.0/24")
    network("green", "--subnet", "198.18.40.0/24",
            "-o", "com.docker.network.driver.mtu=1400")
    network("inner", "--internal", "--subnet", "198.18.50.0/24")
    site.run_bg("app", "blue", "sleep", "600",
                extra=("--ip", "198.18.10.77"))
    assert site.ip("app", "blue") == "198.18.10.77"
    site.run_bg("gx", "green", "sleep", "600")
    assert site.out("exec", "gx", "cat", "/sys/class/net/eth0/mtu") == "1400"

    # connect a running container to a second network, then disconnect
    site.docker("network", "connect", "green", "app")
    ping = site.out("exec", "app", "ping", "-c", "2", "-W", "3", "gx")
    assert received(ping) == (2, 2), ping
    assert len(site.leftovers()["ports"]) == 3      # app twice, gx once
    site.docker("network", "disconnect", "green", "app")
    wait_for(lambda: len(site.leftovers()["ports"]) == 2, 10,
             "the disconnected endpoint's port to go")
    gone = site.docker("exec", "app", "ping", "-c", "1", "-W", "2", "gx",
                       check=False)
    assert gone.returncode != 0
    links = site.out("exec", "app", "ip", "-o", "link")
    assert "eth1" not in links, links

    # a restart leaves and joins again: same address, traffic works
    site.docker("restart", "-t", "1", "app")
    assert site.ip("app", "blue") == "198.18.10.77"
    ping = site.run_rm("blue", "ping", "-c", "2", "-W", "3", "198.18.10.77")
    assert received(ping.stdout) == (2, 2)

    # an internal network still connects its containers
    site.run_bg("in1", "inner", "sleep", "600")
    ping = site.run_rm("inner", "ping", "-c", "2", "-W", "3", "in1")
    assert received(ping.stdout) == (2, 2)

    for name in ("app", "gx", "in1"):
        site.docker("rm", "-f", name)
    site.docker("network", "rm", "blue", "green", "inner")
    assert site.wait_no_leftovers() == {"links": [], "ports": [],
                                        "records": []}


@pytest.mark.reliability("fault", "ovs-vswitchd hangs while a container starts: docker run fails within --ready-timeout with ovsgre's sentence, nothing left")
def test_container_start_fails_clearly_when_vswitchd_hangs(site, network):
    """Join waits for ovs-vswitchd to put the port in service; when it
    never does, the user sees why (not a container without network)."""
    network("hung", "--subnet", "198.18.44.0/24")

    def no_endpoint_left():
        left = site.leftovers()
        return left["ports"] == [] and left["links"] == []

    wait_for(no_endpoint_left, 10, "earlier tests' ports to go")
    pid = site.host.ovs.vswitchd_pid
    os.kill(pid, signal.SIGSTOP)
    try:
        start = time.monotonic()
        cp = site.run_rm("hung", "true", check=False, timeout=120)
        took = time.monotonic() - start
    finally:
        os.kill(pid, signal.SIGCONT)
    assert cp.returncode != 0
    assert "ovs-vswitchd did not put port ovgh" in cp.stderr, cp.stderr
    assert "in service within 10 s" in cp.stderr, cp.stderr
    assert took < 60, took          # the bound, plus Docker's own work
    print(f"\ndocker run failed after {took:.1f} s: {cp.stderr.strip()}")
    # Docker removed the endpoint: its port and veth pair go
    wait_for(no_endpoint_left, 15, "the failed container's port and veth")
    out = site.run_rm("hung", "true", check=False)
    assert out.returncode == 0, out.stderr     # vswitchd back: works again


def test_errors_reach_the_user_as_ovsgre_sentences(site):
    """dockerd's plugin client reads only "Err" on a non-200 reply, for
    IPAM too: what `docker network create` prints is ovsgre's sentence,
    not a JSON body."""
    cases = [
        # the ovsgre IPAM driver refuses a pool without a subnet
        (("--ipam-driver", "ovsgre"), "needs an explicit subnet"),
        # the network driver refuses a bad option
        (("--subnet", "198.18.47.0/24", "-o",
          "com.docker.network.driver.mtu=70000"), "must be an integer"),
    ]
    for args, fragment in cases:
        cp = site.docker("network", "create", "-d", "ovsgre", *args,
                         "sentences", check=False)
        site.docker("network", "rm", "sentences", check=False)
        assert cp.returncode != 0, cp.stdout
        assert fragment in cp.stderr, cp.stderr
        assert '{"Err' not in cp.stderr and '"Error"' not in cp.stderr, \
            cp.stderr


def test_the_whole_port_range_published_and_exposed(site, network):
    """Docker sends one entry per exposed and per published port in
    CreateEndpoint and Join: the whole range over tcp and udp is ~13 MB of
    JSON.  The container starts and is reachable."""
    net = network("ports", "--subnet", "198.18.48.0/24")
    site.run_bg("allports", net, "sleep", "600",
                extra=("-p", "1-65535:1-65535", "--expose", "1-65535/udp"))
    ip = site.ip("allports", net)
    out = site.run_rm(net, "ping", "-c", "1", "-W", "2", ip, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    log = open(site.plugin.log_path, errors="replace").read()
    assert re.search(r"CreateEndpoint network=\w+ endpoint=\w+ ok", log)
