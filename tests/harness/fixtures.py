"""pytest fixtures; import them in a conftest.py (or a test module):

    from tests.harness.fixtures import make_host, make_underlay  # noqa: F401
    from tests.harness.fixtures import make_cluster  # noqa: F401
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal

import pytest

from .cluster import Cluster
from .host import BASE_ROOT, TestHost, underlay
from .netns import Netns, unique_prefix

log = logging.getLogger("ovsgre.harness")


@pytest.fixture
def make_host():
    """Factory: make_host(hostname=None, start=True, **TestHost kwargs).

    All hosts of one test share a fresh prefix (make_host.prefix) and are
    stopped (in reverse order) at teardown, even if the test failed.
    """
    hosts = []
    prefix = unique_prefix()

    def factory(hostname=None, start=True, **kw) -> TestHost:
        hostname = hostname or f"h{len(hosts) + 1}"
        h = TestHost(hostname, prefix=prefix, **kw)
        hosts.append(h)
        if start:
            h.start()
        return h

    factory.prefix = prefix
    factory.hosts = hosts
    try:
        yield factory
    finally:
        for h in reversed(hosts):
            try:
                h.stop()
            except Exception as e:  # noqa: BLE001 - stop() should not raise
                log.error("teardown of %r failed: %s", h, e)


@pytest.fixture
def make_underlay(make_host):
    """Factory: make_underlay(hosts, **underlay kwargs) -> Underlay; torn
    down before the hosts."""
    created = []

    def factory(hosts, **kw):
        kw.setdefault("prefix", make_host.prefix)
        u = underlay(hosts, **kw)
        created.append(u)
        return u

    try:
        yield factory
    finally:
        for u in reversed(created):
            u.stop()


@pytest.fixture
def make_cluster():
    """Factory: make_cluster(n_hosts=3, etcd=True, **Cluster kwargs) -> a
    started Cluster (hosts on one underlay, etcd on the switch).  Every
    cluster made is stopped at teardown (idempotent, even if the test
    already stopped it or failed)."""
    made = []

    def factory(n_hosts=3, etcd=True, **kw) -> Cluster:
        c = Cluster(n_hosts=n_hosts, etcd=etcd, **kw)
        made.append(c)
        return c.start()

    factory.clusters = made
    try:
        yield factory
    finally:
        for c in reversed(made):
            try:
                c.stop()
            except Exception as e:  # noqa: BLE001 - stop() should not raise
                log.error("teardown of %r failed: %s", c, e)


@contextlib.contextmanager
def scratch_netns(suffix):
    """(Netns, work dir) with a fresh prefix; on exit any process left in
    the namespace is killed by PID, then the namespace and dir are removed."""
    prefix = unique_prefix()
    work = os.path.join(BASE_ROOT, f"{prefix}-{suffix}")
    os.makedirs(work)
    ns = Netns(f"{prefix}-{suffix}")
    try:
        ns.create()
        yield ns, work
    finally:
        for pid in ns.pids():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        ns.delete()
        shutil.rmtree(work, ignore_errors=True)
