"""The plugin killed with SIGKILL in the middle of each Docker call.

A supervisor thread plays systemd (Restart=always): it starts the plugin
again as soon as it dies.  dockerd re-sends a call whose connection dropped
— without its body, as it turns out — so each container must end up with
working networking or a clear error, and nothing may leak: no veth, OVS
port, VLAN tag or record beyond the containers that still run (what an
interrupted CreateEndpoint left, Docker never deletes: the janitor removes
endpoints Docker does not know).
"""

import os
import threading
import time

import pytest

from tests.harness import TestHost, import_busybox
from tests.harness.sites import Site, host_plugin, received, wait_for

POINTS = [
    "CreateEndpoint:after_record",   # record written, no veth yet
    "CreateEndpoint:after_plug",     # veth + port made, reply not sent
    "Join:after_record",
    "Leave:after_record",
    "DeleteEndpoint:after_record",   # record gone, port and veth not yet
    "DeleteEndpoint:after_unplug",   # all gone, reply not sent
]


class Supervisor(threading.Thread):
    """Restarts the plugin whenever it exits, like systemd would."""

    def __init__(self, plugin):
        super().__init__(daemon=True)
        self.plugin = plugin
        self.restarts = 0
        self.errors = []
        self._halt = threading.Event()

    def run(self):
        while not self._halt.wait(0.1):
            if self.plugin.proc.poll() is None:
                continue
            try:
                self.plugin.start()
                self.restarts += 1
            except Exception as exc:  # noqa: BLE001 - reported by the test
                self.errors.append(str(exc))

    def stop(self):
        self._halt.set()
        self.join(10)


@pytest.fixture(scope="module")
def crashy():
    host = TestHost("flt")
    plugin = supervisor = None
    try:
        host.start()
        import_busybox(host.docker)
        marker = os.path.join(host.run_dir, "crash-at")
        # listens on the host's /run/docker/plugins/ovsgre.sock (as
        # dockerd sees it): dockerd finds it again after every restart
        plugin = host_plugin(host, OVSGRE_CRASH_AT=marker,
                             # the janitor's Docker check, every 2 s
                             # instead of 30
                             OVSGRE_STALE_AFTER="4")
        plugin.start()
        supervisor = Supervisor(plugin)
        supervisor.start()
        site = Site(host, plugin)
        site.docker("network", "create", "-d", "ovsgre", "--subnet",
                    "198.18.70.0/24", "crash")
        site.run_bg("anchor", "crash", "sleep", "3600")
        yield site, supervisor, marker
    finally:
        if supervisor:
            supervisor.stop()
        try:
            if host.docker:
                host.docker.remove_all_containers()
            if plugin:
                plugin.stop()
        finally:
            host.stop()


def ours(site):
    """Links, ports and endpoint records ovsgre has on the host."""
    left = site.leftovers()
    return {"links": sorted(left["links"]), "ports": sorted(left["ports"]),
            "records": sorted(r for r in left["records"]
                              if r.startswith("endpoints/"))}


def anchor_only(site):
    """What ovsgre should have with just the anchor container running."""
    eid = site.out("inspect", "-f",
                   "{{.NetworkSettings.Networks.crash.EndpointID}}", "anchor")
    host_if = "ovgh" + eid[:11]   # its peer is inside the container
    return {"links": [host_if], "ports": [host_if],
            "records": [f"endpoints/{eid}.json"]}


@pytest.mark.reliability("fault", "plugin killed (SIGKILL) in the middle of a call, restarted by a supervisor")
@pytest.mark.parametrize("point", POINTS)
def test_kill9_mid_call_leaves_networking_or_a_clear_error(crashy, point):
    site, supervisor, marker = crashy
    restarts = supervisor.restarts
    with open(marker, "w", encoding="utf-8") as fh:
        fh.write(point)
    name = "victim"
    proc = site.docker("run", "-d", "--init", "--name", name, "--network",
                       "crash", "ovsgre-test/busybox:latest", "sleep", "600",
                       check=False, timeout=120)
    if proc.returncode == 0:
        # The container must have working networking, at once.
        out = site.out("exec", name, "ping", "-c", "2", "-W", "3",
                       site.ip("anchor", "crash"))
        assert received(out) == (2, 2), out
    else:
        # dockerd re-sends the interrupted call without its body; the
        # user is told so
        assert "empty request body" in proc.stderr and \
            "run the command again" in proc.stderr, proc.stderr
    site.docker("rm", "-f", name, check=False, timeout=120)
    assert not os.path.exists(marker), f"{point} was never reached"
    wait_for(lambda: supervisor.restarts > restarts, 30,
             "the supervisor to restart the plugin")
    site.plugin.wait_ready()
    assert supervisor.errors == []
    # Nothing leaked: only the anchor's veth, port and record remain.
    want = anchor_only(site)
    deadline = time.monotonic() + 20   # the janitor: stale after 4 s
    while ours(site) != want and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ours(site) == want, (proc.returncode, proc.stderr,
                                site.plugin.log_tail(40))
    tags = {p: site.host.ovs.vsctl("get", "Port", p, "tag").strip()
            for p in ours(site)["ports"]}
    assert set(tags.values()) == {"1"}, tags
    # And the plugin still does its job.
    reply = site.run_rm("crash", "ping", "-c", "2", "anchor")
    assert received(reply.stdout) == (2, 2)
