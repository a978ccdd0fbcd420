"""The reaper: what DeleteEndpoint gave up goes in the background, in
batches, ports before links."""

import threading
import time

from ovsgre.dataplane.reaper import Reaper

from .conftest import eventually


class Recorder:
    def __init__(self, fail=None):
        self.calls = []
        self.fail = fail
        self.lock = threading.Lock()

    def step(self, what):
        def run(names):
            with self.lock:
                self.calls.append((what, list(names)))
            if self.fail == what:
                raise RuntimeError(f"{what} refused")
        return run




def test_a_burst_goes_in_one_batch_ports_first():
    rec = Recorder()
    reaper = Reaper(rec.step("ports"), rec.step("links"), gather=0.2)
    for name in ("ovgha", "ovghb", "ovghc"):
        reaper.delete_later(name)
    assert reaper.pending() == {"ovgha", "ovghb", "ovghc"}
    assert eventually(lambda: not reaper.pending())
    assert rec.calls == [("ports", ["ovgha", "ovghb", "ovghc"]),
                         ("links", ["ovgha", "ovghb", "ovghc"])]


def test_a_name_wanted_again_does_not_wait_for_the_batch():
    rec = Recorder()
    reaper = Reaper(rec.step("ports"), rec.step("links"), gather=30)
    reaper.delete_later("ovgha")
    start = time.monotonic()
    reaper.settle("ovgha", "ovgca")
    assert time.monotonic() - start < 2
    assert rec.calls == [("ports", ["ovgha"]), ("links", ["ovgha"])]


def test_settle_of_names_not_pending_returns_at_once():
    reaper = Reaper(Recorder().step("ports"), Recorder().step("links"),
                    gather=30)
    start = time.monotonic()
    reaper.settle("ovghz")
    assert time.monotonic() - start < 0.1


def test_a_failing_step_is_logged_and_the_rest_goes_on(caplog):
    rec = Recorder(fail="ports")
    reaper = Reaper(rec.step("ports"), rec.step("links"), gather=0.01)
    reaper.delete_later("ovgha")
    assert eventually(lambda: not reaper.pending())
    assert [c[0] for c in rec.calls] == ["ports", "links"]
    assert "ports ovgha failed: ports refused" in caplog.text
    reaper.delete_later("ovghb")              # the thread is still alive
    assert eventually(lambda: ("links", ["ovghb"]) in rec.calls)
