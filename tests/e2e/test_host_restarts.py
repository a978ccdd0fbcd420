"""dockerd restarted under an ovsgre network (with and without
live-restore), and a whole host "rebooted": every daemon of its namespace
killed, every link gone, then OVS, the plugin and dockerd started again.

Each case has a host of its own (the daemon configurations differ).  After
each one, ovsgre must hold exactly one veth host end, one OVS port and one
endpoint record per running container (nothing for stopped or dead ones),
and nothing at all once the containers are removed.

Docker does not always tell the plugin: at start-up dockerd 20.10 removes
the endpoints of sandboxes that died while it was down (a container killed
under a live-restore restart, every container after a reboot) with a forced
delete that skips a remote driver it has not loaded yet -- no Leave, no
DeleteEndpoint.  ovsgre has to notice those endpoints itself.

The "reboot" is a power cut: SIGKILL for dockerd, containerd, the shims and
the containers (nothing cleans up), kill -9 for the plugin, OVS stopped, then
what a reboot wipes is wiped (/run: dockerd's exec root and the plugin
socket; every ovsgre link).  ovsgre's state dir stays, as /var/lib/ovsgre
does; conf.db stays in one variant (as /etc/openvswitch/conf.db does) and is
deleted in the other, where dockerd also starts before the plugin.
"""

import contextlib
import json
import os
import shutil
import signal
import threading
import time

import pytest

from tests.harness import TestHost, import_busybox
from tests.harness._proc import pid_alive
from tests.harness.netns import link_json
from tests.harness.sites import Site, host_plugin, received, wait_for

NET = "rst"
# An endpoint Docker no longer knows is removed by the plugin after this
# many seconds (Docker does not always tell: see test_dockerd_restart_with_
# live_restore); short here so that the tests need not wait a minute.
STALE_AFTER = 5
LEAK_WAIT = STALE_AFTER + 15


@contextlib.contextmanager
def own_site(hostname, **docker_kw):
    """A fresh namespace host with dockerd, OVS and ovsgre; torn down even
    if the test fails."""
    host = TestHost(hostname, **docker_kw)
    site = None
    try:
        host.start()
        import_busybox(host.docker)
        # As on a real host, the plugin reaches this host's dockerd (its
        # default --docker-host is the local daemon's socket) and listens
        # on /run/docker/plugins/ovsgre.sock as that dockerd sees it.
        plugin = host_plugin(host, OVSGRE_STALE_AFTER=str(STALE_AFTER))
        plugin.start()
        site = Site(host, plugin)
        yield site
    finally:
        try:
            if site and site.plugin.proc is not None \
                    and site.plugin.proc.poll() is None:
                host.docker.remove_all_containers()
                site.plugin.stop()
            elif host.docker:
                # no plugin (a test failed mid-reboot): removing containers
                # would wait on it, a power cut does not
                host.docker.kill()
        finally:
            host.stop()


def create_network(site, subnet):
    site.docker("network", "create", "-d", "ovsgre", "--subnet", subnet, NET)


def endpoint_id(site, container):
    nets = json.loads(site.out("inspect", "-f",
                               "{{json .NetworkSettings.Networks}}",
                               container))
    return nets[NET]["EndpointID"]


def running(site):
    return set(site.out("ps", "--format", "{{.Names}}").split())


def ping(site, container, target, count=3):
    out = site.docker("exec", container, "ping", "-c", str(count), "-W",
                      "2", target, check=False).stdout
    return received(out)


def ours(site):
    """Host veth ends, OVS ports and endpoint records ovsgre has."""
    left = site.leftovers()
    return {"links": sorted(left["links"]), "ports": sorted(left["ports"]),
            "records": sorted(r for r in left["records"]
                              if r.startswith("endpoints/"))}


def wanted(site):
    """What ovsgre should have: the endpoints of the running containers."""
    eids = [endpoint_id(site, name) for name in running(site)]
    host_ifs = sorted("ovgh" + e[:11] for e in eids)  # peers are inside
    return {"links": host_ifs, "ports": host_ifs,
            "records": sorted(f"endpoints/{e}.json" for e in eids)}


def assert_no_leaks(site, timeout=LEAK_WAIT):
    """ovsgre's links, ports and records match the running containers
    (veths are deleted in the background: give them a moment)."""
    want = wanted(site)
    deadline = time.monotonic() + timeout
    while ours(site) != want and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ours(site) == want, (site.plugin.log_tail(),
                                site.host.docker.log_tail())
    assert want == wanted(site)  # nothing started or stopped meanwhile


def remove_all_and_check(site):
    names = site.out("ps", "-aq").split()
    if names:
        site.docker("rm", "-f", *names)
    empty = {"links": [], "ports": [], "records": []}
    deadline = time.monotonic() + LEAK_WAIT
    while ours(site) != empty and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ours(site) == empty, site.plugin.log_tail()
    nets = os.listdir(os.path.join(site.plugin.state_dir, "networks"))
    assert len(nets) == 1, nets  # the network itself is kept


@pytest.mark.reliability("fault", "dockerd restarted without live-restore: stale endpoints cleaned, --restart always containers come back with their network")
def test_dockerd_restart_without_live_restore():
    with own_site("dr1") as site:
        create_network(site, "198.18.90.0/24")
        always = ("always1", "always2")
        for name in always:
            site.run_bg(name, NET, "sleep", "3600",
                        extra=("--restart", "always"))
        site.run_bg("plain", NET, "sleep", "3600")
        assert ping(site, "always1", site.ip("always2", NET)) == (3, 3)
        assert ping(site, "plain", "always1") == (3, 3)  # by name
        before = {n: endpoint_id(site, n) for n in always + ("plain",)}
        assert_no_leaks(site)

        t0 = time.monotonic()
        site.host.docker.restart()  # containers stopped, not removed
        wait_for(lambda: running(site) == set(always), 60,
                 "the --restart always containers to run again")
        print(f"dockerd restart + containers back: "
              f"{time.monotonic() - t0:.1f}s")
        assert site.out("inspect", "-f", "{{.State.Status}}",
                        "plain") == "exited"
        # plain's endpoint (and the old ones of the restarted containers)
        # are gone; only the new endpoints of always1/2 remain
        assert_no_leaks(site)
        records = ours(site)["records"]
        assert f"endpoints/{before['plain']}.json" not in records
        # the restarted containers have working networking
        assert ping(site, "always1", site.ip("always2", NET)) == (3, 3)
        assert ping(site, "always2", "always1") == (3, 3)
        # so does a new container, and the stopped one when started again
        reply = site.run_rm(NET, "ping", "-c", "3", "-W", "2", "always2")
        assert received(reply.stdout) == (3, 3)
        site.docker("start", "plain")
        assert ping(site, "plain", "always1") == (3, 3)
        assert_no_leaks(site)
        remove_all_and_check(site)


STREAM = 150        # packets, one per 0.1 s: 15 s, longer than a restart
MAX_LOST = 2


@pytest.mark.reliability("fault", "dockerd restarted with live-restore: containers and traffic keep running, a container that died meanwhile is cleaned up")
def test_dockerd_restart_with_live_restore():
    with own_site("dr2", daemon_config={"live-restore": True}) as site:
        create_network(site, "198.18.91.0/24")
        for name in ("live1", "live2", "dies"):
            site.run_bg(name, NET, "sleep", "3600")
        target = site.ip("live2", NET)
        assert ping(site, "live1", target) == (3, 3)
        assert ping(site, "dies", target) == (3, 3)
        assert_no_leaks(site)
        pids = {n: site.pid(n) for n in ("live1", "live2", "dies")}
        started = {n: site.out("inspect", "-f", "{{.State.StartedAt}}", n)
                   for n in ("live1", "live2")}
        # a ping stream inside live1 (its output in a file in the
        # container: it needs no dockerd)
        site.docker("exec", "-d", "live1", "sh", "-c",
                    f"ping -c {STREAM} -i 0.1 -W 2 {target} "
                    f"> /tmp/stream 2>&1")
        time.sleep(1.5)

        t0 = time.monotonic()
        docker = site.host.docker
        docker.stop_daemon()
        assert all(pid_alive(p) for p in pids.values()), pids
        # a container dies while dockerd is down: its endpoint is stale
        os.kill(pids["dies"], signal.SIGKILL)
        docker.start()
        downtime = time.monotonic() - t0
        stream = site.out("exec", "live1", "cat", "/tmp/stream")
        assert "transmitted" not in stream, \
            f"the ping stream ended before dockerd was back ({downtime:.1f}s)"

        for name in ("live1", "live2"):   # the very same processes
            assert site.pid(name) == pids[name]
            assert site.out("inspect", "-f", "{{.State.StartedAt}}",
                            name) == started[name]
        wait_for(lambda: running(site) == {"live1", "live2"}, 30,
                 "dockerd to notice that 'dies' died")
        wait_for(lambda: "transmitted" in site.out(
            "exec", "live1", "cat", "/tmp/stream"), STREAM * 0.1 + 30,
            "the ping stream to end")
        stream = site.out("exec", "live1", "cat", "/tmp/stream")
        sent, got = received(stream)
        print(f"live-restore: dockerd down/up in {downtime:.1f}s, "
              f"ping stream {got}/{sent}")
        assert sent == STREAM and sent - got <= MAX_LOST, stream
        # the dead container's endpoint is gone, the others' are intact
        assert_no_leaks(site)
        assert ping(site, "live2", site.ip("live1", NET)) == (3, 3)
        reply = site.run_rm(NET, "ping", "-c", "3", "-W", "2", "live1")
        assert received(reply.stdout) == (3, 3)
        # the restored containers are removed cleanly
        remove_all_and_check(site)


def ovg_links(host):
    return [l["ifname"] for l in link_json(host.netns)
            if l["ifname"].startswith("ovg")]


def start_dockerd_late(site, delay):
    """dockerd first, the plugin `delay` s later (dockerd retries a
    missing plugin socket for ~15 s)."""
    errors = []

    def boot():
        try:
            site.host.docker.start(timeout=90)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=boot, daemon=True)
    thread.start()
    time.sleep(delay)
    assert thread.is_alive(), \
        errors or "dockerd was up before the plugin: order not exercised"
    site.plugin.start()
    thread.join(120)
    assert not thread.is_alive(), "dockerd did not come up"
    assert errors == [], errors


@pytest.mark.reliability("fault", "host rebooted (every daemon and link gone): containers Docker restarts get their network back")
@pytest.mark.parametrize("boot", ["ovs-plugin-dockerd",
                                  "dockerd-before-plugin-fresh-ovsdb"])
def test_host_reboot(boot):
    with own_site("rb") as site:
        host = site.host
        create_network(site, "198.18.92.0/24")
        for name in ("boot1", "boot2"):
            site.run_bg(name, NET, "sleep", "3600",
                        extra=("--restart", "always"))
        assert ping(site, "boot1", site.ip("boot2", NET)) == (3, 3)
        assert_no_leaks(site)
        before = {endpoint_id(site, n) for n in ("boot1", "boot2")}

        # Power cut: nothing gets to clean up after itself.
        host.docker.kill()          # dockerd, containerd, shims, containers
        site.plugin.kill9()
        host.ovs.stop()
        # What a reboot wipes: /run (dockerd's exec root) and every link.
        shutil.rmtree(host.docker.exec_root)
        if os.path.exists(site.plugin.socket):  # it lives in /run too
            os.unlink(site.plugin.socket)
        for name in ovg_links(host):
            host.run(["ip", "link", "del", name], check=False)
        wait_for(lambda: ovg_links(host) == [], 10, "the veths to go")
        if "fresh-ovsdb" in boot:
            # A real host keeps /etc/openvswitch/conf.db; without it the
            # plugin must rebuild its bridge from its own store alone.
            os.unlink(host.ovs.db_path)

        t0 = time.monotonic()
        host.ovs.start()
        if boot == "ovs-plugin-dockerd":
            site.plugin.start()
            host.docker.start(timeout=90)
        else:
            start_dockerd_late(site, delay=3)
        wait_for(lambda: running(site) == {"boot1", "boot2"}, 60,
                 "Docker to restart the containers")
        print(f"reboot ({boot}): containers back after "
              f"{time.monotonic() - t0:.1f}s")

        # their network is back, old endpoints are gone, nothing leaked
        assert ping(site, "boot1", site.ip("boot2", NET)) == (3, 3)
        assert ping(site, "boot2", "boot1") == (3, 3)
        assert_no_leaks(site)
        assert not before & {r[len("endpoints/"):-len(".json")]
                             for r in ours(site)["records"]}
        # new containers work too
        site.run_bg("after", NET, "sleep", "3600")
        assert ping(site, "after", "boot1") == (3, 3)
        assert_no_leaks(site)
        remove_all_and_check(site)
