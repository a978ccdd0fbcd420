"""The kernel-datapath tier: boots Debian's kernel under qemu once
(tests/harness/vm.py) and runs, inside, every test marked
kernel_datapath with OVSGRE_TEST_DATAPATH=system: the plugin's bridges are
kernel bridges, tunnels are the kernel's GRE, the underlay is an ordinary
kernel interface.  The guest is emulated (TCG), so these tests assert
behaviour, never speed.

This test passes only when the guest ran exactly the tests the marker
selects here, and every one passed: nothing skipped, nothing missing.
"""
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from tests.harness import vm

pytestmark = pytest.mark.vm

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
TIERS = ("tests/integration", "tests/e2e")
SELECT = ("-m", "kernel_datapath")
TIMEOUT = 1800


def selected_here():
    """Node IDs the marker selects, collected on this machine."""
    cp = subprocess.run([sys.executable, "-m", "pytest", "-p",
                         "no:cacheprovider", "--collect-only", "-q",
                         *SELECT, *TIERS], cwd=REPO, capture_output=True,
                        text=True, timeout=300)
    ids = {line.strip() for line in cp.stdout.splitlines()
           if "::" in line}
    assert ids, cp.stdout + cp.stderr
    return ids


def outcomes(junit_path):
    """{node id: passed|failed|error|skipped} from a junit XML file."""
    results = {}
    for case in ET.parse(junit_path).getroot().iter("testcase"):
        path = case.get("classname", "").replace(".", "/") + ".py"
        node = f"{path}::{case.get('name')}"
        kinds = [child.tag for child in case
                 if child.tag in ("failure", "error", "skipped")]
        results[node] = {"failure": "failed"}.get(kinds[0], kinds[0]) \
            if kinds else "passed"
    return results


def test_kernel_datapath_tier_in_a_guest():
    why = vm.available()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"the kernel-datapath VM cannot boot: {why}")
        pytest.skip(why)
    wanted = selected_here()
    guest = vm.Guest()
    result = guest.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v",
         "-rA", "--durations=15",
         "--junitxml", os.path.join(vm.GUEST_OUT, "junit.xml"),
         *SELECT, *TIERS],
        env={"OVSGRE_TEST_DATAPATH": "system", "CI": "true"},
        cwd=REPO, timeout=TIMEOUT)
    print(f"\nguest ({guest.kernel.version}, kernel datapath): "
          f"{result.seconds:.0f} s\n{result.output[-20000:]}")
    junit = os.path.join(result.outdir, "junit.xml")
    assert os.path.exists(junit), \
        f"the guest ran no tests:\n{result.output[-4000:]}\n" \
        f"--- console ---\n{result.console[-4000:]}"
    got = outcomes(junit)
    not_passed = {node: o for node, o in got.items() if o != "passed"}
    assert not_passed == {}, not_passed
    assert set(got) == wanted, {"missing": sorted(wanted - set(got)),
                                "unexpected": sorted(set(got) - wanted)}
    assert result.returncode == 0, result.output[-4000:]
    shutil.rmtree(result.outdir)   # kept for a look when the tier fails
