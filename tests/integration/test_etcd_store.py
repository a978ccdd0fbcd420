"""EtcdKV against a real etcd (Debian's 3.4) in a namespace of the test's
own: the transactions the fakes of the unit tier only imitate.

The checks run in a child process inside the namespace (etcd listens on
its loopback only), and print one line per check that held."""

import os
import sys
import textwrap

import pytest

from tests.harness.etcd import EtcdServer
from tests.harness.fixtures import scratch_netns

pytestmark = pytest.mark.integration

PLUGIN_SRC = os.path.join(os.path.dirname(__file__), "..", "..", "plugin")

CHECKS = textwrap.dedent('''
    import sys
    from ovsgre.cluster.etcd import EtcdKV
    from ovsgre.errors import Conflict
    from ovsgre.ipam import Ipam
    from ovsgre.specs import PoolRequest

    url = sys.argv[1]
    kv = EtcdKV([url])
    P = "/ovsgre/t/"

    _, rev = kv.list_with_revision(P)
    assert kv.write_if_unchanged(P, rev, P + "a", None, {"v": 1})
    # a was written after rev: nothing under P may be written on that read
    assert not kv.write_if_unchanged(P, rev, P + "b", None, {"v": 2})
    assert kv.get(P + "b") is None
    print("a change under the prefix refuses the write")

    _, rev = kv.list_with_revision(P)
    assert not kv.write_if_unchanged(P, rev, P + "a", None, {"v": 3})
    assert not kv.write_if_unchanged(P, rev, P + "a", {"v": 9}, {"v": 3})
    assert kv.write_if_unchanged(P, rev, P + "a", {"v": 1}, {"v": 3})
    assert kv.get(P + "a") == {"v": 3}
    print("the key itself: absent or the old value")

    _, rev = kv.list_with_revision(P)
    kv.put("/ovsgre/u/x", 1)          # outside the prefix (and "/ovsgre/t" + 1)
    kv.put("/ovsgre/t0", 1)
    assert kv.write_if_unchanged(P, rev, P + "c", None, {"v": 4})
    print("changes outside the prefix do not matter")

    class Racing(EtcdKV):
        hook = None
        def list_with_revision(self, prefix):
            result = super().list_with_revision(prefix)
            if self.hook and prefix.startswith("/ovsgre/ipam/pools/"):
                hook, self.hook = self.hook, None
                hook()
            return result

    racing = Racing([url])
    a, b = Ipam(racing, "198.18.0.1"), Ipam(EtcdKV([url]), "198.18.0.2")
    racing.hook = lambda: b.request_pool(
        PoolRequest("198.18.64.0/18", "", "default"))
    try:
        a.request_pool(PoolRequest("198.18.70.0/24", "", "default"))
    except Conflict as exc:
        assert "overlaps 198.18.64.0/18" in str(exc), exc
    else:
        raise AssertionError("both overlapping pools were granted")
    pools = [v["pool"] for v in kv.list("/ovsgre/ipam/pools/").values()]
    assert pools == ["198.18.64.0/18"], pools
    print("overlapping pools claimed at once: one wins")
''')


def test_etcd_transactions():
    with scratch_netns("etcd") as (ns, work):
        ns.run(["ip", "link", "set", "lo", "up"])
        etcd = EtcdServer(ns, os.path.join(work, "etcd0.data"), "127.0.0.1")
        etcd.start()
        try:
            cp = ns.run([sys.executable, "-c", CHECKS, etcd.url],
                        check=False, timeout=60,
                        env={"PYTHONPATH": os.path.abspath(PLUGIN_SRC)})
        finally:
            etcd.stop()
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.splitlines() == [
        "a change under the prefix refuses the write",
        "the key itself: absent or the old value",
        "changes outside the prefix do not matter",
        "overlapping pools claimed at once: one wins"], cp.stdout
